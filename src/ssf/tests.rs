//! Unit tests of the SET pipeline: the example SETs of RFC 8417, SSF 1.0, CAEP 1.0 and
//! RISC 1.0 (and Google's legacy RISC shape) parse and map as the table says; hostile SETs
//! are refused with the right error code; SETs and access tokens never pass for each other;
//! the receiver records revocations with their origin, once.

use super::error::SetError;
use super::mapping::{Decision, OpaqueMeans, OptIn, Planned, Policy, decide, event_label};
use super::metrics::SsfMetrics;
use super::receiver::{Receipt, ReceiveError, Receiver, Stream};
use super::secevent::{self, parse};
use super::verify::StreamVerifier;
use crate::admin::Revoker;
use crate::config::{IssuerConfig, KeySource, ReplicaConfig, StalePolicy};
use crate::revocation::{Lookup, Replica, RevocationKey, RevocationKind, Store, TokenIdentity};
use crate::store::embedded::EmbeddedStore;
use crate::token::test_tokens::*;
use crate::token::{TimeRule, Verifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const IDP: &str = "https://idp.example.com/";
const TX: &str = "https://transmitter.test";
const AUD: &str = "https://receiver.test/ssf";
const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";

/// An unsigned-but-well-formed compact SET (the signature is not checked by `parse`).
fn compact(header: &Value, claims: &Value) -> String {
    format!("{}.c2ln", signing_input(header, claims))
}

fn set_header() -> Value {
    json!({"alg": "RS256", "typ": "secevent+jwt", "kid": "rsa-1"})
}

fn policy() -> Policy {
    Policy {
        token_issuers: vec![IDP.to_owned()],
        ..Policy::default()
    }
}

fn decide_example(claims: &Value, policy: &Policy) -> Result<Decision, SetError> {
    let parsed = parse(compact(&set_header(), claims).as_bytes())?;
    decide(&parsed.claims, policy, NOW)
}

fn revoke(kind: RevocationKind, id: &str, as_of: u64) -> Decision {
    Decision::Revoke {
        planned: vec![Planned {
            kind,
            issuer: IDP.to_owned(),
            id: id.to_owned(),
        }],
        as_of,
    }
}

fn iss_sub(sub: &str) -> Value {
    json!({"format": "iss_sub", "iss": IDP, "sub": sub})
}

fn event(uri: &str, sub_id: Value, payload: Value) -> Value {
    json!({
        "iss": TX, "jti": "756E69717565206964656E746966696572", "iat": 1_508_184_845,
        "aud": "636C69656E745F6964", "sub_id": sub_id, "events": {uri: payload}
    })
}

#[test]
fn caep_session_revoked_examples_map_to_session_subject_or_token() {
    // CAEP 1.0 §3.1, simple subject (opaque session id); event_timestamp in milliseconds.
    let simple = json!({
        "iss": TX, "jti": "24c63fb56e5a2d77a6b512616ca9fa24", "iat": 1_615_305_159,
        "aud": "https://sp.example.com/caep", "txn": 8_675_309,
        "sub_id": {"format": "opaque", "id": "dMTlD|1600802906337.16|16008.16"},
        "events": {format!("{CAEP}session-revoked"): {
            "initiating_entity": "policy",
            "reason_admin": {"en": "Landspeed Policy Violation: C076E82F"},
            "reason_user": {"en": "Access attempt from multiple regions.",
                            "es-410": "Intento de acceso desde varias regiones."},
            "event_timestamp": 1_615_304_991_643_u64
        }}
    });
    assert_eq!(
        decide_example(&simple, &policy()),
        Ok(revoke(
            RevocationKind::Session,
            "dMTlD|1600802906337.16|16008.16",
            1_615_304_991
        ))
    );
    // Complex subject: the session wins over the user; tenant is not critical.
    let complex = json!({
        "format": "complex",
        "session": {"format": "opaque", "id": "dMTlD|1600802906337.16|16008.16"},
        "user": iss_sub("dMTlENR2Mz/Z8Y8Lc3Wv"),
        "tenant": {"format": "opaque", "id": "123456789"}
    });
    let claims = event(
        &format!("{CAEP}session-revoked"),
        complex,
        json!({"event_timestamp": 1_615_304_991}),
    );
    assert_eq!(
        decide_example(&claims, &policy()),
        Ok(revoke(
            RevocationKind::Session,
            "dMTlD|1600802906337.16|16008.16",
            1_615_304_991
        ))
    );
    // …unless tenant is a critical member we cannot process: the event is discarded.
    let critical = Policy {
        critical_subject_members: vec!["tenant".to_owned()],
        ..policy()
    };
    assert_eq!(
        decide_example(&claims, &critical),
        Ok(Decision::Ignore("critical_member"))
    );
    // A user: every session of the user; a jwt_id: that token.
    let user = event(
        &format!("{CAEP}session-revoked"),
        iss_sub("alice"),
        json!({}),
    );
    assert_eq!(
        decide_example(&user, &policy()),
        Ok(revoke(RevocationKind::Subject, "alice", 1_508_184_845))
    );
    let token = event(
        &format!("{CAEP}session-revoked"),
        json!({"format": "jwt_id", "iss": IDP, "jti": "B70BA622-9515-4353-A866-823539EECBC8"}),
        json!({}),
    );
    assert_eq!(
        decide_example(&token, &policy()),
        Ok(revoke(
            RevocationKind::Token,
            "B70BA622-9515-4353-A866-823539EECBC8",
            1_508_184_845
        ))
    );
}

#[test]
fn caep_credential_claims_and_informational_examples() {
    let change = |change_type: &str| {
        event(
            &format!("{CAEP}credential-change"),
            iss_sub("jane.smith@example.com"),
            json!({"credential_type": "fido2-roaming", "change_type": change_type,
                   "fido2_aaguid": "accced6a-63f5-490a-9eea-e59bc1896cfc",
                   "friendly_name": "Jane's USB authenticator", "initiating_entity": "user",
                   "event_timestamp": 1_615_304_991_643_u64}),
        )
    };
    assert_eq!(
        decide_example(&change("create"), &policy()),
        Ok(Decision::Ignore("credential_created"))
    );
    for change_type in ["update", "revoke", "delete"] {
        assert_eq!(
            decide_example(&change(change_type), &policy()),
            Ok(revoke(
                RevocationKind::Subject,
                "jane.smith@example.com",
                1_615_304_991
            )),
            "{change_type}"
        );
    }
    let mut no_type = change("update");
    no_type["events"][format!("{CAEP}credential-change")]
        .as_object_mut()
        .expect("event")
        .remove("change_type");
    assert_eq!(
        decide_example(&no_type, &policy()).map_err(|e| e.code()),
        Err("invalid_request")
    );
    // token-claims-change by jwt_id → that token; by SAML assertion → nothing to do here.
    let claims_change = event(
        &format!("{CAEP}token-claims-change"),
        json!({"format": "jwt_id", "iss": IDP, "jti": "f61t6e20zdo3px56gepu8rzlsp4c1dpc0fx7"}),
        json!({"event_timestamp": 1_615_304_991_643_u64, "claims": {"role": "ro-admin"}}),
    );
    assert_eq!(
        decide_example(&claims_change, &policy()),
        Ok(revoke(
            RevocationKind::Token,
            "f61t6e20zdo3px56gepu8rzlsp4c1dpc0fx7",
            1_615_304_991
        ))
    );
    let saml = event(
        &format!("{CAEP}token-claims-change"),
        json!({"format": "saml_assertion_id", "issuer": IDP,
               "assertion_id": "_a75adf55-01d7-dbd8372ebdfc"}),
        json!({"claims": {"role": "ro-admin"}}),
    );
    assert_eq!(
        decide_example(&saml, &policy()),
        Ok(Decision::Ignore("unmapped_subject"))
    );
    // Assurance decrease, risk HIGH, device not compliant: opt-in for users.
    let assurance = |direction: &str| {
        event(
            &format!("{CAEP}assurance-level-change"),
            iss_sub("alice"),
            json!({"namespace": "NIST-AAL", "current_level": "nist-aal1",
                   "previous_level": "nist-aal2", "change_direction": direction}),
        )
    };
    let risk = event(
        &format!("{CAEP}risk-level-change"),
        iss_sub("alice"),
        json!({"principal": "USER", "current_level": "HIGH", "previous_level": "LOW"}),
    );
    let device = event(
        &format!("{CAEP}device-compliance-change"),
        json!({"format": "complex", "device": {"format": "iss_sub", "iss": IDP, "sub": "e9297990"},
               "user": iss_sub("alice")}),
        json!({"current_status": "not-compliant", "previous_status": "compliant"}),
    );
    for claims in [assurance("decrease"), risk.clone(), device.clone()] {
        assert_eq!(
            decide_example(&claims, &policy()),
            Ok(Decision::Ignore("policy"))
        );
    }
    let opted = Policy {
        opt_in: OptIn {
            assurance_decrease: true,
            device_not_compliant: true,
            risk_high: true,
            credential_change_required: true,
        },
        ..policy()
    };
    for claims in [assurance("decrease"), risk, device] {
        assert_eq!(
            decide_example(&claims, &opted),
            Ok(revoke(RevocationKind::Subject, "alice", 1_508_184_845))
        );
    }
    assert_eq!(
        decide_example(&assurance("increase"), &opted),
        Ok(Decision::Ignore("policy"))
    );
    // A session in the subject of a device event: that session, no opt-in needed.
    let device_session = event(
        &format!("{CAEP}device-compliance-change"),
        json!({"format": "complex", "session": {"format": "opaque", "id": "s-9"}}),
        json!({"current_status": "not-compliant", "previous_status": "compliant"}),
    );
    assert_eq!(
        decide_example(&device_session, &policy()),
        Ok(revoke(RevocationKind::Session, "s-9", 1_508_184_845))
    );
    for name in ["session-established", "session-presented"] {
        let claims = event(
            &format!("{CAEP}{name}"),
            json!({"format": "email", "email": "user@example.com"}),
            json!({"fp_ua": "abb0b6e7da81a42233f8f2b1a8ddb1b9a4c81611"}),
        );
        assert_eq!(
            decide_example(&claims, &policy()),
            Ok(Decision::Ignore("informational"))
        );
    }
}

#[test]
fn risc_examples_map_to_subjects_and_never_unrevoke() {
    for name in [
        "account-disabled",
        "account-purged",
        "sessions-revoked",
        "credential-compromise",
    ] {
        let claims = event(
            &format!("{RISC}{name}"),
            iss_sub("7375626A656374"),
            json!({"reason": "hijacking", "credential_type": "password"}),
        );
        assert_eq!(
            decide_example(&claims, &policy()),
            Ok(revoke(
                RevocationKind::Subject,
                "7375626A656374",
                1_508_184_845
            )),
            "{name}"
        );
    }
    // credential-compromise: the later of the discovery time and the SET.
    let compromise = event(
        &format!("{RISC}credential-compromise"),
        iss_sub("7375626A656374"),
        json!({"credential_type": "password", "event_timestamp": 1_508_000_000}),
    );
    assert_eq!(
        decide_example(&compromise, &policy()),
        Ok(revoke(
            RevocationKind::Subject,
            "7375626A656374",
            1_508_184_845
        ))
    );
    for name in [
        "account-enabled",
        "identifier-changed",
        "opt-in",
        "opt-out-initiated",
        "opt-out-cancelled",
        "opt-out-effective",
        "recovery-activated",
        "recovery-information-changed",
    ] {
        let claims = event(
            &format!("{RISC}{name}"),
            json!({"format": "email", "email": "john.doe@example.com"}),
            json!({"new-value": "john.roe@example.com"}),
        );
        assert_eq!(
            decide_example(&claims, &policy()),
            Ok(Decision::Ignore("informational")),
            "{name}"
        );
    }
    let required = event(
        &format!("{RISC}account-credential-change-required"),
        iss_sub("7375626A656374"),
        json!({}),
    );
    assert_eq!(
        decide_example(&required, &policy()),
        Ok(Decision::Ignore("policy"))
    );
    // identifier-recycled by e-mail: only where the e-mail is the tokens' sub.
    let recycled = event(
        &format!("{RISC}identifier-recycled"),
        json!({"format": "email", "email": "foo@example.com"}),
        json!({}),
    );
    assert_eq!(
        decide_example(&recycled, &policy()),
        Ok(Decision::Ignore("unmapped_email"))
    );
    let email_is_sub = Policy {
        email_is_sub: true,
        ..policy()
    };
    assert_eq!(
        decide_example(&recycled, &email_is_sub),
        Ok(revoke(
            RevocationKind::Subject,
            "foo@example.com",
            1_508_184_845
        ))
    );
}

#[test]
fn email_and_phone_subjects_revoke_by_the_mapped_claim_for_every_token_issuer() {
    let by_claim = Policy {
        token_issuers: vec![IDP.to_owned(), "https://other-idp".to_owned()],
        subject_claims: vec![
            ("email".to_owned(), "email".to_owned()),
            ("phone_number".to_owned(), "phone".to_owned()),
        ],
        ..policy()
    };
    let disabled = |sub_id: Value| event(&format!("{RISC}account-disabled"), sub_id, json!({}));
    let planned = |id: &str| {
        Ok(Decision::Revoke {
            planned: [IDP, "https://other-idp"]
                .into_iter()
                .map(|issuer| Planned {
                    kind: RevocationKind::Claim,
                    issuer: issuer.to_owned(),
                    id: id.to_owned(),
                })
                .collect(),
            as_of: 1_508_184_845,
        })
    };
    assert_eq!(
        decide_example(
            &disabled(json!({"format": "email", "email": "Foo@Example.com"})),
            &by_claim
        ),
        planned("email=Foo@Example.com")
    );
    assert_eq!(
        decide_example(
            &disabled(json!({"format": "phone_number", "phone_number": "+12065550100"})),
            &by_claim
        ),
        planned("phone=+12065550100")
    );
    // A session-revoked with an e-mail user in a complex subject: the user, by claim.
    let session = event(
        &format!("{CAEP}session-revoked"),
        json!({"format": "complex", "user": {"format": "email", "email": "foo@example.com"}}),
        json!({"event_timestamp": 1_508_184_845}),
    );
    assert_eq!(
        decide_example(&session, &by_claim),
        planned("email=foo@example.com")
    );
    // An account subject is not mapped here: ignored, not guessed.
    assert_eq!(
        decide_example(
            &disabled(json!({"format": "account", "uri": "acct:foo@example.com"})),
            &by_claim
        ),
        Ok(Decision::Ignore("unmapped_subject"))
    );
    // Global Token Revocation takes an e-mail too.
    let subject =
        crate::ssf::subject::parse(&json!({"format": "email", "email": "a@b.c"})).expect("subject");
    assert_eq!(
        crate::ssf::mapping::user_revocations(&subject, &by_claim)
            .expect("mapped")
            .map(|planned| planned.len()),
        Some(2)
    );
}

#[test]
fn rfc_8417_and_google_legacy_examples() {
    // RFC 8417 figure 3 / Google: `subject_type` inside the event, no sub_id.
    let google = json!({
        "iss": TX, "jti": "756E69717565206964656E746966696572", "iat": 1_508_184_845,
        "aud": "636C69656E745F6964",
        "events": {format!("{RISC}account-disabled"): {
            "subject": {"subject_type": "iss-sub", "iss": IDP, "sub": "7375626A656374"},
            "reason": "hijacking"
        }}
    });
    assert_eq!(
        decide_example(&google, &policy()),
        Ok(revoke(
            RevocationKind::Subject,
            "7375626A656374",
            1_508_184_845
        ))
    );
    let tokens_revoked = json!({
        "iss": TX, "jti": "a", "iat": 1_508_184_845, "aud": "x",
        "events": {"https://schemas.openid.net/secevent/oauth/event-type/tokens-revoked": {
            "subject": {"subject_type": "id_token_claims", "iss": IDP, "sub": "7375626A656374"}
        }}
    });
    assert_eq!(
        decide_example(&tokens_revoked, &policy()),
        Ok(revoke(
            RevocationKind::Subject,
            "7375626A656374",
            1_508_184_845
        ))
    );
    let token_revoked = json!({
        "iss": TX, "jti": "b", "iat": 1_508_184_845, "aud": "x",
        "events": {"https://schemas.openid.net/secevent/oauth/event-type/token-revoked": {
            "subject": {"subject_type": "oauth_token", "token_type": "refresh_token",
                        "token_identifier_alg": "hash_base64_sha512_sha512", "token": "7375626A"}
        }}
    });
    assert_eq!(
        decide_example(&token_revoked, &policy()),
        Ok(Decision::Ignore("informational"))
    );
    // RFC 8417 figure 1 (SCIM): a SET, but an event this receiver does not know.
    let scim = json!({
        "jti": "4d3559ec67504aaba65d40b0363faad8", "iat": 1_458_496_404,
        "iss": "https://scim.example.com",
        "aud": ["https://scim.example.com/Feeds/98d52461fa5bbc879593b7754",
                "https://scim.example.com/Feeds/5d7604516b1d08641d7676ee7"],
        "events": {"urn:ietf:params:scim:event:create": {
            "ref": "https://scim.example.com/Users/44f6142df96bd6ab61e7521d9",
            "attributes": ["id", "name", "userName", "password", "emails"]}}
    });
    assert_eq!(
        decide_example(&scim, &policy()),
        Ok(Decision::Ignore("unknown_event"))
    );
    // RFC 8417 figure 2: a back-channel logout token (it has sub) is not a SET.
    let logout = json!({
        "iss": "https://server.example.com", "sub": "248289761001", "aud": "s6BhdRkqt3",
        "iat": 1_471_566_154, "jti": "bWJq", "sid": "08a5019c-17e1-4977-8f42-65a12843ea02",
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}}
    });
    assert_eq!(
        parse(compact(&set_header(), &logout).as_bytes()).map(|_| ()),
        Err(SetError::NotASet("a SET must not carry sub"))
    );
}

