//! Fuzz target `response_reparse`: see `lopache::fuzzing::response_reparse` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lopache::fuzzing::response_reparse(data));
