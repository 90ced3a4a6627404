//! The `[feed]` section: who may follow the revocation feed (`Revocations/Watch`) on the
//! admin port. Without the section the feed is not served at all.

use super::{ConfigError, TlsConfig, invalid, resolve};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Shortest feed token accepted, in characters.
const MIN_TOKEN_LEN: usize = 16;

/// The section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFeed {
    token_file: Option<PathBuf>,
    #[serde(default)]
    require_client_cert: bool,
}

/// Who may follow the revocation feed.
#[derive(Clone, PartialEq, Eq)]
pub enum FeedAuth {
    /// Followers send `authorization: Bearer <token>` (and, when the admin port verifies
    /// client certificates, a certificate too).
    Token(String),
    /// The admin port's client-certificate check alone guards the feed
    /// (`feed.require_client_cert = true` with `tls.admin.client_ca_file`).
    ClientCert,
}

impl std::fmt::Debug for FeedAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Token(_) => f.write_str("Token(<redacted>)"),
            Self::ClientCert => f.write_str("ClientCert"),
        }
    }
}

/// Validates `[feed]`: `None` when absent (the feed is not served).
pub(super) fn validate_feed(
    raw: Option<RawFeed>,
    tls: &TlsConfig,
    base: &Path,
) -> Result<Option<FeedAuth>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let admin_mtls = tls
        .admin
        .as_ref()
        .is_some_and(|admin| admin.client_ca.is_some());
    if raw.require_client_cert && !admin_mtls {
        return Err(invalid(
            "feed.require_client_cert",
            "needs tls.admin.client_ca_file: the feed is served on the admin port",
        ));
    }
    match raw.token_file {
        Some(file) => {
            let file = resolve(base, file);
            let token = std::fs::read_to_string(&file)
                .map_err(|e| {
                    invalid(
                        "feed.token_file",
                        format!("cannot read {}: {e}", file.display()),
                    )
                })?
                .trim()
                .to_owned();
            if token.len() < MIN_TOKEN_LEN {
                return Err(invalid(
                    "feed.token_file",
                    format!("the feed token must be at least {MIN_TOKEN_LEN} characters"),
                ));
            }
            Ok(Some(FeedAuth::Token(token)))
        }
        None if raw.require_client_cert => Ok(Some(FeedAuth::ClientCert)),
        None => Err(invalid(
            "feed.token_file",
            "the feed needs a credential: set feed.token_file, or feed.require_client_cert = \
             true with tls.admin.client_ca_file (leave [feed] out to not serve it)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RawFeed {
        toml::from_str(text).expect("feed section")
    }

    #[test]
    fn absent_section_serves_no_feed() {
        let feed = validate_feed(None, &TlsConfig::default(), Path::new("."));
        assert_eq!(feed.expect("valid"), None);
    }

    #[test]
    fn an_empty_section_is_refused_rather_than_served_open() {
        let error = validate_feed(Some(raw("")), &TlsConfig::default(), Path::new("."))
            .expect_err("no credential");
        assert!(error.to_string().contains("feed.token_file"), "{error}");
    }

    #[test]
    fn client_certs_need_the_admin_ports_client_ca() {
        let error = validate_feed(
            Some(raw("require_client_cert = true")),
            &TlsConfig::default(),
            Path::new("."),
        )
        .expect_err("no client CA");
        assert!(error.to_string().contains("client_ca_file"), "{error}");
    }

    #[test]
    fn token_is_read_trimmed_and_must_be_long_enough() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("short"), "abc\n").expect("write");
        std::fs::write(dir.path().join("good"), "0123456789abcdef-feed\n").expect("write");
        let tls = TlsConfig::default();
        let short = validate_feed(Some(raw("token_file = \"short\"")), &tls, dir.path());
        assert!(short.is_err());
        let good = validate_feed(Some(raw("token_file = \"good\"")), &tls, dir.path());
        assert_eq!(
            good.expect("valid"),
            Some(FeedAuth::Token("0123456789abcdef-feed".to_owned()))
        );
    }
}
