//! Admin errors, and the one table that maps them to gRPC status codes. Callers get a short
//! message; details of internal failures go to the log only.

use crate::revocation::{InvalidRevocation, StoreError};
use crate::token::TokenError;
use tonic::Status;

/// Why an admin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A request field is missing or wrong.
    #[error("{field}: {message}")]
    InvalidArgument {
        /// The field, e.g. `key.issuer`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The named revocation does not exist.
    #[error("no such revocation: {0}")]
    NotFound(String),
    /// The token given to revoke does not verify.
    #[error("token: {0}")]
    Token(#[from] TokenError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AdminError {
    /// An invalid-argument error naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }

    /// An invalid-argument error for a bad revocation field, prefixed with `prefix`
    /// (e.g. `key.`) unless it is the top-level `reason`.
    pub fn from_invalid_revocation(prefix: &str, error: &InvalidRevocation) -> Self {
        let field = match error.field() {
            "reason" => "reason".to_owned(),
            field => format!("{prefix}{field}"),
        };
        Self::InvalidArgument {
            field,
            message: error.problem(),
        }
    }
}

impl From<AdminError> for Status {
    fn from(error: AdminError) -> Self {
        match &error {
            AdminError::InvalidArgument { .. } => Status::invalid_argument(error.to_string()),
            AdminError::NotFound(_) => Status::not_found(error.to_string()),
            // A key that cannot be found may be one the issuer just rotated in: retryable,
            // never a final refusal, or a revocation or logout would be lost.
            AdminError::Token(TokenError::KeysUnavailable | TokenError::UnknownKey) => {
                Status::unavailable(
                    "token: no key of the issuer is at hand for it yet; retry later",
                )
            }
            AdminError::Token(token) => {
                Status::invalid_argument(format!("token: rejected ({})", token.reason()))
            }
            AdminError::Store(StoreError::Unavailable(detail))
                if detail == crate::revocation::NOT_REPLICATED =>
            {
                tracing::warn!("admin request failed: not replicated in time");
                Status::unavailable(crate::revocation::NOT_REPLICATED)
            }
            AdminError::Store(StoreError::Unavailable(detail)) => {
                tracing::warn!(%detail, "admin request failed: store unavailable");
                Status::unavailable(
                    "the revocation store is unavailable; the change may not have been made: retry",
                )
            }
            AdminError::Store(StoreError::Internal(detail)) => {
                tracing::error!(%detail, "admin request failed: store error");
                Status::internal("internal store error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn a_token_whose_key_cannot_be_found_is_retryable_not_invalid() {
        for error in [TokenError::KeysUnavailable, TokenError::UnknownKey] {
            assert_eq!(
                Status::from(AdminError::Token(error)).code(),
                Code::Unavailable
            );
        }
        assert_eq!(
            Status::from(AdminError::Token(TokenError::BadSignature)).code(),
            Code::InvalidArgument
        );
    }
}
