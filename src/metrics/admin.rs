//! Admin RPC metrics: a tower layer for the admin port's server that counts each call to
//! `jwtrevoker.admin.v1.RevocationAdmin` in `jwt_revoker_admin_requests_total{method, code}`.
//!
//! The code is the `grpc-status` of the answer: from the headers of a trailers-only answer
//! (every error, including a refused admin token), else from the trailers at the end of
//! the body; an answer whose body is dropped before its trailers counts as `Cancelled`.
//! Calls to other services on the port (health, reflection) are not counted.

use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tower::{Layer, Service};

/// The admin service's gRPC path prefix.
const PREFIX: &str = "/jwtrevoker.admin.v1.RevocationAdmin/";
/// The admin methods counted under their own name; any other counts as `other`.
const METHODS: &[&str] = &[
    "Revoke",
    "Unrevoke",
    "GetRevocation",
    "ListRevocations",
    "GetStatus",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: &'static str,
    code: &'static str,
}

/// Counts admin RPCs by method and gRPC code.
#[derive(Clone, Debug)]
pub struct AdminRpcLayer {
    requests: Family<RpcLabels, Counter>,
}

impl AdminRpcLayer {
    /// Creates the counter and registers it into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RpcLabels, Counter>::default();
        registry.register(
            "jwt_revoker_admin_requests",
            "Admin API calls by method and gRPC status code",
            requests.clone(),
        );
        Self { requests }
    }
}

impl<S> Layer<S> for AdminRpcLayer {
    type Service = AdminRpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AdminRpcService {
            inner,
            requests: self.requests.clone(),
        }
    }
}

/// The service [`AdminRpcLayer`] wraps around the admin port's routes.
#[derive(Clone, Debug)]
pub struct AdminRpcService<S> {
    inner: S,
    requests: Family<RpcLabels, Counter>,
}

/// The bounded method label of a request path, or `None` when it is not an admin call.
fn method_label(path: &str) -> Option<&'static str> {
    let method = path.strip_prefix(PREFIX)?;
    Some(
        METHODS
            .iter()
            .find(|known| **known == method)
            .copied()
            .unwrap_or("other"),
    )
}

/// The code name of a `grpc-status` header, if present.
fn code_label(headers: &HeaderMap) -> Option<&'static str> {
    let value = headers.get("grpc-status")?;
    let code = tonic::Code::from_bytes(value.as_bytes());
    Some(code_name(code))
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AdminRpcService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Unpin,
{
    type Response = Response<CountedBody<ResBody>>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let method = method_label(request.uri().path());
        let requests = self.requests.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            let pending = method.and_then(|method| {
                let record = Record { method, requests };
                match code_label(response.headers()) {
                    Some(code) => {
                        record.done(code);
                        None
                    }
                    None => Some(record),
                }
            });
            Ok(response.map(|inner| CountedBody { inner, pending }))
        })
    }
}

/// One admin call whose code is not known yet.
#[derive(Debug)]
struct Record {
    method: &'static str,
    requests: Family<RpcLabels, Counter>,
}

impl Record {
    fn done(self, code: &'static str) {
        self.requests
            .get_or_create(&RpcLabels {
                method: self.method,
                code,
            })
            .inc();
    }
}

/// A response body that counts its call once the trailers carry the `grpc-status`.
#[derive(Debug)]
pub struct CountedBody<B> {
    inner: B,
    pending: Option<Record>,
}

impl<B: Body + Unpin> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(code) = frame.trailers_ref().and_then(code_label)
                    && let Some(record) = this.pending.take()
                {
                    record.done(code);
                }
            }
            Some(Err(_)) => {
                if let Some(record) = this.pending.take() {
                    record.done(code_name(tonic::Code::Internal));
                }
            }
            None => {
                // The stream ended without a grpc-status: not a valid gRPC answer.
                if let Some(record) = this.pending.take() {
                    record.done(code_name(tonic::Code::Unknown));
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for CountedBody<B> {
    fn drop(&mut self) {
        if let Some(record) = self.pending.take() {
            record.done(code_name(tonic::Code::Cancelled));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_admin_paths_are_counted_with_bounded_method_names() {
        assert_eq!(
            method_label("/jwtrevoker.admin.v1.RevocationAdmin/Revoke"),
            Some("Revoke")
        );
        assert_eq!(
            method_label("/jwtrevoker.admin.v1.RevocationAdmin/Anything-else"),
            Some("other")
        );
        assert_eq!(method_label("/grpc.health.v1.Health/Check"), None);
    }

    #[test]
    fn codes_come_from_grpc_status() {
        let mut headers = HeaderMap::new();
        assert_eq!(code_label(&headers), None);
        headers.insert("grpc-status", http::HeaderValue::from_static("16"));
        assert_eq!(code_label(&headers), Some("UNAUTHENTICATED"));
        headers.insert("grpc-status", http::HeaderValue::from_static("999"));
        assert_eq!(code_label(&headers), Some("UNKNOWN"));
    }
}
