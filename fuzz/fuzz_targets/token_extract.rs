//! Token extraction from request headers: `Authorization: Bearer`, the configured header and
//! the configured cookie (`token::extract_token` over `authz::request::RequestHeaders`).
//! Input: header lines `name: value` (UTF-8, read lossily as Envoy's header map is).
#![no_main]

use jwt_revoker::authz::request::RequestHeaders;
use jwt_revoker::config::TokenSources;
use jwt_revoker::token::extract_token;
use jwt_revoker_fuzz::fixture::{TOKEN_COOKIE, TOKEN_HEADER};
use libfuzzer_sys::fuzz_target;

/// A small limit, so that the fuzzer reaches the size check.
const MAX_BYTES: usize = 1024;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let pairs = text
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name, value.trim_start_matches(' ')));
    let headers = RequestHeaders::from_pairs(pairs);
    let sources = TokenSources {
        header: Some(TOKEN_HEADER.to_owned()),
        cookie: Some(TOKEN_COOKIE.to_owned()),
    };
    if let Ok(Some(token)) = extract_token(&headers, &sources, MAX_BYTES) {
        assert!(token.len() <= MAX_BYTES, "a token over the limit");
        let body = token.trim_end_matches('=');
        assert!(!body.is_empty(), "an empty token");
        assert!(
            body.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)),
            "not one RFC 6750 b64token: {token:?}"
        );
    }
});