#[test]
fn ssf_subject_formats_and_stream_events() {
    let cases = [
        (
            json!({"format": "account", "uri": "acct:example.user@service.example.com"}),
            None,
        ),
        (
            json!({"format": "email", "email": "user@example.com"}),
            None,
        ),
        (
            json!({"format": "phone_number", "phone_number": "+12065550100"}),
            None,
        ),
        (
            json!({"format": "opaque", "id": "11112222333344445555"}),
            Some(RevocationKind::Subject),
        ),
        (
            json!({"format": "aliases", "identifiers": [
                {"format": "email", "email": "user@example.com"},
                {"format": "phone_number", "phone_number": "+12065550100"},
                iss_sub("145234573")]}),
            Some(RevocationKind::Subject),
        ),
        (
            json!({"format": "ip-addresses", "ip-addresses": ["10.29.37.75"]}),
            None,
        ),
    ];
    for (subject, kind) in cases {
        let claims = event(
            &format!("{RISC}account-disabled"),
            subject.clone(),
            json!({}),
        );
        let decision = decide_example(&claims, &policy()).expect("maps");
        match (kind, decision) {
            (None, Decision::Ignore(_)) => {}
            (Some(kind), Decision::Revoke { planned, .. }) => {
                assert_eq!(planned[0].kind, kind, "{subject}");
            }
            (kind, decision) => panic!("{subject}: {decision:?}, expected {kind:?}"),
        }
    }
    let opaque_session = Policy {
        opaque_means: OpaqueMeans::Sid,
        ..policy()
    };
    let claims = event(
        &format!("{RISC}account-disabled"),
        json!({"format": "opaque", "id": "x"}),
        json!({}),
    );
    assert_eq!(
        decide_example(&claims, &opaque_session),
        Ok(revoke(RevocationKind::Session, "x", 1_508_184_845))
    );
    // Verification and stream-updated.
    let verification = event(
        "https://schemas.openid.net/secevent/ssf/event-type/verification",
        json!({"format": "opaque", "id": "f67e39a0a4d34d56b3aa1bc4cff0069f"}),
        json!({"state": "VGhpcyBpcyBhbiBleGFtcGxlIHN0YXRlIHZhbHVlLgo="}),
    );
    assert_eq!(
        decide_example(&verification, &policy()),
        Ok(Decision::Verification {
            state: Some("VGhpcyBpcyBhbiBleGFtcGxlIHN0YXRlIHZhbHVlLgo=".to_owned())
        })
    );
    let updated = event(
        "https://schemas.openid.net/secevent/ssf/event-type/stream-updated",
        json!({"format": "opaque", "id": "f67e39a0a4d34d56b3aa1bc4cff0069f"}),
        json!({"status": "paused", "reason": "License is not valid"}),
    );
    assert_eq!(
        decide_example(&updated, &policy()),
        Ok(Decision::StreamUpdated {
            status: "paused".to_owned()
        })
    );
    assert_eq!(event_label("https://example.com/made-up"), "other");
}

