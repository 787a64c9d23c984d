//! Fuzz target `config_toml`: see `lopache::fuzzing::config_toml` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lopache::fuzzing::config_toml(data));
