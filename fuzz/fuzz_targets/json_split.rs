#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pollerd_fuzz::json_split::check(data));
