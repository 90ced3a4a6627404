//! Against a real OpenID Provider (npm `oidc-provider`) through a real Envoy: JWT access
//! tokens from its token endpoint are allowed (keys discovered through its `jwks_uri`);
//! RP-initiated logout makes it send a back-channel logout to jwt-revoker, after which that
//! session's tokens are denied while the user's other session and other users stay allowed;
//! an `offline_access` refresh after the logout yields a token (with the old `sid`) that is
//! allowed; a key rotation at the provider is followed. A second test bridges the provider's
//! logouts into CAEP session-revoked pushes (SSF) instead of back-channel logout.

mod support;

use std::time::Duration;
use support::oidc::{CLIENT_ID, OpenIdProvider, RESOURCE, claims_of};
use support::server::ServerProcess;
use support::stack::Stack;
use support::{tokens, wait_until};

fn issuer_toml(issuer: &str, backchannel: bool) -> String {
    let backchannel = if backchannel {
        format!("backchannel_audiences = [\"{CLIENT_ID}\"]")
    } else {
        String::new()
    };
    format!(
        r#"
[[issuers]]
issuer = "{issuer}"
audiences = ["{RESOURCE}"]
jwks_uri = "{issuer}/jwks"
algorithms = ["RS256"]
jwks_min_refresh_interval = "1s"
{backchannel}
"#
    )
}

/// Waits until the clock is past `second`, so a token issued now has a later `iat`.
fn wait_past(second: u64) {
    wait_until("the next second", Duration::from_secs(3), |_| {
        (tokens::now() > second).then_some(())
    });
}

#[test]
fn logout_at_the_provider_denies_that_session_only_and_offline_access_keeps_working() {
    let ports = OpenIdProvider::ports();
    let issuer = OpenIdProvider::issuer_for(ports.0);
    let stack = Stack::with(ServerProcess::builder().extra_toml(&issuer_toml(&issuer, true)));
    let backchannel = format!("{}/backchannel-logout", stack.server.admin_url());
    let mut op = OpenIdProvider::start(ports, &[("BACKCHANNEL_URI", &backchannel)]);

    let first = op.login("alice");
    let second = op.login("alice");
    let bob = op.login("bob");
    assert_ne!(first.sid, second.sid, "two browser sessions");
    // The first token waits for the keys (fetched from jwks_uri in the background).
    stack.wait_for_status(&first.access_token, 200);
    for login in [&second, &bob] {
        assert_eq!(stack.get(&login.access_token).status, 200);
    }

    op.logout(&first);
    let logged_out_at = tokens::now();
    // The back-channel logout was answered before the logout completed: denied at once.
    assert_eq!(stack.get(&first.access_token).status, 401);
    assert_eq!(
        stack.get(&second.access_token).status,
        200,
        "the user's other session"
    );
    assert_eq!(stack.get(&bob.access_token).status, 200, "another user");
    let listed = stack.server.cli_ok(&["list"]);
    assert!(listed.contains(&first.sid), "{listed}");

    // offline_access: a refresh after the logout gets a token with the old sid, allowed.
    wait_past(logged_out_at);
    let refreshed = op.refresh(&first);
    assert_eq!(claims_of(&refreshed)["sid"], first.sid.as_str());
    assert_eq!(stack.get(&refreshed).status, 200, "{}", stack.server.log());
    assert_eq!(
        stack.get(&first.access_token).status,
        401,
        "the old token stays denied"
    );

    // Key rotation: the restarted provider signs with a new key, found through jwks_uri.
    op.restart_with_key("op-key-2");
    let carol = op.login("carol");
    let header = {
        use base64::Engine as _;
        let part = carol.access_token.split('.').next().expect("header");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .expect("b64");
        serde_json::from_slice::<serde_json::Value>(&bytes).expect("json")
    };
    assert_eq!(header["kid"], "op-key-2");
    stack.wait_for_status(&carol.access_token, 200);
}

#[test]
fn provider_logouts_bridged_into_caep_session_revoked_pushes() {
    let ports = OpenIdProvider::ports();
    let issuer = OpenIdProvider::issuer_for(ports.0);
    let bridge = format!("http://127.0.0.1:{}", ports.1);
    let audience = "https://revoker.test/ssf/op";
    let secret = "bridge-secret-0123456789abcdef";
    let stack = Stack::with(
        ServerProcess::builder()
            .env("TEST_BRIDGE_SECRET", secret)
            .extra_toml(&format!(
                r#"{issuer_config}
[[ssf.streams]]
name = "op"
issuer = "{bridge}"
audience = "{audience}"
jwks_uri = "{bridge}/ssf/jwks"
jwks_min_refresh_interval = "1s"
token_issuers = ["{issuer}"]
authorization_header_env = "TEST_BRIDGE_SECRET"
"#,
                issuer_config = issuer_toml(&issuer, false),
            )),
    );
    let push = format!("{}/ssf/push/op", stack.server.admin_url());
    let op = OpenIdProvider::start(
        ports,
        &[
            ("BRIDGE_PUSH_URI", &push),
            ("BRIDGE_AUDIENCE", audience),
            ("BRIDGE_SECRET", secret),
        ],
    );
    let first = op.login("alice");
    let second = op.login("alice");
    let bob = op.login("bob");
    stack.wait_for_status(&first.access_token, 200);

    // The bridge pushes in the background and redelivers until acknowledged (jwt-revoker
    // may still be fetching the bridge's keys).
    op.logout(&first);
    wait_until(
        "the bridged logout is enforced",
        Duration::from_secs(20),
        |last| {
            let status = stack.get(&first.access_token).status;
            *last = format!("HTTP {status}; provider log:\n{}", op.log());
            (status == 401).then_some(())
        },
    );
    assert_eq!(
        stack.get(&second.access_token).status,
        200,
        "the user's other session"
    );
    assert_eq!(stack.get(&bob.access_token).status, 200, "another user");
    let listed = stack.server.cli_ok(&["list"]);
    assert!(listed.contains("ssf stream=op"), "{listed}");
    assert!(listed.contains(&first.sid), "{listed}");
}
