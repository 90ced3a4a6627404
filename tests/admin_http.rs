//! The admin port's HTTP endpoints against a real `jwt-revoker serve`: RFC 7009 `POST /revoke`
//! (admin and self-service, and every refusal), OIDC back-channel logout (session and subject,
//! and every refusal: bad signature, missing events, nonce, replayed jti, wrong aud, an access
//! token), and bad admin input over gRPC — each refusal a clear 400/INVALID_ARGUMENT with
//! nothing stored. The gRPC API keeps working on the same port.

mod support;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use jwt_revoker::admin::pb::{
    self, RevokeRequest, revocation_admin_client::RevocationAdminClient, revoke_request,
};
use serde_json::{Value, json};
use support::server::{ServerProcess, admin_token};
use support::tokens;

/// The client id the test issuer's logout tokens are for.
const CLIENT_ID: &str = "web-app";
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

fn server() -> ServerProcess {
    ServerProcess::builder()
        .issuer_toml(0, &format!("backchannel_audiences = [\"{CLIENT_ID}\"]"))
        .start()
}

fn form(params: &[(&str, &str)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

struct Answer {
    status: u16,
    cache_control: Option<String>,
    www_authenticate: Option<String>,
    body: String,
}

impl Answer {
    fn error(&self) -> String {
        let body: Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body));
        body["error"].as_str().unwrap_or_default().to_owned()
    }
}

async fn post(
    server: &ServerProcess,
    path: &str,
    content_type: &str,
    bearer: Option<&str>,
    body: String,
) -> Answer {
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", server.admin_url()))
        .header("content-type", content_type)
        .body(body);
    if let Some(bearer) = bearer {
        request = request.header("authorization", format!("Bearer {bearer}"));
    }
    let response = request.send().await.expect("the admin port answers HTTP");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (cache_control, www_authenticate) = (header("cache-control"), header("www-authenticate"));
    let status = response.status().as_u16();
    let body = response.text().await.expect("a body");
    Answer {
        status,
        cache_control,
        www_authenticate,
        body,
    }
}

const FORM: &str = "application/x-www-form-urlencoded";

async fn revoke(server: &ServerProcess, bearer: Option<&str>, params: &[(&str, &str)]) -> Answer {
    post(server, "/revoke", FORM, bearer, form(params)).await
}

async fn backchannel(server: &ServerProcess, logout_token: &str) -> Answer {
    post(
        server,
        "/backchannel-logout",
        FORM,
        None,
        form(&[("logout_token", logout_token)]),
    )
    .await
}

/// Every live revocation, as the CLI lists them (JSON lines).
fn stored(server: &ServerProcess) -> Vec<Value> {
    server
        .cli_ok(&["list", "--all", "--json"])
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

fn logout_claims(sid: Option<&str>, sub: Option<&str>) -> Value {
    let mut claims = json!({
        "iss": tokens::ISSUER,
        "aud": CLIENT_ID,
        "iat": tokens::now(),
        "jti": tokens::unique_jti(),
        "events": { BACKCHANNEL_EVENT: {} },
    });
    if let Some(sid) = sid {
        claims["sid"] = json!(sid);
    }
    if let Some(sub) = sub {
        claims["sub"] = json!(sub);
    }
    claims
}

/// A logout token signed with the issuer's RSA key, typed `logout+jwt`.
fn logout_token(claims: &Value) -> String {
    let (key, kid) = tokens::fixture_key(Algorithm::RS256);
    sign_typed(claims, &key, kid)
}

fn sign_typed(claims: &Value, key: &EncodingKey, kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.typ = Some("logout+jwt".to_owned());
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).expect("sign a logout token")
}

