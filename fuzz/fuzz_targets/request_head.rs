//! Fuzz target `request_head`: see `lopache::fuzzing::request_head` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lopache::fuzzing::request_head(data));
