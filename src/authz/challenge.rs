//! The RFC 6750 texts of a refusal, shared by Check's `CheckResponse` and the Envoy module's
//! local reply, so that both modes answer a revoked or unverifiable token alike.

/// The description of a refused revoked token.
pub const REVOKED: &str = "the token has been revoked";
/// The description of a refusal while revocations are unavailable (HTTP 503).
pub const UNAVAILABLE: &str = "token revocation state is unavailable; retry later";

/// `WWW-Authenticate` for a request without a token: `Bearer realm="<realm>"`.
pub fn bearer_challenge(realm: &str) -> String {
    format!("Bearer realm=\"{realm}\"")
}

/// `WWW-Authenticate` for a refused token, with `error="invalid_token"`.
pub fn invalid_token_challenge(realm: &str, description: &str) -> String {
    format!(
        "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{description}\""
    )
}

/// The JSON body of a refusal: `{"error": …, "error_description": …}`.
pub fn error_body(error: &str, description: &str) -> String {
    serde_json::json!({ "error": error, "error_description": description }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_follow_rfc_6750() {
        assert_eq!(bearer_challenge("mesh"), "Bearer realm=\"mesh\"");
        assert_eq!(
            invalid_token_challenge("mesh", REVOKED),
            "Bearer realm=\"mesh\", error=\"invalid_token\", \
             error_description=\"the token has been revoked\""
        );
        let body: serde_json::Value =
            serde_json::from_str(&error_body("invalid_token", REVOKED)).expect("json");
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(body["error_description"], REVOKED);
    }
}
