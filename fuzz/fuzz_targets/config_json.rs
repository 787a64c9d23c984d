//! Fuzz target `config_json`: see `lopache::fuzzing::config_json` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lopache::fuzzing::config_json(data));
