//! Fuzz target `normalize_path`: see `lopache::fuzzing::normalize_path` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lopache::fuzzing::normalize_path(data));
