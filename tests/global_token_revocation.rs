//! Global Token Revocation (`POST /global-token-revocation` on the admin port) against a
//! real `jwt-revoker serve`: the admin token or a signed JWT from the configured caller
//! (keys from its `jwks_uri`, served by the test transmitter) revokes a user as of now (204,
//! the user's tokens denied, others allowed); a replayed caller JWT, a wrong audience, no
//! credentials, a subject of another issuer, an unmappable subject and a malformed body are
//! refused with their status.

mod support;

use jsonwebtoken::{Algorithm, Header};
use serde_json::{Value, json};
use support::check::{CheckClient, Outcome};
use support::http::{Request, Response};
use support::server::{ServerProcess, admin_token};
use support::tokens;
use support::transmitter::Transmitter;

const PATH: &str = "/global-token-revocation";
const AUDIENCE: &str = "https://revoker.test/global-token-revocation";

fn server(caller: &Transmitter) -> ServerProcess {
    ServerProcess::builder()
        .extra_toml(&format!(
            r#"
[ssf.global_token_revocation]
token_issuers = ["{issuer}"]
caller_issuer = "{caller}"
caller_audience = "{AUDIENCE}"
caller_jwks_uri = "{caller}/jwks"
"#,
            issuer = tokens::ISSUER,
            caller = caller.issuer(),
        ))
        .start()
}

fn request(port: u16, authorization: Option<&str>, body: &Value) -> Response {
    let mut request = Request::new("POST", PATH)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    request.send(port)
}

fn user(sub: &str) -> Value {
    json!({"sub_id": {"format": "iss_sub", "iss": tokens::ISSUER, "sub": sub}})
}

fn caller_jwt(caller: &Transmitter, audience: &str) -> String {
    let (key, kid) = tokens::fixture_key(Algorithm::RS256);
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let claims = json!({
        "iss": caller.issuer(), "aud": audience, "iat": tokens::now(),
        "exp": tokens::now() + 60, "jti": tokens::unique_jti(),
    });
    format!(
        "Bearer {}",
        jsonwebtoken::encode(&header, &claims, &key).expect("sign")
    )
}

#[test]
fn the_admin_token_or_a_caller_jwt_revokes_the_user_as_of_now() {
    let caller = Transmitter::start();
    let server = server(&caller);
    let port = server.admin_port();
    let mut check = CheckClient::connect(server.authz_port());
    let (alice, bob, erin) = (
        tokens::valid("alice"),
        tokens::valid("bob"),
        tokens::valid("erin"),
    );
    let admin = format!("Bearer {}", admin_token());
    let answer = request(port, Some(&admin), &user("alice"));
    assert_eq!(answer.status, 204, "{}", answer.text());
    assert_eq!(check.check(&alice), Outcome::Denied(401));
    assert_eq!(check.check(&bob), Outcome::Allowed);

    let jwt = caller_jwt(&caller, AUDIENCE);
    let answer = request(port, Some(&jwt), &user("erin"));
    assert_eq!(answer.status, 204, "{}", answer.text());
    assert_eq!(check.check(&erin), Outcome::Denied(401));
    // The same caller JWT again is a replay.
    let replay = request(port, Some(&jwt), &user("bob"));
    assert_eq!(replay.status, 401, "{}", replay.text());
    assert_eq!(check.check(&bob), Outcome::Allowed);
    let listed = server.cli_ok(&["list"]);
    assert!(listed.contains("global token revocation"), "{listed}");
}

#[test]
fn refusals_have_their_status() {
    let caller = Transmitter::start();
    let server = server(&caller);
    let port = server.admin_port();
    let admin = format!("Bearer {}", admin_token());
    let none = request(port, None, &user("bob"));
    assert_eq!(none.status, 401);
    assert!(none.header("www-authenticate").is_some());
    let wrong_audience = caller_jwt(&caller, "https://elsewhere.test");
    assert_eq!(
        request(port, Some(&wrong_audience), &user("bob")).status,
        401
    );
    let other_issuer =
        json!({"sub_id": {"format": "iss_sub", "iss": "https://other.test", "sub": "bob"}});
    assert_eq!(request(port, Some(&admin), &other_issuer).status, 403);
    let email = json!({"sub_id": {"format": "email", "email": "bob@example.com"}});
    assert_eq!(request(port, Some(&admin), &email).status, 422);
    for body in [
        json!({}),
        json!({"sub_id": 7}),
        json!({"sub_id": {"format": "iss_sub"}}),
    ] {
        let answer = request(port, Some(&admin), &body);
        assert_eq!(answer.status, 400, "{body}: {}", answer.text());
        assert_eq!(answer.json()["error"], "invalid_request");
    }
    let not_json = Request::new("POST", PATH)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", &admin)
        .body("sub=bob")
        .send(port);
    assert_eq!(not_json.status, 400);
    let mut check = CheckClient::connect(server.authz_port());
    assert_eq!(check.check(&tokens::valid("bob")), Outcome::Allowed);
}