#[test]
fn a_subject_of_another_issuer_is_access_denied_and_time_is_clamped() {
    let other = event(
        &format!("{RISC}account-disabled"),
        json!({"format": "iss_sub", "iss": "https://other.example", "sub": "x"}),
        json!({}),
    );
    assert_eq!(
        decide_example(&other, &policy()).map_err(|e| e.code()),
        Err("access_denied")
    );
    let future = event(
        &format!("{CAEP}session-revoked"),
        iss_sub("alice"),
        json!({"event_timestamp": NOW + 3600}),
    );
    assert_eq!(
        decide_example(&future, &policy()),
        Ok(revoke(RevocationKind::Subject, "alice", NOW))
    );
}

#[test]
fn hostile_sets_are_refused_with_the_right_code() {
    let good = event(&format!("{RISC}account-disabled"), iss_sub("a"), json!({}));
    let with = |name: &str, value: Value| {
        let mut claims = good.clone();
        claims[name] = value;
        claims
    };
    let without = |name: &str| {
        let mut claims = good.clone();
        claims.as_object_mut().expect("object").remove(name);
        claims
    };
    let header = set_header();
    let cases: Vec<(String, &str)> = vec![
        (
            compact(&header, &with("sub", json!("alice"))),
            "invalid_request",
        ),
        (
            compact(&header, &with("exp", json!(NOW + 60))),
            "invalid_request",
        ),
        (compact(&header, &without("iat")), "invalid_request"),
        (compact(&header, &without("jti")), "invalid_request"),
        (compact(&header, &without("iss")), "invalid_request"),
        (compact(&header, &without("aud")), "invalid_request"),
        (compact(&header, &without("events")), "invalid_request"),
        (
            compact(&header, &with("events", json!({}))),
            "invalid_request",
        ),
        (
            compact(&header, &with("events", json!({"a": {}, "b": {}}))),
            "invalid_request",
        ),
        (
            compact(&header, &with("events", json!({"a": 1}))),
            "invalid_request",
        ),
        (
            compact(&header, &with("events", json!({"": {}}))),
            "invalid_request",
        ),
        (
            compact(&header, &with("iat", json!("yesterday"))),
            "invalid_request",
        ),
        (
            compact(&header, &with("aud", json!([1]))),
            "invalid_request",
        ),
        (
            compact(&header, &with("sub_id", json!("alice"))),
            "invalid_request",
        ),
        (
            compact(&json!({"alg": "RS256", "typ": "JWT"}), &good),
            "invalid_request",
        ),
        (
            compact(&json!({"alg": "RS256", "typ": "at+jwt"}), &good),
            "invalid_request",
        ),
        (compact(&json!({"alg": "RS256"}), &good), "invalid_request"),
        (
            compact(&json!({"alg": "none", "typ": "secevent+jwt"}), &good),
            "invalid_key",
        ),
        (
            compact(&json!({"alg": "XX1", "typ": "secevent+jwt"}), &good),
            "invalid_key",
        ),
        (
            compact(
                &json!({"alg": "RS256", "typ": "secevent+jwt", "crit": ["b64"]}),
                &good,
            ),
            "invalid_request",
        ),
        (
            compact(
                &json!({"alg": "RS256", "typ": "secevent+jwt", "enc": "A256GCM"}),
                &good,
            ),
            "invalid_request",
        ),
        ("a.b.c.d.e".to_owned(), "invalid_request"),
        ("not a jwt".to_owned(), "invalid_request"),
        (String::new(), "invalid_request"),
        (format!("{}.", signing_input(&header, &good)), "invalid_key"),
        ("x".repeat(secevent::MAX_SET_BYTES + 1), "invalid_request"),
    ];
    for (set, code) in cases {
        let refused = parse(set.as_bytes()).expect_err(&set.chars().take(80).collect::<String>());
        assert_eq!(refused.code(), code, "{refused}");
    }
    assert_eq!(
        parse(&[0xff, 0xfe]).map(|_| ()),
        Err(SetError::Malformed("not UTF-8"))
    );
    // A member named twice has two readings: refused, in the payload as in the header.
    let payload = serde_json::to_string(&good).expect("json");
    let doubled = format!(r#"{{"jti":"other",{}"#, &payload[1..]);
    let encode = |text: &str| URL_SAFE_NO_PAD.encode(text.as_bytes());
    let header_text = serde_json::to_string(&header).expect("json");
    let doubled_header = format!(r#"{{"typ":"JWT",{}"#, &header_text[1..]);
    for (head, body) in [(&header_text, &doubled), (&doubled_header, &payload)] {
        let set = format!("{}.{}.c2ln", encode(head), encode(body));
        let refused = parse(set.as_bytes()).expect_err("a member named twice");
        assert_eq!(refused.code(), "invalid_request", "{refused}");
    }
    // Subject nesting, and subjects without the members their format needs.
    let deep = json!({"format": "complex", "user": {"format": "complex", "user":
        {"format": "complex", "user": iss_sub("a")}}});
    for subject in [
        deep,
        json!({"format": "iss_sub", "iss": IDP}),
        json!({"id": "x"}),
        json!(7),
    ] {
        let claims = event(
            &format!("{RISC}account-disabled"),
            subject.clone(),
            json!({}),
        );
        assert_eq!(
            decide_example(&claims, &policy()).map_err(|e| e.code()),
            Err("invalid_request"),
            "{subject}"
        );
    }
    // Application/ prefixed and upper-case typ are the same type.
    let typ = json!({"alg": "RS256", "typ": "application/SECEVENT+JWT"});
    assert!(parse(compact(&typ, &good).as_bytes()).is_ok());
}

// ---- signature, issuer, audience ----

fn transmitter(algorithms: Vec<jsonwebtoken::Algorithm>) -> IssuerConfig {
    let mut config = issuer_with_jwks(KeySource::File(fixture("jwks.json")));
    config.issuer = TX.to_owned();
    config.audiences = vec![AUD.to_owned()];
    config.algorithms = algorithms;
    config
}

fn signed_set(key: TestKey, header: &Value, claims: &Value) -> String {
    sign(header, claims, key.alg(), &key.encoding_key())
}

fn session_revoked(jti: &str, sub: &str) -> Value {
    json!({
        "iss": TX, "aud": [AUD, "https://other-receiver"], "iat": NOW - 10, "jti": jti,
        "txn": "t-1",
        "sub_id": {"format": "iss_sub", "iss": ISSUER, "sub": sub},
        "events": {format!("{CAEP}session-revoked"): {
            "reason_admin": {"en": "Landspeed\nPolicy Violation"}, "event_timestamp": NOW - 20}}
    })
}

#[tokio::test]
async fn signature_issuer_and_audience_are_checked() {
    let verifier = StreamVerifier::new(0, &transmitter(vec![jsonwebtoken::Algorithm::RS256]))
        .await
        .expect("verifier");
    let claims = session_revoked("j-1", "alice");
    let good = signed_set(TestKey::Rsa, &set_header(), &claims);
    assert_eq!(
        verifier.verify(good.as_bytes()).await.map(|c| c.jti),
        Ok("j-1".to_owned())
    );
    let code = |set: String| {
        let verifier = &verifier;
        async move {
            verifier
                .verify(set.as_bytes())
                .await
                .map(|_| ())
                .map_err(|e| e.code())
        }
    };
    let forged = signed_set(
        TestKey::Untrusted,
        &json!({"alg": "RS256", "typ": "secevent+jwt"}),
        &claims,
    );
    assert_eq!(code(forged).await, Err("invalid_key"));
    let unknown_kid = signed_set(
        TestKey::Rsa,
        &json!({"alg": "RS256", "typ": "secevent+jwt", "kid": "nope"}),
        &claims,
    );
    assert_eq!(code(unknown_kid).await, Err("invalid_key"));
    // ES256 with a trusted key, but not an algorithm of this stream.
    let es = signed_set(
        TestKey::Ec256,
        &json!({"alg": "ES256", "typ": "secevent+jwt", "kid": "ec256-1"}),
        &claims,
    );
    assert_eq!(code(es).await, Err("invalid_key"));
    // HS256 with the RSA public key as secret: no HMAC unless configured.
    let pem = std::fs::read(fixture("keys/rsa.pub.pem")).expect("pem");
    let confused = sign(
        &json!({"alg": "HS256", "typ": "secevent+jwt"}),
        &claims,
        jsonwebtoken::Algorithm::HS256,
        &jsonwebtoken::EncodingKey::from_secret(&pem),
    );
    assert_eq!(code(confused).await, Err("invalid_key"));
    let mut other_iss = claims.clone();
    other_iss["iss"] = json!("https://evil.test");
    assert_eq!(
        code(signed_set(TestKey::Rsa, &set_header(), &other_iss)).await,
        Err("invalid_issuer")
    );
    let mut other_aud = claims.clone();
    other_aud["aud"] = json!("https://other-receiver");
    assert_eq!(
        code(signed_set(TestKey::Rsa, &set_header(), &other_aud)).await,
        Err("invalid_audience")
    );
}

#[tokio::test]
async fn sets_and_access_tokens_never_pass_for_each_other() {
    // A SET signed by a key the access-token verifier trusts, from a trusted issuer, with
    // the access-token audience: still no access token (no exp, no sub).
    let tokens = Verifier::new(
        &test_issuers(),
        Duration::from_secs(30),
        8192,
        Duration::from_secs(3600),
    )
    .await
    .expect("verifier");
    let as_token = json!({
        "iss": ISSUER, "aud": AUDIENCE, "iat": NOW - 10, "jti": "set-1",
        "sub_id": {"format": "opaque", "id": "s"},
        "events": {format!("{CAEP}session-revoked"): {}}
    });
    let set = signed_set(TestKey::Rsa, &set_header(), &as_token);
    let refused = tokens
        .verify(&set, NOW, TimeRule::Enforce)
        .await
        .map(|_| ());
    // Refused today for lacking exp; with explicit typing checks, for its typ as well.
    assert!(refused.is_err(), "a SET passed as an access token");
    // An access token posted as a SET, even from the transmitter with the stream's audience.
    let verifier = StreamVerifier::new(0, &transmitter(vec![jsonwebtoken::Algorithm::RS256]))
        .await
        .expect("verifier");
    let mut access = TestKey::Rsa.claims();
    access["iss"] = json!(TX);
    access["aud"] = json!(AUD);
    for header in [
        TestKey::Rsa.header(),
        json!({"alg": "RS256", "typ": "at+jwt", "kid": "rsa-1"}),
        set_header(),
    ] {
        let token = signed_set(TestKey::Rsa, &header, &access);
        assert_eq!(
            verifier
                .verify(token.as_bytes())
                .await
                .map(|_| ())
                .map_err(|e| e.code()),
            Err("invalid_request"),
            "{header}"
        );
    }
}

// ---- the receiver, on the embedded store ----

/// The receiver, its store and replica, and the follower's stop switch (keep it alive).
type Rig = (
    Receiver,
    Arc<dyn Store>,
    Arc<Replica>,
    tokio::sync::watch::Sender<bool>,
);

async fn receiver(dir: &std::path::Path) -> Rig {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir).expect("store"));
    let replica = Arc::new(Replica::new(ReplicaConfig {
        max_staleness: Duration::from_secs(30),
        stale_policy: StalePolicy::Deny,
        resync_interval: Duration::from_secs(600),
    }));
    let verifier = Arc::new(
        Verifier::new(
            &test_issuers(),
            Duration::from_secs(30),
            8192,
            Duration::from_secs(3600),
        )
        .await
        .expect("verifier"),
    );
    let revoker = Arc::new(Revoker::new(
        Arc::clone(&store),
        Arc::clone(&replica),
        verifier,
        [ISSUER.to_owned()],
        Duration::from_secs(3600),
        Duration::from_secs(30),
    ));
    let stream = Stream::new(
        "tx",
        StreamVerifier::new(0, &transmitter(vec![jsonwebtoken::Algorithm::RS256]))
            .await
            .expect("stream verifier"),
        Policy {
            token_issuers: vec![ISSUER.to_owned()],
            ..Policy::default()
        },
        Some("0123456789abcdef-push".to_owned()),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(Arc::clone(&replica).follow(Arc::clone(&store), stopped));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !replica.health().serving() {
        assert!(
            std::time::Instant::now() < deadline,
            "the replica never synced"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (
        Receiver::new([stream], revoker, SsfMetrics::default()),
        store,
        replica,
        stop,
    )
}

fn identity(sub: &'static str, iat: u64) -> TokenIdentity<'static> {
    TokenIdentity {
        issuer: ISSUER,
        token_id: "t",
        session: None,
        subject: Some(sub),
        client: None,
        issued_at: Some(iat),
        claims: &[],
    }
}

#[tokio::test]
async fn the_receiver_revokes_once_with_the_origin_in_the_reason() {
    let dir = tempfile::tempdir().expect("dir");
    let (receiver, store, replica, _stop) = receiver(dir.path()).await;
    let stream = receiver.stream("tx").expect("stream");
    let now = crate::clock::unix_now();
    let mut claims = session_revoked("j-1", "alice");
    claims["iat"] = json!(now - 10);
    claims["events"][format!("{CAEP}session-revoked")]["event_timestamp"] = json!(now - 20);
    let set = signed_set(TestKey::Rsa, &set_header(), &claims);
    assert_eq!(
        receiver
            .receive(stream, set.as_bytes(), now)
            .await
            .expect("accepted"),
        Receipt::Revoked(1)
    );
    let key = RevocationKey::new(ISSUER, RevocationKind::Subject, "alice").expect("key");
    let stored = store.get(&key, now).await.expect("get").expect("stored");
    assert_eq!(stored.revoked_at, now - 20, "as of the event");
    assert!(stored.reason.contains("stream=tx"), "{}", stored.reason);
    assert!(stored.reason.contains("event=caep_session_revoked"));
    assert!(stored.reason.contains("jti=j-1") && stored.reason.contains("txn=t-1"));
    assert!(stored.reason.contains("Landspeed") && !stored.reason.contains('\n'));
    // This replica denies at once: tokens issued up to the event, not after.
    assert!(matches!(
        replica.lookup(&identity("alice", now - 30), now),
        Lookup::Revoked(_)
    ));
    assert!(matches!(
        replica.lookup(&identity("alice", now), now),
        Lookup::Clear
    ));
    assert!(matches!(
        replica.lookup(&identity("bob", now - 30), now),
        Lookup::Clear
    ));
    // The same SET again: a no-op, answered as accepted.
    assert_eq!(
        receiver
            .receive(stream, set.as_bytes(), now)
            .await
            .expect("again"),
        Receipt::Duplicate
    );
    assert_eq!(
        receiver
            .metrics()
            .get("tx", "caep_session_revoked", "revoked"),
        1
    );
    assert_eq!(
        receiver
            .metrics()
            .get("tx", "caep_session_revoked", "duplicate"),
        1
    );
    // A subject of an issuer the stream may not revoke for.
    let mut foreign = session_revoked("j-2", "mallory");
    foreign["sub_id"]["iss"] = json!(HMAC_ISSUER);
    let set = signed_set(TestKey::Rsa, &set_header(), &foreign);
    match receiver.receive(stream, set.as_bytes(), now).await {
        Err(ReceiveError::Refused(error)) => assert_eq!(error.code(), "access_denied"),
        other => panic!("{other:?}"),
    }
    // Push authorization: bare or Bearer, nothing else.
    assert!(stream.push_authorized(Some(b"0123456789abcdef-push")));
    assert!(stream.push_authorized(Some(b"Bearer 0123456789abcdef-push")));
    assert!(!stream.push_authorized(Some(b"Bearer 0123456789abcdef-pusX")));
    assert!(!stream.push_authorized(Some(b"0123456789abcdef")));
    assert!(!stream.push_authorized(None));
}

#[tokio::test]
async fn verification_checks_the_requested_state_and_status_is_recorded() {
    let dir = tempfile::tempdir().expect("dir");
    let (receiver, _, _, _stop) = receiver(dir.path()).await;
    let stream = receiver.stream("tx").expect("stream");
    let now = crate::clock::unix_now();
    let verification = |jti: &str, state: &str| {
        signed_set(
            TestKey::Rsa,
            &set_header(),
            &json!({"iss": TX, "aud": AUD, "iat": now, "jti": jti,
                    "sub_id": {"format": "opaque", "id": "stream-1"},
                    "events": {"https://schemas.openid.net/secevent/ssf/event-type/verification":
                        {"state": state}}}),
        )
    };
    stream.expect_verification("expected-state".to_owned());
    match receiver
        .receive(stream, verification("v-1", "wrong").as_bytes(), now)
        .await
    {
        Err(ReceiveError::Refused(error)) => assert_eq!(error.code(), "invalid_state"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        receiver
            .receive(
                stream,
                verification("v-2", "expected-state").as_bytes(),
                now
            )
            .await
            .expect("ok"),
        Receipt::Verified
    );
    assert_eq!(stream.status().last_verification_at, Some(now));
    let updated = signed_set(
        TestKey::Rsa,
        &set_header(),
        &json!({"iss": TX, "aud": AUD, "iat": now, "jti": "u-1",
                "sub_id": {"format": "opaque", "id": "stream-1"},
                "events": {"https://schemas.openid.net/secevent/ssf/event-type/stream-updated":
                    {"status": "disabled"}}}),
    );
    assert_eq!(
        receiver
            .receive(stream, updated.as_bytes(), now)
            .await
            .expect("ok"),
        Receipt::StatusRecorded
    );
    assert_eq!(stream.status().status, "disabled");
}
