//! Fuzzed JOSE header and claims JSON, signed with a fixture key inside the target so that
//! every input reaches past the signature: header checks (`alg`, `kid`, `crit`, `enc`,
//! `typ`), claim types and rules (`iss`, `aud`, `exp`, `nbf`, `iat`, lifetime), the token id,
//! and the back-channel logout rules. Input: key selector byte, header JSON, NUL, claims JSON.
#![no_main]

use jwt_revoker_fuzz::Harness;
use jwt_revoker_fuzz::fixture::split_signed_input;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((key, header, claims)) = split_signed_input(data) else {
        return;
    };
    let harness = Harness::get();
    let token = harness.sign(key, header, claims);
    harness.verify_all_ways(&token);
});
