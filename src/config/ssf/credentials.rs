//! A stream's credential for one transmitter API (`poll_…` for the poll endpoint,
//! `management_…` for stream management): a static bearer token (`{prefix}_token_file` /
//! `{prefix}_token_env`) or OAuth 2.0 client credentials (`{prefix}_token_endpoint`,
//! `{prefix}_client_id`, `{prefix}_client_secret_file` / `{prefix}_client_secret_env`,
//! `{prefix}_scope`). One reading of both key families, so they behave alike.

use super::super::{ConfigError, invalid};
use super::Credential;
use std::path::{Path, PathBuf};

/// The keys of one credential family, as written.
#[derive(Debug, Default)]
pub(super) struct RawCredential {
    /// `{prefix}_token_file`.
    pub token_file: Option<PathBuf>,
    /// `{prefix}_token_env`.
    pub token_env: Option<String>,
    /// `{prefix}_token_endpoint`.
    pub token_endpoint: Option<String>,
    /// `{prefix}_client_id`.
    pub client_id: Option<String>,
    /// `{prefix}_client_secret_file`.
    pub client_secret_file: Option<PathBuf>,
    /// `{prefix}_client_secret_env`.
    pub client_secret_env: Option<String>,
    /// `{prefix}_scope`.
    pub scope: Option<String>,
}

/// Reads the credential of the `{prefix}_…` keys of `ssf.streams[{index}]`: `None` when no
/// key is given; an error naming the key when both a static token and client credentials
/// are given, a client credentials key comes without `{prefix}_token_endpoint`, or one is
/// missing.
pub(super) fn read(
    index: usize,
    prefix: &str,
    raw: RawCredential,
    base: &Path,
) -> Result<Option<Credential>, ConfigError> {
    let key = |field: &str| format!("ssf.streams[{index}].{prefix}_{field}");
    let bearer = super::credential(
        &key("token_file"),
        &key("token_env"),
        raw.token_file,
        raw.token_env,
        base,
    )?;
    let Some(token_endpoint) = raw.token_endpoint else {
        let stray = [
            ("client_id", raw.client_id.is_some()),
            ("client_secret_file", raw.client_secret_file.is_some()),
            ("client_secret_env", raw.client_secret_env.is_some()),
            ("scope", raw.scope.is_some()),
        ];
        if let Some((field, _)) = stray.iter().find(|(_, given)| *given) {
            return Err(invalid(
                key(field),
                format!("only applies with {prefix}_token_endpoint (client credentials)"),
            ));
        }
        return Ok(bearer.map(Credential::Bearer));
    };
    if bearer.is_some() {
        return Err(invalid(
            key("token_endpoint"),
            format!(
                "give a static {prefix} token ({prefix}_token_file/{prefix}_token_env) or \
                 client credentials ({prefix}_token_endpoint), not both"
            ),
        ));
    }
    super::super::validate_jwks_uri(&key("token_endpoint"), &token_endpoint)?;
    let client_id = raw.client_id.filter(|c| !c.is_empty()).ok_or_else(|| {
        invalid(
            key("client_id"),
            format!("is required with {prefix}_token_endpoint"),
        )
    })?;
    let client_secret = super::credential(
        &key("client_secret_file"),
        &key("client_secret_env"),
        raw.client_secret_file,
        raw.client_secret_env,
        base,
    )?
    .ok_or_else(|| {
        invalid(
            key("client_secret_file"),
            format!(
                "{prefix}_client_secret_file or {prefix}_client_secret_env is required with \
                 {prefix}_token_endpoint"
            ),
        )
    })?;
    let scope = raw.scope.filter(|s| !s.is_empty());
    Ok(Some(Credential::ClientCredentials {
        token_endpoint,
        client_id,
        client_secret,
        scope,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::super::Config;
    use super::Credential;
    use std::path::Path;
    use std::time::Duration;

    const BASE: &str = r#"
[[issuers]]
issuer = "https://idp.example.com"
audiences = ["api"]
jwks = '{"keys": []}'
algorithms = ["RS256"]

[[ssf.streams]]
name = "s"
issuer = "https://idp.example.com"
audience = "a"
jwks_uri = "https://idp.example.com/jwks"
push_url = "https://revoker.example.com/ssf/push/s"
"#;

    fn parse(extra: &str) -> Result<Config, String> {
        crate::config::parse_for_test(&format!("{BASE}{extra}"))
    }

    /// Client credentials keys, the secret in a file under `dir`.
    fn client(dir: &Path) -> String {
        let file = dir.join("secret");
        std::fs::write(&file, "secret-0123456789abcdef\n").expect("write");
        format!(
            "management_token_endpoint = \"https://idp.example.com/token\"\n\
             management_client_id = \"revoker\"\n\
             management_client_secret_file = {:?}\n",
            file.display().to_string()
        )
    }

    #[test]
    fn management_by_client_credentials() {
        let dir = tempfile::tempdir().expect("dir");
        let config = parse(&format!(
            "{}management_scope = \"ssf.manage\"\nverification_interval = \"1h\"\n",
            client(dir.path())
        ))
        .expect("valid");
        let management = config.ssf.streams[0]
            .management
            .clone()
            .expect("management");
        assert_eq!(
            management.credential,
            Credential::ClientCredentials {
                token_endpoint: "https://idp.example.com/token".to_owned(),
                client_id: "revoker".to_owned(),
                client_secret: "secret-0123456789abcdef".to_owned(),
                scope: Some("ssf.manage".to_owned()),
            }
        );
        assert_eq!(
            management.verification_interval,
            Some(Duration::from_secs(3600))
        );
        assert_eq!(management.verification_timeout, Duration::from_secs(30));
        let printed = format!("{management:?}");
        assert!(!printed.contains("0123456789abcdef"), "{printed}");
        // A static token; without an interval the stream is verified once, at start-up.
        let config = parse("management_token_env = \"PATH\"\n").expect("valid");
        let management = config.ssf.streams[0]
            .management
            .clone()
            .expect("management");
        assert!(matches!(management.credential, Credential::Bearer(_)));
        assert_eq!(management.verification_interval, None);
    }

    #[test]
    fn bad_management_credentials_name_the_key() {
        let dir = tempfile::tempdir().expect("dir");
        let client = client(dir.path());
        let cases = [
            (
                format!("{client}management_token_env = \"PATH\"\n"),
                "ssf.streams[0].management_token_endpoint",
            ),
            (
                client.replace("management_client_id = \"revoker\"\n", ""),
                "ssf.streams[0].management_client_id",
            ),
            (
                "management_token_endpoint = \"https://idp.example.com/token\"\n\
                 management_client_id = \"revoker\"\n"
                    .to_owned(),
                "ssf.streams[0].management_client_secret_file",
            ),
            (
                "management_token_env = \"PATH\"\nmanagement_client_id = \"revoker\"\n".to_owned(),
                "ssf.streams[0].management_client_id",
            ),
            (
                client.replace("https://idp", "http://idp"),
                "ssf.streams[0].management_token_endpoint",
            ),
            (
                "verification_interval = \"1m\"\n".to_owned(),
                "ssf.streams[0].verification_interval",
            ),
            (
                format!("{client}verification_interval = \"500ms\"\n"),
                "ssf.streams[0].verification_interval",
            ),
            (
                format!("{client}verification_interval = \"10s\"\nverification_timeout = \"1m\"\n"),
                "ssf.streams[0].verification_timeout",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(&text).expect_err(&text);
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
