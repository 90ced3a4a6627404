//! Shared harness of the fuzz targets: the fixture world ([`fixture`]) and one verifier
//! built from it, with the Tokio runtime that drives it, made once per process.

pub mod fixture;

use fixture::{Key, NOW};
use jsonwebtoken::EncodingKey;
use jwt_revoker::config::Config;
use jwt_revoker::token::Verifier;
use std::future::Future;
use std::sync::OnceLock;

/// What every verifying target needs, built on first use.
pub struct Harness {
    runtime: tokio::runtime::Runtime,
    /// The fixture configuration ([`fixture::CONFIG`]).
    pub config: Config,
    /// A verifier for its issuers.
    pub verifier: Verifier,
    keys: Vec<EncodingKey>,
}

impl Harness {
    /// The process's harness.
    pub fn get() -> &'static Harness {
        static HARNESS: OnceLock<Harness> = OnceLock::new();
        HARNESS.get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            let config = fixture::config();
            let verifier = fixture::verifier(&runtime, &config);
            let keys = Key::ALL.iter().map(|key| key.encoding_key()).collect();
            Harness {
                runtime,
                config,
                verifier,
                keys,
            }
        })
    }

    /// Runs `future` to completion.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Signs `header` and `claims` bytes with `key` (see [`fixture::sign`]).
    pub fn sign(&self, key: Key, header: &[u8], claims: &[u8]) -> String {
        let index = Key::ALL.iter().position(|k| *k == key).unwrap_or(0);
        fixture::sign(key, &self.keys[index], header, claims)
    }

    /// Verifies `token` every way the service does: as an access token (lifetime enforced
    /// and ignored) and as a back-channel logout token. Checks what an accepted access
    /// token must satisfy, and panics if it does not.
    pub fn verify_all_ways(&self, token: &str) {
        use jwt_revoker::token::TimeRule;
        let verifier = &self.verifier;
        let enforced = self.block_on(verifier.verify(token, NOW, TimeRule::Enforce));
        let ignored = self.block_on(verifier.verify(token, NOW, TimeRule::Ignore));
        if let Ok(verified) = &enforced {
            let claims = &verified.claims;
            let issuer = self
                .config
                .issuers
                .iter()
                .find(|issuer| issuer.issuer == claims.iss)
                .expect("an accepted token names a configured issuer");
            assert!(
                claims.aud.iter().any(|aud| issuer.audiences.contains(aud)),
                "accepted with a foreign audience"
            );
            assert!(
                claims.exp.saturating_add(self.config.leeway.as_secs()) > NOW,
                "accepted after exp"
            );
            assert!(!verified.token_id.is_empty(), "accepted without a token id");
            assert_eq!(
                ignored.as_ref().ok(),
                Some(verified),
                "ignoring the lifetime must accept what enforcing it accepts"
            );
        }
        let _ = self.block_on(verifier.verify_logout_token(
            token,
            &self.config.backchannel_audiences,
            NOW,
        ));
    }
}
