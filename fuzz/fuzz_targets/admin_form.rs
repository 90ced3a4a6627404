//! The admin port's form parser (`admin::http::parse_form`, used by RFC 7009 `POST /revoke`
//! and `POST /backchannel-logout`), then what each endpoint does with the parameters: the
//! `token` against the `Authorization` header (`admin::auth::bearer_matches`) and through
//! the verifier, the `logout_token` through the logout token rules.
//! Input: a `Content-Type` line, an `Authorization` line, then the body.
#![no_main]

use http::{HeaderMap, HeaderValue, header};
use jwt_revoker::admin::auth::bearer_matches;
use jwt_revoker::admin::http::parse_form;
use jwt_revoker_fuzz::Harness;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut lines = data.splitn(3, |&b| b == b'\n');
    let content_type = lines.next().unwrap_or_default();
    let authorization = lines.next().unwrap_or_default();
    let body = lines.next().unwrap_or_default();
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    let Ok(params) = parse_form(&headers, body) else {
        return;
    };
    assert!(params.len() <= 16, "more parameters than allowed");
    let harness = Harness::get();
    if let Some(token) = params.get("token") {
        let token = token.trim();
        let _ = bearer_matches(Some(authorization), token);
        harness.verify_all_ways(token);
    }
    if let Some(logout_token) = params.get("logout_token") {
        harness.verify_all_ways(logout_token);
    }
});
