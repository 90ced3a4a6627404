//! `response.dynamic_metadata`: which verified claims an allow carries as Envoy dynamic
//! metadata (under `jwt_payload`). Off by default: Envoy parses and stores whatever an allow
//! carries, on every request, so the default allow carries nothing.

use super::{ConfigError, invalid};
use serde::Deserialize;

/// Which claims go into the allow's dynamic metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MetadataClaims {
    /// None (the default).
    #[default]
    None,
    /// Every claim (`dynamic_metadata = true`, the behaviour before this setting took a list).
    All,
    /// Only these claims, when the token has them (`dynamic_metadata = ["sub", "scope"]`).
    Only(Vec<String>),
}

/// The setting as written: a list of claim names, or `true`/`false`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawMetadata {
    Every(bool),
    Listed(Vec<String>),
}

/// Validates the setting; absent means [`MetadataClaims::None`].
pub(super) fn validate_metadata(raw: Option<RawMetadata>) -> Result<MetadataClaims, ConfigError> {
    match raw {
        None | Some(RawMetadata::Every(false)) => Ok(MetadataClaims::None),
        Some(RawMetadata::Every(true)) => Ok(MetadataClaims::All),
        Some(RawMetadata::Listed(names)) if names.is_empty() => Ok(MetadataClaims::None),
        Some(RawMetadata::Listed(names)) => {
            if let Some(bad) = names
                .iter()
                .find(|n| n.is_empty() || n.chars().any(char::is_control))
            {
                return Err(invalid(
                    "response.dynamic_metadata",
                    format!("{bad:?} is not a claim name"),
                ));
            }
            let mut names = names;
            names.sort();
            names.dedup();
            Ok(MetadataClaims::Only(names))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MetadataClaims, ConfigError> {
        #[derive(Deserialize)]
        struct Section {
            dynamic_metadata: Option<RawMetadata>,
        }
        let section: Section = toml::from_str(text).expect("toml");
        validate_metadata(section.dynamic_metadata)
    }

    #[test]
    fn off_by_default_a_list_selects_claims_and_true_keeps_every_claim() {
        assert_eq!(parse("").expect("valid"), MetadataClaims::None);
        assert_eq!(
            parse("dynamic_metadata = false").expect("valid"),
            MetadataClaims::None
        );
        assert_eq!(
            parse("dynamic_metadata = true").expect("valid"),
            MetadataClaims::All
        );
        assert_eq!(
            parse(r#"dynamic_metadata = ["sub", "scope", "sub"]"#).expect("valid"),
            MetadataClaims::Only(vec!["scope".to_owned(), "sub".to_owned()])
        );
        assert!(parse(r#"dynamic_metadata = ["sub", ""]"#).is_err());
    }
}
