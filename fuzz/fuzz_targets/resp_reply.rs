//! Fuzz target `resp_reply`: see `lopache::fuzzing::resp_reply` for the property.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lopache::fuzzing::resp_reply(data));
