//! Conversions between the admin API's protobuf messages and the revocation model, naming the
//! field at fault when a message is unusable.

use super::error::AdminError;
use super::pb;
use crate::revocation::{Revocation, RevocationKey, RevocationKind};

/// A protobuf kind as a model kind.
pub fn kind_from_pb(kind: i32, field: &str) -> Result<RevocationKind, AdminError> {
    match pb::RevocationKind::try_from(kind) {
        Ok(pb::RevocationKind::Token) => Ok(RevocationKind::Token),
        Ok(pb::RevocationKind::Session) => Ok(RevocationKind::Session),
        Ok(pb::RevocationKind::Subject) => Ok(RevocationKind::Subject),
        Ok(pb::RevocationKind::Client) => Ok(RevocationKind::Client),
        Ok(pb::RevocationKind::Claim) => Ok(RevocationKind::Claim),
        Ok(pb::RevocationKind::Unspecified) => Err(AdminError::invalid(field, "is required")),
        Err(_) => Err(AdminError::invalid(field, format!("unknown kind {kind}"))),
    }
}

/// A model kind as a protobuf kind.
pub fn kind_to_pb(kind: RevocationKind) -> pb::RevocationKind {
    match kind {
        RevocationKind::Token => pb::RevocationKind::Token,
        RevocationKind::Session => pb::RevocationKind::Session,
        RevocationKind::Subject => pb::RevocationKind::Subject,
        RevocationKind::Client => pb::RevocationKind::Client,
        RevocationKind::Claim => pb::RevocationKind::Claim,
    }
}

/// A protobuf key as a model key (shape only; the caller checks the issuer is configured).
pub fn key_from_pb(
    key: Option<pb::RevocationKey>,
    field: &str,
) -> Result<RevocationKey, AdminError> {
    let key = key.ok_or_else(|| AdminError::invalid(field, "is required"))?;
    let kind = kind_from_pb(key.kind, &format!("{field}.kind"))?;
    RevocationKey::new(key.issuer, kind, key.id)
        .map_err(|e| AdminError::from_invalid_revocation(&format!("{field}."), &e))
}

/// A model key as a protobuf key.
pub fn key_to_pb(key: &RevocationKey) -> pb::RevocationKey {
    pb::RevocationKey {
        issuer: key.issuer.clone(),
        kind: kind_to_pb(key.kind).into(),
        id: key.id.clone(),
    }
}

/// Unix seconds as a protobuf timestamp.
pub fn timestamp(seconds: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: i64::try_from(seconds).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

/// A protobuf timestamp as Unix seconds (sub-second part dropped); refuses negative ones.
pub fn seconds_from_pb(ts: &prost_types::Timestamp, field: &str) -> Result<u64, AdminError> {
    u64::try_from(ts.seconds).map_err(|_| AdminError::invalid(field, "must not be before 1970"))
}

/// A model revocation as a protobuf message.
pub fn revocation_to_pb(revocation: &Revocation) -> pb::Revocation {
    pb::Revocation {
        key: Some(key_to_pb(&revocation.key)),
        revoked_at: Some(timestamp(revocation.revoked_at)),
        expires_at: Some(timestamp(revocation.expires_at)),
        reason: revocation.reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(error: AdminError) -> String {
        match error {
            AdminError::InvalidArgument { field, .. } => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn bad_keys_name_the_field() {
        assert_eq!(
            field_of(key_from_pb(None, "key").expect_err("missing")),
            "key"
        );
        let unspecified = pb::RevocationKey {
            issuer: "iss".into(),
            kind: 0,
            id: "a".into(),
        };
        assert_eq!(
            field_of(key_from_pb(Some(unspecified), "key").expect_err("no kind")),
            "key.kind"
        );
        let unknown = pb::RevocationKey {
            issuer: "iss".into(),
            kind: 99,
            id: "a".into(),
        };
        assert_eq!(
            field_of(key_from_pb(Some(unknown), "key").expect_err("kind 99")),
            "key.kind"
        );
        let empty_id = pb::RevocationKey {
            issuer: "iss".into(),
            kind: pb::RevocationKind::Session.into(),
            id: String::new(),
        };
        assert_eq!(
            field_of(key_from_pb(Some(empty_id), "key").expect_err("empty id")),
            "key.id"
        );
    }

    #[test]
    fn keys_round_trip() {
        for kind in RevocationKind::ALL {
            let id = match kind {
                RevocationKind::Claim => "email=x",
                _ => "x",
            };
            let key = RevocationKey::new("https://idp", kind, id).expect("key");
            assert_eq!(
                key_from_pb(Some(key_to_pb(&key)), "key").expect("valid"),
                key
            );
        }
    }
}
