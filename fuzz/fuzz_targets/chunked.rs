//! Fuzz target `chunked`: see `lopache::fuzzing::chunked` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lopache::fuzzing::chunked(data));
