//! Raw bytes as a token: structure, base64url, JOSE header, claims JSON, issuer lookup and
//! signature checks of `Verifier::verify` (access tokens, lifetime enforced and ignored) and
//! `Verifier::verify_logout_token`. Mutated seed tokens rarely keep a valid signature: the
//! `token_claims` target goes past it.
#![no_main]

use jwt_revoker_fuzz::Harness;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        Harness::get().verify_all_ways(token);
    }
});
