//! End to end through a real Envoy and a real `jwt-revoker serve` (with `[token] header` and
//! `cookie`, and `strip_authorization`): one request, one token. A request carrying a valid
//! token and a revoked one — in two places, or twice in one place, or where only a lenient
//! parser would look (after a comma, under `access.token` or `Access_Token`, after `JWT` or
//! `Bearer<TAB>`) — is refused (400 `invalid_request`, or 401 when malformed) and never
//! reaches the application; the same token sent twice passes, and the application sees no
//! copy of it, under any name.
//! Also through Envoy: tokens typed as another kind of JWT, and tokens with duplicate JSON
//! members, are refused.

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::json;
use support::http::{Request, Response};
use support::server::ServerProcess;
use support::stack::Stack;
use support::tokens;

fn stack() -> Stack {
    Stack::with(
        ServerProcess::builder()
            .extra_toml("[token]\nheader = \"x-access-token\"\ncookie = \"access_token\"\n"),
    )
}

/// `GET /api/items` through the stack's Envoy with these headers (repeats kept, in order).
fn send(stack: &Stack, headers: &[(&str, &str)]) -> Response {
    send_to(stack, "/api/items", headers)
}

/// `GET path` through the stack's Envoy with these headers.
fn send_to(stack: &Stack, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request.send(stack.envoy.listen_port())
}

/// The path the app behind Envoy received for an allowed `GET path` with `authorization`.
fn path_the_app_saw(stack: &Stack, path: &str, authorization: &str) -> String {
    let response = send_to(stack, path, &[("authorization", authorization)]);
    assert_eq!(response.status, 200, "{}", response.text());
    stack
        .upstream
        .last_request()
        .expect("the app got the request")
        .path
}

/// A valid token and a revoked one (revoked with the CLI, denied through Envoy).
fn good_and_revoked(stack: &Stack) -> (String, String) {
    let good = tokens::valid("alice");
    let revoked = tokens::valid("mallory");
    stack.server.cli_ok(&["revoke", "--token", &revoked]);
    stack.wait_for_status(&revoked, 401);
    assert_eq!(stack.get(&good).status, 200);
    (good, revoked)
}

#[test]
fn a_valid_token_next_to_a_revoked_one_is_refused_wherever_they_are() {
    let stack = stack();
    let (good, revoked) = good_and_revoked(&stack);
    let bearer = |t: &str| format!("Bearer {t}");
    let cookie = |t: &str| format!("access_token={t}");
    let cases: Vec<Vec<(&str, String)>> = vec![
        // A valid bearer token, and the revoked one in the cookie or the token header.
        vec![
            ("authorization", bearer(&good)),
            ("cookie", cookie(&revoked)),
        ],
        vec![
            ("authorization", bearer(&good)),
            ("x-access-token", revoked.clone()),
        ],
        vec![
            ("x-access-token", good.clone()),
            ("cookie", cookie(&revoked)),
        ],
        // The token cookie twice: in one header, in two headers.
        vec![(
            "cookie",
            format!("access_token={good}; access_token={revoked}"),
        )],
        vec![("cookie", cookie(&good)), ("cookie", cookie(&revoked))],
        // Hidden after a comma (one cookie `theme` to RFC 6265, two to lenient parsers).
        vec![(
            "cookie",
            format!("theme=dark,access_token={good}; access_token={revoked}"),
        )],
        vec![(
            "cookie",
            format!("theme=dark,access_token={revoked}; access_token={good}"),
        )],
        // In another case, which case-insensitive cookie collections read.
        vec![(
            "cookie",
            format!("access_token={good}; ACCESS_TOKEN={revoked}"),
        )],
        // Under a name PHP's $_COOKIE reads as `access_token` (`.` becomes `_`).
        vec![(
            "cookie",
            format!("access.token={revoked}; access_token={good}"),
        )],
        // A JWT under another scheme, which Django REST SimpleJWT (`JWT <token>`) reads.
        vec![
            ("authorization", format!("JWT {revoked}")),
            ("cookie", cookie(&good)),
        ],
        // Two Authorization headers; two token headers (one spelled with `_`).
        vec![
            ("authorization", bearer(&good)),
            ("authorization", bearer(&revoked)),
        ],
        vec![
            ("x-access-token", good.clone()),
            ("x-access-token", revoked.clone()),
        ],
        vec![
            ("x-access-token", good.clone()),
            ("x_access_token", revoked.clone()),
        ],
    ];
    for case in cases {
        for order in [false, true] {
            let mut headers: Vec<(&str, &str)> =
                case.iter().map(|(k, v)| (*k, v.as_str())).collect();
            if order {
                headers.reverse();
            }
            let before = stack.upstream.request_count();
            let response = send(&stack, &headers);
            let shown: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
            assert_eq!(response.status, 400, "{shown:?}: {}", response.text());
            let challenge = response.header("www-authenticate").unwrap_or_default();
            assert!(
                challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_request\""),
                "{shown:?}: {challenge}"
            );
            assert_eq!(response.json()["error"], "invalid_request");
            assert_eq!(
                stack.upstream.request_count(),
                before,
                "{shown:?} reached the app"
            );
        }
    }
    // The RFC 6750 query parameter, which some frameworks read, is a copy too, also under
    // names that ASP.NET Core (any case) and PHP (`.` for `_`) read as `access_token`.
    let auth = bearer(&good);
    for name in ["access_token", "Access_Token", "access.token"] {
        let path = format!("/api/items?x=1&{name}={revoked}");
        let response = send_to(&stack, &path, &[("authorization", &auth)]);
        assert_eq!(response.status, 400, "{name}: {}", response.text());
    }
    // `Bearer<TAB>token` is no other scheme to skip (SimpleJWT's `split()` reads the token
    // after the tab): it is refused as malformed, even with a valid cookie.
    let before = stack.upstream.request_count();
    let tab = format!("Bearer\t{revoked}");
    let response = send(
        &stack,
        &[("authorization", &tab), ("cookie", &cookie(&good))],
    );
    assert_eq!(response.status, 401, "{}", response.text());
    assert_eq!(response.json()["error"], "invalid_token");
    assert_eq!(
        stack.upstream.request_count(),
        before,
        "the tab reached the app"
    );
    let metrics = support::http::get(stack.server.metrics_port(), "/metrics").text();
    assert!(
        metrics
            .contains("jwt_revoker_decisions_total{decision=\"deny\",reason=\"multiple_tokens\"}"),
        "{metrics}"
    );
}

