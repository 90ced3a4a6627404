//! Logout at the edge: on a configured logout route (method + exact path, optionally one
//! issuer's tokens only), Check records a revocation of the caller's valid token, its session
//! or its subject through the [`Revoker`] — durably — before letting the request through.

use super::request::CheckedRequest;
use crate::admin::{AdminError, Revoker};
use crate::config::{LogoutRevoke, LogoutRoute};
use crate::revocation::RevocationKind;
use crate::token::VerifiedToken;
use std::sync::Arc;

/// The reason stored with revocations made by a logout route.
pub const LOGOUT_REASON: &str = "logout route";

/// The configured logout routes and the revoker that records their revocations.
pub struct LogoutRoutes {
    routes: Vec<LogoutRoute>,
    revoker: Arc<Revoker>,
}

impl std::fmt::Debug for LogoutRoutes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogoutRoutes")
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

impl LogoutRoutes {
    /// Routes `routes`, recording through `revoker`.
    pub fn new(routes: Vec<LogoutRoute>, revoker: Arc<Revoker>) -> Self {
        Self { routes, revoker }
    }

    /// What the first route matching this request and token issuer revokes, if any.
    /// The path is compared exactly, without its query string.
    pub fn matching(&self, method: &str, path: &str, issuer: &str) -> Option<LogoutRevoke> {
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        self.routes
            .iter()
            .find(|route| {
                route.method.eq_ignore_ascii_case(method)
                    && route.path == path
                    && route.issuer.as_deref().is_none_or(|iss| iss == issuer)
            })
            .map(|route| route.revoke)
    }

    /// What the route matching `request` for `token`'s issuer revokes, if any.
    fn route_for(&self, request: &CheckedRequest, token: &VerifiedToken) -> Option<LogoutRevoke> {
        self.matching(&request.method(), &request.path(), &token.claims.iss)
    }

    /// Whether `request` is on a logout route for `token`'s issuer.
    pub fn is_logout_request(&self, request: &CheckedRequest, token: &VerifiedToken) -> bool {
        self.route_for(request, token).is_some()
    }

    /// If `request` is on a logout route, records the revocation `token` asks for; `Err`
    /// means it could not be recorded (the store failed) and the request must be refused.
    pub async fn on_allowed(
        &self,
        request: &CheckedRequest,
        token: &VerifiedToken,
        now: u64,
    ) -> Result<(), AdminError> {
        let Some(revoke) = self.route_for(request, token) else {
            return Ok(());
        };
        let kind = match revoke {
            LogoutRevoke::Token => RevocationKind::Token,
            LogoutRevoke::Session => RevocationKind::Session,
            LogoutRevoke::Subject => RevocationKind::Subject,
        };
        let (revoked, _) = self
            .revoker
            .revoke_verified(token, kind, LOGOUT_REASON, now)
            .await?;
        tracing::info!(
            asked = kind.as_str(),
            revoked = revoked.as_str(),
            iss = %token.claims.iss,
            token_id = %token.token_id,
            "logout route: revocation recorded"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReplicaConfig;
    use crate::config::StalePolicy;
    use crate::revocation::Replica;
    use crate::store::embedded::EmbeddedStore;
    use crate::token::Verifier;
    use std::time::Duration;

    async fn routes(dir: &std::path::Path) -> LogoutRoutes {
        let store = Arc::new(EmbeddedStore::open(dir).expect("store"));
        let replica = Arc::new(Replica::new(ReplicaConfig {
            max_staleness: Duration::from_secs(30),
            stale_policy: StalePolicy::Deny,
            resync_interval: Duration::from_secs(600),
        }));
        let verifier = Arc::new(
            Verifier::new(
                &[],
                Duration::from_secs(30),
                8192,
                Duration::from_secs(24 * 3600),
            )
            .await
            .expect("verifier"),
        );
        let revoker = Arc::new(Revoker::new(
            store,
            replica,
            verifier,
            ["https://a".to_owned(), "https://b".to_owned()],
            Duration::from_secs(3600),
            Duration::from_secs(30),
        ));
        let route = |method: &str, path: &str, issuer: Option<&str>, revoke| LogoutRoute {
            method: method.into(),
            path: path.into(),
            issuer: issuer.map(str::to_owned),
            revoke,
        };
        LogoutRoutes::new(
            vec![
                route("POST", "/logout", Some("https://a"), LogoutRevoke::Session),
                route("POST", "/logout", None, LogoutRevoke::Token),
                route("DELETE", "/signout-everywhere", None, LogoutRevoke::Subject),
            ],
            revoker,
        )
    }

    #[tokio::test]
    async fn routes_match_method_exact_path_and_issuer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let routes = routes(dir.path()).await;
        assert_eq!(
            routes.matching("POST", "/logout", "https://a"),
            Some(LogoutRevoke::Session)
        );
        assert_eq!(
            routes.matching("POST", "/logout?next=/", "https://b"),
            Some(LogoutRevoke::Token)
        );
        assert_eq!(
            routes.matching("DELETE", "/signout-everywhere", "https://b"),
            Some(LogoutRevoke::Subject)
        );
        for (method, path) in [
            ("GET", "/logout"),
            ("POST", "/logout/"),
            ("POST", "/logout/x"),
            ("POST", "/Logout"),
            ("POST", "/"),
        ] {
            assert_eq!(
                routes.matching(method, path, "https://a"),
                None,
                "{method} {path}"
            );
        }
    }
}
