#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pollerd_fuzz::http_headers::check(data));
