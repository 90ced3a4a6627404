//! Security Event Tokens (RFC 8417) as the Shared Signals receiver reads them: the compact
//! form and every key-free rule (`ssf::secevent::parse`), then the event → revocation
//! mapping (`ssf::mapping::decide`) with every opt-in row on.
//! Input: raw SET bytes; or, when it holds a NUL, `header JSON \0 claims JSON`, encoded
//! into a compact SET here (with a dummy signature) so that the fuzzer reaches the claims.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_revoker::ssf::mapping::{Decision, OpaqueMeans, OptIn, Policy, decide};
use jwt_revoker::ssf::secevent::{SET_TYP, parse};
use libfuzzer_sys::fuzz_target;

/// The fuzz "now" (Unix seconds).
const NOW: u64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let compact = match data.iter().position(|&b| b == 0) {
        Some(nul) => {
            let (header, claims) = (&data[..nul], &data[nul + 1..]);
            format!(
                "{}.{}.c2ln",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(claims)
            )
            .into_bytes()
        }
        None => data.to_vec(),
    };
    let Ok(parsed) = parse(&compact) else {
        return;
    };
    // What parse promises: the signing input is the first two parts, one event, a jti.
    let text = std::str::from_utf8(&compact)
        .expect("a parsed SET is UTF-8")
        .trim();
    assert!(
        text.starts_with(&parsed.signing_input),
        "signing input not the SET's prefix"
    );
    assert!(!parsed.claims.jti.is_empty(), "a SET without jti");
    assert!(
        !parsed.claims.event_type.is_empty(),
        "a SET without an event type"
    );
    assert!(!SET_TYP.is_empty());
    for opaque_means in [OpaqueMeans::ByEvent, OpaqueMeans::Sid, OpaqueMeans::Sub] {
        let policy = Policy {
            token_issuers: vec!["https://issuer.example".to_owned()],
            opaque_means,
            email_is_sub: true,
            subject_claims: vec![
                ("phone_number".to_owned(), "phone_number".to_owned()),
                ("account".to_owned(), "acct".to_owned()),
            ],
            critical_subject_members: vec!["user".to_owned()],
            opt_in: OptIn {
                assurance_decrease: true,
                device_not_compliant: true,
                risk_high: true,
                credential_change_required: true,
            },
        };
        if let Ok(Decision::Revoke { planned, as_of }) = decide(&parsed.claims, &policy, NOW) {
            assert!(as_of <= NOW, "a revocation dated after now");
            for revocation in planned {
                assert!(
                    policy.token_issuers.contains(&revocation.issuer),
                    "a revocation for an issuer the stream may not revoke for"
                );
                assert!(!revocation.id.is_empty(), "a revocation of an empty id");
            }
        }
    }
});
