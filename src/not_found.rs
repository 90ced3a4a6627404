//! Unknown paths are not successes: on either gRPC port, a request that is not gRPC, for a
//! path with no HTTP endpoint, gets `404` with a short JSON body, where tonic would answer
//! `200 OK` with `grpc-status: 12` (UNIMPLEMENTED) or another gRPC status in the headers —
//! which an HTTP client, such as an identity provider posting a back-channel logout to a
//! slightly wrong URI, takes for success. A gRPC request (`content-type:
//! application/grpc…`) for an unknown method still gets UNIMPLEMENTED.
//!
//! A tower layer over the whole port, so that it covers every route added to it, now or
//! later, and every way of not being an HTTP endpoint (no service, a service without that
//! method, an admin method refused by the admin token check): a request that is not gRPC
//! never gets a gRPC answer; where the port would give one, it gets the 404 instead.

use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::body::Body;
use tower::{Layer, Service};

/// The body of the 404 answer.
pub const NOT_FOUND_BODY: &str = r#"{"error":"not_found","error_description":"no such endpoint"}"#;
/// The longest part of an unknown path written to the log.
const MAX_LOGGED_PATH: usize = 128;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PortLabels {
    port: &'static str,
}

/// Counts `jwt_revoker_unknown_path_requests_total{port}`; one per port via [`Self::port`].
#[derive(Clone, Debug, Default)]
pub struct UnknownPaths {
    requests: Family<PortLabels, Counter>,
}

impl UnknownPaths {
    /// Creates the counter and registers it into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let this = Self::default();
        registry.register(
            "jwt_revoker_unknown_path_requests",
            "Requests that were not gRPC, for a path with no HTTP endpoint (answered 404)",
            this.requests.clone(),
        );
        this
    }

    /// The layer for the port called `port` (`authz`, `admin`).
    pub fn port(&self, port: &'static str) -> NotFoundLayer {
        NotFoundLayer {
            port,
            requests: self.requests.clone(),
        }
    }
}

/// Answers 404 to a request that is not gRPC where the port's services would answer gRPC.
#[derive(Clone, Debug)]
pub struct NotFoundLayer {
    port: &'static str,
    requests: Family<PortLabels, Counter>,
}

impl<S> Layer<S> for NotFoundLayer {
    type Service = NotFoundService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        NotFoundService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`NotFoundLayer`] wraps around a port's routes.
#[derive(Clone, Debug)]
pub struct NotFoundService<S> {
    inner: S,
    layer: NotFoundLayer,
}

/// Whether a request is gRPC (`content-type: application/grpc`, `application/grpc+proto`,
/// `application/grpc-web`, …).
pub fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.as_bytes().get(..16))
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"application/grpc"))
}

/// Whether a response is a gRPC answer (`content-type: application/grpc…`).
fn is_grpc_answer<B>(response: &Response<B>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.as_bytes().get(..16))
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"application/grpc"))
}

/// The 404 answer.
pub fn not_found() -> Response<Body> {
    let mut response = Response::new(Body::new(axum::body::Body::from(NOT_FOUND_BODY)));
    *response.status_mut() = StatusCode::NOT_FOUND;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for NotFoundService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    ResBody::Error: Into<tonic::codegen::StdError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if is_grpc(&request) {
            let future = self.inner.call(request);
            return Box::pin(async move { Ok(future.await?.map(Body::new)) });
        }
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let layer = self.layer.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            if !is_grpc_answer(&response) {
                return Ok(response.map(Body::new));
            }
            layer
                .requests
                .get_or_create(&PortLabels { port: layer.port })
                .inc();
            let shown: String = path.chars().take(MAX_LOGGED_PATH).collect();
            tracing::info!(port = layer.port, %method, path = ?shown, "unknown path: 404");
            Ok(not_found())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::convert::Infallible;

    /// A stand-in for a port's routes: `/known` answers 200 (HTTP), `/pkg.Service/Method`
    /// an UNAUTHENTICATED gRPC answer, anything else UNIMPLEMENTED.
    #[derive(Clone)]
    struct Routes;

    impl Service<Request<Body>> for Routes {
        type Response = Response<Body>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request<Body>) -> Self::Future {
            let response = if request.uri().path() == "/known" {
                Response::new(Body::empty())
            } else if request.uri().path() == "/pkg.Service/Method" {
                tonic::Status::unauthenticated("").into_http()
            } else {
                tonic::Status::unimplemented("").into_http()
            };
            std::future::ready(Ok(response))
        }
    }

    async fn send(path: &str, content_type: Option<&str>) -> (StatusCode, Option<String>, String) {
        let metrics = UnknownPaths::default();
        let mut service = metrics.port("admin").layer(Routes);
        let mut request = Request::builder().method("POST").uri(path);
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request.body(Body::empty()).expect("request");
        let response = service.call(request).await.expect("infallible");
        let status = response.status();
        let grpc_status = response
            .headers()
            .get("grpc-status")
            .map(|v| v.to_str().expect("ascii").to_owned());
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            grpc_status,
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    #[tokio::test]
    async fn unknown_paths_are_404_unless_the_request_is_grpc() {
        for content_type in [
            None,
            Some("application/x-www-form-urlencoded"),
            Some("text/plain"),
        ] {
            let (status, grpc_status, body) = send("/revoke/", content_type).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{content_type:?}");
            assert_eq!(grpc_status, None);
            let json: serde_json::Value = serde_json::from_str(&body).expect("json");
            assert_eq!(json["error"], "not_found");
        }
        for content_type in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC-web",
        ] {
            let (status, grpc_status, _) = send("/pkg.Service/Nope", Some(content_type)).await;
            assert_eq!(status, StatusCode::OK, "{content_type}");
            assert_eq!(grpc_status.as_deref(), Some("12"), "{content_type}");
        }
        let (status, _, _) = send("/known", None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, _) = send("/pkg.Service/Method", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, grpc_status, _) = send("/pkg.Service/Method", Some("application/grpc")).await;
        assert_eq!(
            (status, grpc_status.as_deref()),
            (StatusCode::OK, Some("16"))
        );
    }
}
