//! `envoy.service.auth.v3.Authorization/Check` on tonic, written out rather than generated so
//! that its codec can decode only what Check reads ([`CheckRequestView`]) and send an allow
//! response that was encoded once per cached token as it is.

use super::request::{CheckRequestView, CheckedRequest};
use super::service::AuthzService;
use bytes::{BufMut, Bytes};
use envoy_types::ext_authz::v3::pb::CheckResponse;
use prost::Message;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

/// The gRPC service name Envoy calls.
pub const SERVICE_NAME: &str = "envoy.service.auth.v3.Authorization";
/// The one method's path.
const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// A `CheckResponse` ready to send.
#[derive(Debug, Clone)]
pub enum CheckReply {
    /// Already encoded (an allow, encoded once per verified token).
    Encoded(Bytes),
    /// To encode now (a refusal).
    Message(Box<CheckResponse>),
}

/// Decodes [`CheckedRequest`]s and encodes [`CheckReply`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckCodec;

impl Codec for CheckCodec {
    type Encode = CheckReply;
    type Decode = CheckedRequest;
    type Encoder = Self;
    type Decoder = Self;

    fn encoder(&mut self) -> Self {
        Self
    }

    fn decoder(&mut self) -> Self {
        Self
    }
}

impl Encoder for CheckCodec {
    type Item = CheckReply;
    type Error = Status;

    fn encode(&mut self, item: CheckReply, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        match item {
            CheckReply::Encoded(bytes) => {
                dst.put_slice(&bytes);
                Ok(())
            }
            CheckReply::Message(message) => message
                .encode(dst)
                .map_err(|error| Status::internal(format!("cannot encode the response: {error}"))),
        }
    }
}

impl Decoder for CheckCodec {
    type Item = CheckedRequest;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<CheckedRequest>, Status> {
        CheckRequestView::decode(src)
            .map(|view| Some(view.into()))
            .map_err(|error| Status::invalid_argument(format!("malformed CheckRequest: {error}")))
    }
}

/// The tonic service to mount: answers `Check` through an [`AuthzService`], and
/// `UNIMPLEMENTED` for any other method.
#[derive(Debug, Clone)]
pub struct CheckServer {
    service: Arc<AuthzService>,
}

impl CheckServer {
    /// Serves `service`.
    pub fn new(service: AuthzService) -> Self {
        Self {
            service: Arc::new(service),
        }
    }
}

impl NamedService for CheckServer {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> Service<http::Request<B>> for CheckServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != CHECK_PATH {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let method = CheckMethod(Arc::clone(&self.service));
        Box::pin(async move { Ok(Grpc::new(CheckCodec).unary(method, request).await) })
    }
}

/// The `Check` method, for [`Grpc::unary`].
struct CheckMethod(Arc<AuthzService>);

impl UnaryService<CheckedRequest> for CheckMethod {
    type Response = CheckReply;
    type Future = BoxFuture<Response<CheckReply>, Status>;

    fn call(&mut self, request: Request<CheckedRequest>) -> Self::Future {
        let service = Arc::clone(&self.0);
        Box::pin(async move { Ok(Response::new(service.check(request.into_inner()).await)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::Decider;
    use crate::config::{ReplicaConfig, ResponseConfig, StalePolicy, TokenSources};
    use crate::revocation::Replica;
    use crate::token::{VerifiedCache, Verifier};
    use envoy_types::ext_authz::v3::pb::{CheckRequest, HttpResponse};
    use http_body_util::{BodyExt, Full};
    use std::time::Duration;

    async fn server() -> CheckServer {
        let verifier = Verifier::new(&[], Duration::ZERO, 8192, Duration::from_secs(3600))
            .await
            .expect("verifier");
        let replica = Replica::new(ReplicaConfig {
            max_staleness: Duration::from_secs(30),
            stale_policy: StalePolicy::Deny,
            resync_interval: Duration::from_secs(600),
        });
        let decider = Decider::new(
            Arc::new(verifier),
            VerifiedCache::new(10, 1 << 20, Duration::ZERO),
            Arc::new(replica),
            TokenSources::default(),
            8192,
        );
        let response = ResponseConfig {
            realm: "mesh".to_owned(),
            strip_headers: Vec::new(),
            strip_sources: None,
            claim_headers: Default::default(),
            dynamic_metadata: crate::config::MetadataClaims::All,
        };
        AuthzService::new(Arc::new(decider), response).svc()
    }

    /// Sends one gRPC message (`payload`, framed) to `path`; the response's gRPC status
    /// (from the headers or the trailers) and its message bytes.
    async fn call(path: &str, payload: &[u8]) -> (String, Bytes) {
        let mut frame = vec![0u8];
        frame.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_be_bytes());
        frame.extend_from_slice(payload);
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://localhost{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from(frame)))
            .expect("request");
        let response = server().await.call(request).await.expect("infallible");
        let header_status = response.headers().get("grpc-status").cloned();
        let collected = response.into_body().collect().await.expect("body");
        let trailer_status = collected
            .trailers()
            .and_then(|trailers| trailers.get("grpc-status").cloned());
        let status = header_status
            .or(trailer_status)
            .map(|value| value.to_str().expect("ascii").to_owned())
            .expect("a grpc-status");
        let body = collected.to_bytes();
        let message = if body.len() > 5 {
            body.slice(5..)
        } else {
            Bytes::new()
        };
        (status, message)
    }

    #[tokio::test]
    async fn a_request_without_a_token_gets_a_denial_response() {
        let request = CheckRequest::default().encode_to_vec();
        let (status, message) = call(CHECK_PATH, &request).await;
        assert_eq!(status, "0");
        let response = CheckResponse::decode(message).expect("a CheckResponse");
        let Some(HttpResponse::DeniedResponse(denied)) = response.http_response else {
            panic!("expected a denial, got {response:?}");
        };
        assert_eq!(denied.status.map(|s| s.code), Some(401));
    }

    #[tokio::test]
    async fn a_malformed_request_is_invalid_argument() {
        let (status, _) = call(CHECK_PATH, b"\x0a\xff\xff\xff\xff\x0f").await;
        assert_eq!(status, (tonic::Code::InvalidArgument as i32).to_string());
    }

    #[tokio::test]
    async fn other_methods_are_unimplemented() {
        let (status, _) = call("/envoy.service.auth.v3.Authorization/Other", b"").await;
        assert_eq!(status, (tonic::Code::Unimplemented as i32).to_string());
    }
}
