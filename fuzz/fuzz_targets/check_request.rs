//! The zero-copy `CheckRequest` decoder (`authz::request::CheckRequestView` into
//! `CheckedRequest`): protobuf bytes as Envoy's ext_authz client sends them, then the method,
//! path and the token lookup that Check does on the decoded headers.
#![no_main]

use bytes::Bytes;
use jwt_revoker::authz::request::{CheckRequestView, CheckedRequest};
use jwt_revoker::token::{HeaderSource, extract_token};
use jwt_revoker_fuzz::Harness;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(view) = CheckRequestView::decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    let request = CheckedRequest::from(view);
    let _ = (request.method(), request.path());
    let headers = request.headers();
    for name in ["authorization", "cookie", "x-access-token", ":path"] {
        let _ = headers.header(name);
    }
    let config = &Harness::get().config;
    let _ = extract_token(headers, &config.token_sources, config.max_token_bytes);
});
