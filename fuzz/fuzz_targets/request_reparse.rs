//! Fuzz target `request_reparse`: see `lopache::fuzzing::request_reparse` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lopache::fuzzing::request_reparse(data));
