//! Caller JWTs of Global Token Revocation: the one accepted, and every refusal with its
//! reason, from the shape of the compact JWS through the header and signature to the claims.

use super::*;
use crate::config::KeySource;
use crate::token::test_tokens::*;
use serde_json::json;

const AUD: &str = "https://receiver.test/gtr";

async fn verifier() -> CallerVerifier {
    let mut config = issuer_with_jwks(KeySource::File(fixture("jwks.json")));
    config.audiences = vec![AUD.to_owned()];
    config.algorithms = vec![Algorithm::RS256];
    CallerVerifier::new(&config)
        .await
        .expect("the caller's keys")
}

fn header() -> Value {
    json!({"alg": "RS256", "kid": "rsa-1"})
}

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": AUD, "exp": NOW + 60, "jti": "j-1"})
}

fn with(mut value: Value, name: &str, member: Value) -> Value {
    value[name] = member;
    value
}

fn rsa(header: &Value, claims: &Value) -> String {
    sign(
        header,
        claims,
        Algorithm::RS256,
        &TestKey::Rsa.encoding_key(),
    )
}

/// A JWT signed with the trusted key over exactly these header and payload texts.
fn raw(header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    sign_input(&input, Algorithm::RS256, &TestKey::Rsa.encoding_key())
}

#[tokio::test]
async fn a_caller_jwt_passes_or_is_refused_with_its_reason() {
    let verifier = verifier().await;
    let good = rsa(&header(), &claims());
    assert_eq!(
        verifier.verify(&good, NOW, 0).await,
        Ok((Some("j-1".to_owned()), NOW + 60))
    );
    let header_text = header().to_string();
    let no_exp = {
        let mut claims = claims();
        claims.as_object_mut().expect("object").remove("exp");
        claims
    };
    let untrusted = sign(
        &header(),
        &claims(),
        Algorithm::RS256,
        &TestKey::Untrusted.encoding_key(),
    );
    let cases = [
        ("a.b".to_owned(), "not a compact JWS"),
        (format!("{good}.e30.e30"), "not a compact JWS"),
        (format!("!{good}"), "not base64url"),
        (
            raw(r#"{"alg":"RS256","alg":"RS256"}"#, "{}"),
            "a member name appears twice",
        ),
        (raw("[1]", "{}"), "not a JSON object"),
        (
            rsa(&with(header(), "crit", json!(["exp"])), &claims()),
            "crit and enc are not supported",
        ),
        (
            rsa(&with(header(), "enc", json!("A128GCM")), &claims()),
            "crit and enc are not supported",
        ),
        (
            rsa(&with(header(), "typ", json!("secevent+jwt")), &claims()),
            "a security event or logout token is not a credential",
        ),
        (
            rsa(&with(header(), "typ", json!("logout+jwt")), &claims()),
            "a security event or logout token is not a credential",
        ),
        (
            rsa(&with(header(), "alg", json!("none")), &claims()),
            "alg not accepted",
        ),
        (
            rsa(&with(header(), "alg", json!("ES256")), &claims()),
            "alg not accepted",
        ),
        (untrusted, "bad signature or unknown key"),
        (
            sign_input(
                &format!("{}.!", b64(header_text.as_bytes())),
                Algorithm::RS256,
                &TestKey::Rsa.encoding_key(),
            ),
            "not base64url",
        ),
        (
            raw(&header_text, r#"{"iss":"a","iss":"b"}"#),
            "a member name appears twice",
        ),
        (raw(&header_text, "[]"), "not a JSON object"),
        (
            rsa(
                &header(),
                &with(claims(), "iss", json!("https://other.test")),
            ),
            "wrong issuer",
        ),
        (
            rsa(&header(), &with(claims(), "aud", json!(["other"]))),
            "wrong audience",
        ),
        (rsa(&header(), &no_exp), "exp is required"),
        (
            rsa(&header(), &with(claims(), "exp", json!(NOW))),
            "expired",
        ),
        (
            rsa(&header(), &with(claims(), "exp", json!(NOW + 3601))),
            "valid for too long",
        ),
    ];
    for (jwt, reason) in cases {
        assert_eq!(verifier.verify(&jwt, NOW, 0).await, Err(reason), "{jwt}");
    }
}
