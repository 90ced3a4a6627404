//! Unknown paths are not successes, against a real `jwt-revoker serve`: on the admin port and
//! on the authorization port, a request that is not gRPC for a path no service serves gets
//! 404 with a short JSON body (an identity provider registered with a slightly wrong
//! back-channel logout or revocation URI must not believe its logouts happened), counted in
//! `jwt_revoker_unknown_path_requests_total{port}`; a gRPC request for an unknown method
//! still gets UNIMPLEMENTED, and the known endpoints keep working.

mod support;

use support::http::Request;
use support::server::{ServerProcess, admin_token, health_check};

/// Slightly wrong URIs for the admin port's HTTP endpoints, and other unknown paths.
const UNKNOWN: [&str; 9] = [
    "/backchannel-logout/",
    "/Backchannel-Logout",
    "/revoke/",
    "/REVOKE",
    "/oauth2/revoke",
    "/",
    "/backchannel-logout/x",
    "/jwtrevoker.admin.v1.RevocationAdmin/Nope",
    "/envoy.service.auth.v3.Authorization/Nope",
];

fn server() -> ServerProcess {
    ServerProcess::builder()
        .issuer_toml(0, "backchannel_audiences = [\"web-app\"]")
        .start()
}

fn assert_not_found(port: u16, method: &str, path: &str) {
    let response = Request::new(method, path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("logout_token=x")
        .send(port);
    assert_eq!(response.status, 404, "{method} {path}: {}", response.text());
    assert_eq!(response.header("grpc-status"), None, "{method} {path}");
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.json()["error"], "not_found", "{method} {path}");
}

/// The `grpc-status` of a gRPC call of `path` with an empty message, on `port`, with the
/// admin token.
fn grpc_status(port: u16, path: &'static str) -> tonic::Code {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.expect("ready");
        let codec = tonic_prost::ProstCodec::<(), ()>::default();
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
        let mut request = tonic::Request::new(());
        let bearer = format!("Bearer {}", admin_token()).parse().expect("ascii");
        request.metadata_mut().insert("authorization", bearer);
        match grpc.unary(request, path, codec).await {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        }
    })
}

#[test]
fn unknown_paths_on_the_admin_port_are_404_and_known_ones_still_answer() {
    let server = server();
    let port = server.admin_port();
    for path in UNKNOWN {
        assert_not_found(port, "POST", path);
    }
    assert_not_found(port, "GET", "/revoke/x");
    // The real endpoints are still there: a form without a token is their own 400/401.
    let revoke = Request::new("POST", "/revoke")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=x")
        .send(port);
    assert_eq!(revoke.status, 401, "{}", revoke.text());
    let logout = Request::new("POST", "/backchannel-logout")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("logout_token=x")
        .send(port);
    assert_eq!(logout.status, 400, "{}", logout.text());
    assert_eq!(logout.json()["error"], "invalid_request");
    // gRPC: unknown methods are UNIMPLEMENTED, known ones work.
    assert_eq!(
        grpc_status(port, "/jwtrevoker.admin.v1.RevocationAdmin/Nope"),
        tonic::Code::Unimplemented
    );
    assert_eq!(
        grpc_status(port, "/no.Such/Service"),
        tonic::Code::Unimplemented
    );
    assert_eq!(health_check(port), Ok(true));
    let metrics = support::http::get(server.metrics_port(), "/metrics").text();
    let expected = format!(
        "jwt_revoker_unknown_path_requests_total{{port=\"admin\"}} {}",
        UNKNOWN.len() + 1
    );
    assert!(metrics.contains(&expected), "{expected} in\n{metrics}");
}

#[test]
fn unknown_paths_on_the_authorization_port_are_404_over_http1_and_http2() {
    let server = server();
    let port = server.authz_port();
    for path in UNKNOWN {
        assert_not_found(port, "POST", path);
    }
    assert_not_found(port, "GET", "/envoy.service.auth.v3.Authorization/Check/x");
    // HTTP/2 without TLS (as Envoy connects), but not gRPC.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let status = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .expect("client");
        client
            .post(format!("http://127.0.0.1:{port}/backchannel-logout"))
            .body("x")
            .send()
            .await
            .expect("h2 answer")
            .status()
            .as_u16()
    });
    assert_eq!(status, 404);
    assert_eq!(
        grpc_status(port, "/envoy.service.auth.v3.Authorization/Nope"),
        tonic::Code::Unimplemented
    );
    assert_eq!(
        grpc_status(port, "/no.Such/Service"),
        tonic::Code::Unimplemented
    );
    assert_eq!(health_check(port), Ok(true));
    let metrics = support::http::get(server.metrics_port(), "/metrics").text();
    assert!(
        metrics.contains(&format!(
            "jwt_revoker_unknown_path_requests_total{{port=\"authz\"}} {}",
            UNKNOWN.len() + 2
        )),
        "{metrics}"
    );
}
