//! `revocable_claims` in an `[[issuers]]` entry: the claims of that issuer's access tokens by
//! which revocations of kind `claim` revoke (README, *Revocations*).

use super::{ConfigError, invalid};
use crate::revocation::model::{MAX_CLAIM_NAME_LEN, RESERVED_CLAIMS, valid_claim_name};

/// The most claims one issuer may make revocable: each costs a lookup per Check.
pub const MAX_REVOCABLE_CLAIMS: usize = 8;

/// Checks the claim names: usable ([`valid_claim_name`]), not `sub`, `sid` or `client_id`
/// (revoked by their own kinds), each once, at most [`MAX_REVOCABLE_CLAIMS`].
pub(super) fn validate_revocable_claims(
    key: &str,
    names: Vec<String>,
) -> Result<Vec<String>, ConfigError> {
    if names.len() > MAX_REVOCABLE_CLAIMS {
        return Err(invalid(
            key,
            format!("at most {MAX_REVOCABLE_CLAIMS} claims (each costs a lookup per request)"),
        ));
    }
    for (index, name) in names.iter().enumerate() {
        if !valid_claim_name(name) {
            return Err(invalid(
                key,
                format!(
                    "{name:?} is not a usable claim name: 1 to {MAX_CLAIM_NAME_LEN} ASCII \
                     letters, digits, _ or - (no = or .), not one of {}",
                    RESERVED_CLAIMS.join(", ")
                ),
            ));
        }
        if matches!(name.as_str(), "sub" | "sid" | "client_id" | "azp") {
            return Err(invalid(
                key,
                format!("{name:?} is revoked by kind subject, session or client, not claim"),
            ));
        }
        if names[..index].contains(name) {
            return Err(invalid(key, format!("{name:?} is listed twice")));
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    fn parse(claims: &str) -> Result<Config, String> {
        let text = format!(
            "[[issuers]]\nissuer = \"https://idp.example.com\"\naudiences = [\"api\"]\n\
             jwks = '{{\"keys\": []}}'\nalgorithms = [\"RS256\"]\nrevocable_claims = {claims}\n"
        );
        crate::config::parse_for_test(&text)
    }

    #[test]
    fn revocable_claims_are_read_per_issuer() {
        let config = parse(r#"["email", "phone_number"]"#).expect("valid");
        assert_eq!(
            config.issuers[0].revocable_claims,
            ["email", "phone_number"]
        );
        assert!(
            parse("[]").expect("none").issuers[0]
                .revocable_claims
                .is_empty()
        );
    }

    #[test]
    fn unusable_claim_names_are_refused_naming_the_key() {
        for bad in [
            r#"["e=mail"]"#,
            r#"["e.mail"]"#,
            r#"[""]"#,
            r#"["exp"]"#,
            r#"["iss"]"#,
            r#"["sub"]"#,
            r#"["email", "email"]"#,
            r#"["a\nb"]"#,
            r#"["a","b","c","d","e","f","g","h","i"]"#,
        ] {
            let error = parse(bad).expect_err(bad);
            assert!(
                error.contains("issuers[0].revocable_claims"),
                "{bad}: {error}"
            );
        }
        let long = format!("[{:?}]", "x".repeat(65));
        assert!(parse(&long).is_err());
    }
}
