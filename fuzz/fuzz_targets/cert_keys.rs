//! Fuzz target `cert_keys`: see `lopache::fuzzing::cert_keys` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lopache::fuzzing::cert_keys(data));
