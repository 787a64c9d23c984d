//! Fuzz target `proxy_header`: see `lopache::fuzzing::proxy_header` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lopache::fuzzing::proxy_header(data));
