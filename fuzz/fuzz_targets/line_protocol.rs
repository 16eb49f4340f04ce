#![no_main]
//! `civiclake_ingest::decode_line_protocol` never panics, whatever the payload.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (opts, schemas, body) = civiclake_fuzz::setup(data);
    let _ = civiclake_ingest::decode_line_protocol(body, &opts, &schemas);
});