#[test]
fn the_same_token_twice_passes_and_the_application_sees_no_copy_of_it() {
    let stack = stack();
    let good = tokens::valid("alice");
    let bearer = format!("Bearer {good}");
    let cookie = format!("theme=dark; access_token={good}; lang=en");
    let response = send(
        &stack,
        &[
            ("authorization", &bearer),
            ("cookie", &cookie),
            ("x-access-token", &good),
            ("x_access_token", &good),
        ],
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = stack
        .upstream
        .last_request()
        .expect("the app got the request");
    assert_eq!(seen.header("x-jwt-sub"), Some("alice"));
    for name in ["authorization", "x-access-token", "x_access_token"] {
        assert_eq!(seen.header(name), None, "{name} reached the app");
    }
    assert_eq!(seen.header("cookie"), Some("theme=dark; lang=en"));
    // The same token as the RFC 6750 query parameter is taken out of the query.
    let path = format!("/api/items?x=1&access_token={good}&y=2");
    assert_eq!(
        path_the_app_saw(&stack, &path, &bearer),
        "/api/items?x=1&y=2"
    );
    // Under every name it appears as (Envoy removes parameters by their names as sent).
    let path = format!("/api/items?x=1&Access_Token={good}&access%2Etoken={good}&y=2");
    assert_eq!(
        path_the_app_saw(&stack, &path, &bearer),
        "/api/items?x=1&y=2"
    );
    // A cookie under a name PHP reads as the token cookie goes too.
    let dotted = format!("theme=dark; access.token={good}; access_token={good}");
    assert_eq!(send(&stack, &[("cookie", &dotted)]).status, 200);
    let seen = stack
        .upstream
        .last_request()
        .expect("the app got the request");
    assert_eq!(seen.header("cookie"), Some("theme=dark"));
    // A cookie header holding only the token is removed.
    let only = format!("access_token={good}");
    assert_eq!(send(&stack, &[("cookie", &only)]).status, 200);
    let seen = stack
        .upstream
        .last_request()
        .expect("the app got the request");
    assert_eq!(seen.header("cookie"), None);
    assert_eq!(seen.header("x-jwt-sub"), Some("alice"));
    // A token only inside another cookie's value (RFC 6265) is no token at all.
    let inside = format!("theme=dark,access_token={good}");
    let response = send(&stack, &[("cookie", &inside)]);
    assert_eq!(response.status, 401);
    assert_eq!(
        response.header("www-authenticate"),
        Some("Bearer realm=\"jwt-revoker\"")
    );
}

/// An RS256 token (kid `rsa-1`) of exactly these JSON texts.
fn raw_rs256(header: &str, claims: &str) -> String {
    let (key, _) = tokens::fixture_key(Algorithm::RS256);
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::RS256).expect("sign");
    format!("{input}.{signature}")
}

#[test]
fn logout_tokens_and_duplicate_claims_are_refused_through_envoy() {
    let stack = stack();
    let mut claims = tokens::claims("alice");
    claims["sid"] = json!("s-1");
    let text = claims.to_string();
    let typed = |typ: &str, text: &str| {
        raw_rs256(
            &format!(r#"{{"alg":"RS256","kid":"rsa-1","typ":"{typ}"}}"#),
            text,
        )
    };
    // The control: untyped or typed as an access token, these claims pass.
    for typ in ["JWT", "at+jwt"] {
        assert_eq!(stack.get(&typed(typ, &text)).status, 200, "{typ}");
    }
    // Typed as another kind of JWT, the same claims are refused.
    for typ in ["logout+jwt", "application/logout+jwt", "secevent+jwt"] {
        let response = stack.get(&typed(typ, &text));
        assert_eq!(response.status, 401, "{typ}");
        assert_eq!(response.json()["error"], "invalid_token");
    }
    // With the `events` of a logout token, untyped or typed `JWT`, they are refused too.
    claims["events"] = json!({"http://schemas.openid.net/event/backchannel-logout": {}});
    let logout = claims.to_string();
    let untyped = raw_rs256(r#"{"alg":"RS256","kid":"rsa-1"}"#, &logout);
    for token in [untyped, typed("JWT", &logout)] {
        let response = stack.get(&token);
        assert_eq!(response.status, 401, "{}", response.text());
        assert_eq!(response.json()["error"], "invalid_token");
    }
    let header = r#"{"alg":"RS256","kid":"rsa-1"}"#;
    let body = &text[..text.len() - 1];
    let good = raw_rs256(header, &format!("{body},\"role\":\"user\"}}"));
    assert_eq!(stack.get(&good).status, 200);
    let twice = raw_rs256(header, &format!("{body},\"sub\":\"mallory\"}}"));
    let response = stack.get(&twice);
    assert_eq!(response.status, 401, "{}", response.text());
    let metrics = support::http::get(stack.server.metrics_port(), "/metrics").text();
    for reason in ["wrong_token_type", "duplicate_member"] {
        assert!(
            metrics.contains(&format!("reason=\"{reason}\"")),
            "{reason} in {metrics}"
        );
    }
}
