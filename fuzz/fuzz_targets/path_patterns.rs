//! Fuzz target `path_patterns`: see `lopache::fuzzing::path_patterns` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lopache::fuzzing::path_patterns(data));
