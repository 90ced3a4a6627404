//! How the client commands print admin API answers: one readable line per item, or JSON.

use crate::admin::pb::{self, RevokeOutcome, RevokeResponse, StatusResponse, UnrevokeResponse};
use serde_json::json;
use std::time::{Duration, UNIX_EPOCH};

fn kind_name(kind: i32) -> &'static str {
    match pb::RevocationKind::try_from(kind) {
        Ok(pb::RevocationKind::Token) => "token",
        Ok(pb::RevocationKind::Session) => "session",
        Ok(pb::RevocationKind::Subject) => "subject",
        Ok(pb::RevocationKind::Client) => "client",
        Ok(pb::RevocationKind::Claim) => "claim",
        _ => "unknown",
    }
}

/// A timestamp in RFC 3339 (seconds), `-` when absent.
pub fn time(ts: Option<&prost_types::Timestamp>) -> String {
    match ts.and_then(|ts| u64::try_from(ts.seconds).ok()) {
        Some(seconds) => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(seconds)).to_string()
        }
        None => "-".to_owned(),
    }
}

fn describe_key(key: Option<&pb::RevocationKey>) -> String {
    match key {
        Some(key) => format!(
            "{} {:?} of issuer {:?}",
            kind_name(key.kind),
            key.id,
            key.issuer
        ),
        None => "(no key)".to_owned(),
    }
}

/// One line for a revocation: kind, id, issuer, times, reason.
pub fn revocation_line(revocation: &pb::Revocation) -> String {
    let mut line = format!(
        "{}  revoked {}  expires {}",
        describe_key(revocation.key.as_ref()),
        time(revocation.revoked_at.as_ref()),
        time(revocation.expires_at.as_ref()),
    );
    if !revocation.reason.is_empty() {
        line.push_str(&format!("  reason {:?}", revocation.reason));
    }
    line
}

/// A revocation as one JSON object.
pub fn revocation_json(revocation: &pb::Revocation) -> String {
    let key = revocation.key.clone().unwrap_or_default();
    json!({
        "kind": kind_name(key.kind),
        "issuer": key.issuer,
        "id": key.id,
        "revoked_at": time(revocation.revoked_at.as_ref()),
        "expires_at": time(revocation.expires_at.as_ref()),
        "reason": revocation.reason,
    })
    .to_string()
}

/// What a revoke did, in one line.
pub fn revoke_outcome(response: &RevokeResponse) -> String {
    let detail = response
        .revocation
        .as_ref()
        .map(revocation_line)
        .unwrap_or_default();
    match RevokeOutcome::try_from(response.outcome) {
        Ok(RevokeOutcome::Revoked) => format!("revoked: {detail}"),
        Ok(RevokeOutcome::AlreadyRevoked) => format!("already revoked: {detail}"),
        Ok(RevokeOutcome::Extended) => format!("already revoked, now extended: {detail}"),
        Ok(RevokeOutcome::AlreadyExpired) => {
            "the token has already expired and is refused anyway; nothing stored".to_owned()
        }
        _ => format!("unknown outcome {}", response.outcome),
    }
}

/// What an unrevoke did, in one line.
pub fn unrevoke_outcome(response: &UnrevokeResponse) -> String {
    let key = describe_key(response.key.as_ref());
    if response.removed {
        format!("unrevoked: {key}")
    } else {
        format!("not revoked (nothing to remove): {key}")
    }
}

/// The server status, as lines or JSON.
pub fn status(status: &StatusResponse, as_json: bool) -> String {
    if as_json {
        return json!({
            "store": status.store,
            "store_location": status.store_location,
            "synced": status.synced,
            "staleness_seconds": status.staleness_seconds,
            "revocations": status.revocations,
            "version": status.version,
            "ssf_streams": status.ssf_streams.iter().map(super::ssf_output::stream_json).collect::<Vec<_>>(),
        })
        .to_string();
    }
    let staleness = if status.staleness_seconds < 0.0 {
        "never synced".to_owned()
    } else {
        format!("{:.1}s", status.staleness_seconds)
    };
    let mut text = format!(
        "version      {}\nstore        {} ({})\nsynced       {}\nstaleness    {}\nrevocations  {}",
        status.version,
        status.store,
        status.store_location,
        status.synced,
        staleness,
        status.revocations
    );
    for stream in &status.ssf_streams {
        text.push('\n');
        text.push_str(&super::ssf_output::stream_lines(stream));
    }
    text
}
