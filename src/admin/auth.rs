//! The admin API's access check: `authorization: Bearer <admin token>`, compared in constant
//! time, as a tonic interceptor.

use crate::config::AdminAuth;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tonic::{Request, Status, service::Interceptor};

/// Refuses admin calls without the right bearer admin token (unless the API runs open).
#[derive(Clone, Debug)]
pub struct AdminAuthInterceptor {
    auth: Arc<AdminAuth>,
}

impl AdminAuthInterceptor {
    /// An interceptor enforcing `auth`.
    pub fn new(auth: AdminAuth) -> Self {
        Self {
            auth: Arc::new(auth),
        }
    }
}

/// Whether `header` (the `authorization` value) carries exactly `expected` as a bearer token.
pub fn bearer_matches(header: Option<&[u8]>, expected: &str) -> bool {
    let Some(header) = header else {
        return false;
    };
    let Some((scheme, token)) = header.split_at_checked(7) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return false;
    }
    let token = token.trim_ascii();
    token.ct_eq(expected.as_bytes()).into()
}

impl Interceptor for AdminAuthInterceptor {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        match self.auth.as_ref() {
            AdminAuth::Open => Ok(request),
            AdminAuth::Token(expected) => {
                let header = request
                    .metadata()
                    .get("authorization")
                    .map(|value| value.as_bytes());
                if bearer_matches(header, expected) {
                    Ok(request)
                } else {
                    tracing::warn!("admin request refused: missing or wrong admin token");
                    Err(Status::unauthenticated(
                        "a valid admin bearer token is required",
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-admin";

    #[test]
    fn accepts_only_the_exact_bearer_token() {
        let ok = format!("Bearer {TOKEN}");
        assert!(bearer_matches(Some(ok.as_bytes()), TOKEN));
        let lower = format!("bearer {TOKEN}");
        assert!(bearer_matches(Some(lower.as_bytes()), TOKEN));
        for bad in [
            String::new(),
            TOKEN.to_owned(),
            format!("Basic {TOKEN}"),
            format!("Bearer {TOKEN}x"),
            format!("Bearer {}", &TOKEN[1..]),
            "Bearer ".to_owned(),
            "Bear".to_owned(),
        ] {
            assert!(!bearer_matches(Some(bad.as_bytes()), TOKEN), "{bad:?}");
        }
        assert!(!bearer_matches(None, TOKEN));
    }

    #[test]
    fn interceptor_refuses_without_token_and_allows_open_mode() {
        let mut guarded = AdminAuthInterceptor::new(AdminAuth::Token(TOKEN.to_owned()));
        let refused = guarded.call(Request::new(())).expect_err("no token");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);

        let mut request = Request::new(());
        let value = format!("Bearer {TOKEN}").parse().expect("metadata value");
        request.metadata_mut().insert("authorization", value);
        assert!(guarded.call(request).is_ok());

        let mut open = AdminAuthInterceptor::new(AdminAuth::Open);
        assert!(open.call(Request::new(())).is_ok());
    }
}
