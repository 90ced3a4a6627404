//! Revocations and changes to and from the feed's wire form. The kind travels by name
//! ([`RevocationKind::as_str`]), so a kind added to the model flows through; a name this
//! build does not know is an error, never skipped (skipping would fail open).

use super::pb;
use crate::revocation::{Change, InvalidRevocation, Revocation, RevocationKey, RevocationKind};

/// Why a message from the feed could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A revocation kind this build does not know.
    #[error("unknown revocation kind {0:?}")]
    UnknownKind(String),
    /// An identifier or issuer the model refuses.
    #[error("invalid revocation: {0}")]
    Invalid(#[from] InvalidRevocation),
    /// A change with neither a put nor a delete.
    #[error("empty change")]
    EmptyChange,
}

/// A revocation as sent (without its reason, which enforcers do not need).
pub fn revocation_to_wire(revocation: &Revocation) -> pb::Revocation {
    pb::Revocation {
        issuer: revocation.key.issuer.clone(),
        kind: revocation.key.kind.as_str().to_owned(),
        id: revocation.key.id.clone(),
        revoked_at: revocation.revoked_at,
        expires_at: revocation.expires_at,
    }
}

/// A change as sent.
pub fn change_to_wire(change: &Change) -> pb::Change {
    let change = match change {
        Change::Put(revocation) => pb::change::Change::Put(revocation_to_wire(revocation)),
        Change::Delete(key) => pb::change::Change::Delete(pb::Key {
            issuer: key.issuer.clone(),
            kind: key.kind.as_str().to_owned(),
            id: key.id.clone(),
        }),
    };
    pb::Change {
        change: Some(change),
    }
}

fn key_from_wire(issuer: String, kind: &str, id: String) -> Result<RevocationKey, WireError> {
    let kind =
        RevocationKind::parse(kind).ok_or_else(|| WireError::UnknownKind(kind.to_owned()))?;
    Ok(RevocationKey::new(issuer, kind, id)?)
}

/// A received revocation.
pub fn revocation_from_wire(wire: pb::Revocation) -> Result<Revocation, WireError> {
    let key = key_from_wire(wire.issuer, &wire.kind, wire.id)?;
    Ok(Revocation::new(key, wire.revoked_at, wire.expires_at, "")?)
}

/// A received change.
pub fn change_from_wire(wire: pb::Change) -> Result<Change, WireError> {
    match wire.change.ok_or(WireError::EmptyChange)? {
        pb::change::Change::Put(revocation) => Ok(Change::Put(revocation_from_wire(revocation)?)),
        pb::change::Change::Delete(key) => Ok(Change::Delete(key_from_wire(
            key.issuer, &key.kind, key.id,
        )?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_without_its_reason() {
        for kind in RevocationKind::ALL {
            let id = match kind {
                RevocationKind::Claim => "email=x:1@example.com",
                _ => "x:1",
            };
            let key = RevocationKey::new("https://idp", kind, id).expect("key");
            let revocation = Revocation::new(key.clone(), 10, 20, "why").expect("revocation");
            let back =
                change_from_wire(change_to_wire(&Change::Put(revocation.clone()))).expect("put");
            let expected = Revocation::new(key.clone(), 10, 20, "").expect("revocation");
            assert_eq!(back, Change::Put(expected));
            let back = change_from_wire(change_to_wire(&Change::Delete(key.clone())));
            assert_eq!(back.expect("delete"), Change::Delete(key));
        }
    }

    #[test]
    fn unknown_kinds_empty_changes_and_bad_ids_are_errors() {
        let unknown = pb::Revocation {
            issuer: "iss".to_owned(),
            kind: "tenant".to_owned(),
            id: "x".to_owned(),
            revoked_at: 1,
            expires_at: 2,
        };
        assert!(matches!(
            revocation_from_wire(unknown),
            Err(WireError::UnknownKind(kind)) if kind == "tenant"
        ));
        assert!(matches!(
            change_from_wire(pb::Change { change: None }),
            Err(WireError::EmptyChange)
        ));
        let empty_id = pb::Revocation {
            issuer: "iss".to_owned(),
            kind: "token".to_owned(),
            id: String::new(),
            revoked_at: 1,
            expires_at: 2,
        };
        assert!(matches!(
            revocation_from_wire(empty_id),
            Err(WireError::Invalid(_))
        ));
    }
}
