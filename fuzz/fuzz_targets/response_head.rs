//! Fuzz target `response_head`: see `lopache::fuzzing::response_head` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lopache::fuzzing::response_head(data));