#[tokio::test]
async fn rfc7009_revokes_for_the_admin_and_for_the_token_itself() {
    let server = server();
    let admin = admin_token();

    let alice = tokens::valid("alice");
    let answer = revoke(&server, Some(&admin), &[("token", &alice)]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.cache_control.as_deref(), Some("no-store"));
    assert_eq!(stored(&server).len(), 1);

    // Self-service: the token being revoked is the caller's own bearer token.
    let bob = tokens::valid("bob");
    let answer = revoke(
        &server,
        Some(&bob),
        &[("token", &bob), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(stored(&server).len(), 2);

    // Already revoked, invalid, forged: 200, and nothing more is stored.
    for token in [
        alice.clone(),
        "not-a-jwt".to_owned(),
        tokens::untrusted_key(&tokens::claims("carol")),
        tokens::alg_none(&tokens::claims("carol")),
    ] {
        let answer = revoke(&server, Some(&admin), &[("token", &token)]).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.cache_control.as_deref(), Some("no-store"));
    }
    assert_eq!(stored(&server).len(), 2);
}

#[tokio::test]
async fn rfc7009_refusals_store_nothing() {
    let server = server();
    let admin = admin_token();
    let alice = tokens::valid("alice");
    let bob = tokens::valid("bob");

    for bearer in [None, Some("wrong-admin-token-0000"), Some(bob.as_str())] {
        let answer = revoke(&server, bearer, &[("token", &alice)]).await;
        assert_eq!(answer.status, 401, "{bearer:?}: {}", answer.body);
        assert_eq!(answer.error(), "invalid_client");
        assert_eq!(answer.cache_control.as_deref(), Some("no-store"));
        assert!(
            answer
                .www_authenticate
                .as_deref()
                .is_some_and(|c| c.starts_with("Bearer")),
            "{:?}",
            answer.www_authenticate
        );
    }

    let answer = revoke(
        &server,
        Some(&admin),
        &[("token", &alice), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(
        (answer.status, answer.error().as_str()),
        (400, "unsupported_token_type")
    );

    for params in [
        vec![],
        vec![("token", "")],
        vec![("token", alice.as_str()), ("token", bob.as_str())],
    ] {
        let answer = revoke(&server, Some(&admin), &params).await;
        assert_eq!(answer.status, 400, "{params:?}: {}", answer.body);
        assert_eq!(answer.error(), "invalid_request");
    }

    let body = json!({ "token": alice }).to_string();
    let answer = post(&server, "/revoke", "application/json", Some(&admin), body).await;
    assert_eq!(
        (answer.status, answer.error().as_str()),
        (400, "invalid_request")
    );

    let huge = form(&[("token", &"a".repeat(100_000))]);
    let answer = post(&server, "/revoke", FORM, Some(&admin), huge).await;
    assert_eq!(answer.status, 413, "{}", answer.body);

    assert!(stored(&server).is_empty());
    // The gRPC API still works on the same port.
    server.cli_ok(&["status"]);
}

#[tokio::test]
async fn backchannel_logout_revokes_the_session_or_the_subject() {
    let server = server();

    let answer = backchannel(
        &server,
        &logout_token(&logout_claims(Some("s-9"), Some("alice"))),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.cache_control.as_deref(), Some("no-store"));
    let got = server.cli_ok(&["get", "--session", "s-9", "--issuer", tokens::ISSUER]);
    assert!(got.contains("back-channel"), "{got}");

    let answer = backchannel(&server, &logout_token(&logout_claims(None, Some("bob")))).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    server.cli_ok(&["get", "--subject", "bob", "--issuer", tokens::ISSUER]);
    assert_eq!(stored(&server).len(), 2, "alice's subject is not revoked");
}

#[tokio::test]
async fn backchannel_logout_refusals_store_nothing() {
    let server = server();

    let untrusted = {
        let path = support::fixture("keys/rsa-untrusted.pem");
        let pem = std::fs::read(&path).expect("read the untrusted key");
        EncodingKey::from_rsa_pem(&pem).expect("load the untrusted key")
    };
    let with = |name: &str, value: Value| {
        let mut claims = logout_claims(Some("s-1"), Some("alice"));
        claims[name] = value;
        claims
    };
    let without = |name: &str| {
        let mut claims = logout_claims(Some("s-1"), Some("alice"));
        claims.as_object_mut().expect("object").remove(name);
        claims
    };
    let mut access_token_claims = tokens::claims("alice");
    access_token_claims["aud"] = json!(CLIENT_ID);
    access_token_claims["sid"] = json!("s-1");
    let hmac_issuer = {
        let mut claims = logout_claims(Some("s-1"), None);
        claims["iss"] = json!(tokens::HMAC_ISSUER);
        tokens::hs256(&claims)
    };
    let cases = [
        (
            "bad signature",
            sign_typed(&logout_claims(Some("s-1"), None), &untrusted, "rsa-1"),
        ),
        ("missing events", logout_token(&without("events"))),
        (
            "other event",
            logout_token(&with("events", json!({"http://example.com/e": {}}))),
        ),
        ("nonce present", logout_token(&with("nonce", json!("n-1")))),
        (
            "wrong aud",
            logout_token(&with("aud", json!("another-client"))),
        ),
        ("no jti", logout_token(&without("jti"))),
        ("no iat", logout_token(&without("iat"))),
        (
            "stale iat",
            logout_token(&with("iat", json!(tokens::now() - 3600))),
        ),
        (
            "expired",
            logout_token(&with("exp", json!(tokens::now() - 3600))),
        ),
        (
            "no sid or sub",
            logout_token(&{
                let mut claims = without("sid");
                claims.as_object_mut().expect("object").remove("sub");
                claims
            }),
        ),
        ("access token", tokens::rs256(&access_token_claims)),
        ("access token for the API", tokens::valid("alice")),
        (
            "alg none",
            tokens::alg_none(&logout_claims(Some("s-1"), None)),
        ),
        ("issuer without backchannel_audiences", hmac_issuer),
        ("empty sid", logout_token(&logout_claims(Some(""), None))),
        (
            "oversized sid",
            logout_token(&logout_claims(Some(&"s".repeat(2000)), None)),
        ),
        ("not a JWT", "garbage".to_owned()),
    ];
    for (name, token) in &cases {
        let answer = backchannel(&server, token).await;
        assert_eq!(answer.status, 400, "{name}: {}", answer.body);
        assert_eq!(answer.error(), "invalid_request", "{name}");
        assert_eq!(answer.cache_control.as_deref(), Some("no-store"), "{name}");
    }
    assert!(stored(&server).is_empty(), "{:?}", stored(&server));

    // A replayed jti is refused, even after its revocation was undone.
    let token = logout_token(&logout_claims(Some("s-replay"), None));
    assert_eq!(backchannel(&server, &token).await.status, 200);
    server.cli_ok(&[
        "unrevoke",
        "--session",
        "s-replay",
        "--issuer",
        tokens::ISSUER,
    ]);
    let answer = backchannel(&server, &token).await;
    assert_eq!(
        (answer.status, answer.error().as_str()),
        (400, "invalid_request"),
        "replay"
    );
    assert!(answer.body.contains("replayed"), "{}", answer.body);
    assert!(stored(&server).is_empty());

    let json_body = json!({ "logout_token": token }).to_string();
    let answer = post(
        &server,
        "/backchannel-logout",
        "application/json",
        None,
        json_body,
    )
    .await;
    assert_eq!(
        (answer.status, answer.error().as_str()),
        (400, "invalid_request")
    );
    let answer = post(&server, "/backchannel-logout", FORM, None, String::new()).await;
    assert_eq!(
        (answer.status, answer.error().as_str()),
        (400, "invalid_request")
    );
}

#[tokio::test]
async fn bad_admin_input_is_invalid_argument_and_stores_nothing() {
    let server = server();
    let mut client = RevocationAdminClient::connect(server.admin_url())
        .await
        .expect("connect to the admin API");
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {}", admin_token())
        .parse()
        .expect("metadata");
    let key = |kind: i32, id: String| RevokeRequest {
        target: Some(revoke_request::Target::Key(pb::RevocationKey {
            issuer: tokens::ISSUER.to_owned(),
            kind,
            id,
        })),
        reason: String::new(),
        expires_at: None,
    };
    let cases = [
        ("unknown kind", key(99, "alice".into()), "key.kind"),
        ("no kind", key(0, "alice".into()), "key.kind"),
        (
            "empty id",
            key(pb::RevocationKind::Session.into(), String::new()),
            "key.id",
        ),
        (
            "oversized id",
            key(pb::RevocationKind::Subject.into(), "a".repeat(5000)),
            "key.id",
        ),
    ];
    for (name, request, field) in cases {
        let mut request = tonic::Request::new(request);
        request
            .metadata_mut()
            .insert("authorization", bearer.clone());
        let status = client.revoke(request).await.expect_err(name);
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{name}: {status:?}"
        );
        assert!(
            status.message().contains(field),
            "{name}: {}",
            status.message()
        );
    }

    for args in [
        ["revoke", "--session", "", "--issuer", tokens::ISSUER],
        [
            "revoke",
            "--client",
            &"c".repeat(5000),
            "--issuer",
            tokens::ISSUER,
        ],
    ] {
        let output = server.cli(&args);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("invalid request: key.id"), "{stderr}");
    }
    assert!(stored(&server).is_empty());
}
