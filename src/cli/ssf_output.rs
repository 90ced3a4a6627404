//! How `status` prints a Shared Signals stream: a block of lines, or a JSON object.

use super::output::time;
use crate::admin::pb::SsfStreamStatus;
use serde_json::{Value, json};

/// The stream as lines: health, delivery, status, last SET, last verification.
pub fn stream_lines(stream: &SsfStreamStatus) -> String {
    let health = if stream.healthy {
        "SERVING"
    } else {
        "NOT_SERVING"
    };
    let mut status = stream.status.clone();
    if !stream.status_source.is_empty() {
        status.push_str(&format!(
            " (from {} at {})",
            stream.status_source,
            time(stream.status_updated_at.as_ref())
        ));
    }
    if !stream.status_reason.is_empty() {
        status.push_str(&format!(" reason {:?}", stream.status_reason));
    }
    let last_set = if stream.last_set_jti.is_empty() {
        "none".to_owned()
    } else {
        format!(
            "{} jti {:?} ({} accepted)",
            time(stream.last_set_at.as_ref()),
            stream.last_set_jti,
            stream.sets_accepted
        )
    };
    let mut verification = format!(
        "{}  requested {}  received {}",
        stream.verification_outcome,
        time(stream.verification_requested_at.as_ref()),
        time(stream.verification_received_at.as_ref()),
    );
    if stream.verification_pending {
        verification.push_str("  (a verification is pending)");
    }
    if !stream.verification_error.is_empty() {
        verification.push_str(&format!("  error {:?}", stream.verification_error));
    }
    let stream_id = if stream.stream_id.is_empty() {
        "-"
    } else {
        &stream.stream_id
    };
    format!(
        "ssf stream   {}\n  health        {} {}\n  delivery      {} {}\n  stream id     {}\n  \
         status        {}\n  last SET      {}\n  verification  {}",
        stream.name,
        stream.health_service,
        health,
        stream.delivery,
        stream.endpoint,
        stream_id,
        status,
        last_set,
        verification,
    )
}

/// The stream as a JSON object (times in RFC 3339, `null` when absent).
pub fn stream_json(stream: &SsfStreamStatus) -> Value {
    let at = |ts: Option<&prost_types::Timestamp>| match ts {
        Some(_) => json!(time(ts)),
        None => Value::Null,
    };
    json!({
        "name": stream.name,
        "delivery": stream.delivery,
        "endpoint": stream.endpoint,
        "stream_id": stream.stream_id,
        "status": stream.status,
        "status_reason": stream.status_reason,
        "status_source": stream.status_source,
        "status_updated_at": at(stream.status_updated_at.as_ref()),
        "last_set_at": at(stream.last_set_at.as_ref()),
        "last_set_jti": stream.last_set_jti,
        "sets_accepted": stream.sets_accepted,
        "verification": {
            "outcome": stream.verification_outcome,
            "requested_at": at(stream.verification_requested_at.as_ref()),
            "received_at": at(stream.verification_received_at.as_ref()),
            "pending": stream.verification_pending,
            "error": stream.verification_error,
        },
        "healthy": stream.healthy,
        "health_service": stream.health_service,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> SsfStreamStatus {
        SsfStreamStatus {
            name: "okta".to_owned(),
            delivery: "push".to_owned(),
            endpoint: "https://revoker.example.com/ssf/push/okta".to_owned(),
            stream_id: "stream-1".to_owned(),
            status: "paused".to_owned(),
            status_reason: "maintenance".to_owned(),
            status_source: "status_endpoint".to_owned(),
            status_updated_at: Some(prost_types::Timestamp {
                seconds: 1_800_000_000,
                nanos: 0,
            }),
            last_set_at: Some(prost_types::Timestamp {
                seconds: 1_800_000_001,
                nanos: 0,
            }),
            last_set_jti: "jti-1".to_owned(),
            sets_accepted: 3,
            verification_requested_at: Some(prost_types::Timestamp {
                seconds: 1_800_000_002,
                nanos: 0,
            }),
            verification_received_at: None,
            verification_outcome: "timeout".to_owned(),
            verification_error: "no verification event within 1s".to_owned(),
            verification_pending: false,
            healthy: false,
            health_service: "jwtrevoker.ssf.okta".to_owned(),
        }
    }

    #[test]
    fn a_stream_prints_its_status_last_set_and_verification() {
        let text = stream_lines(&stream());
        assert!(text.starts_with("ssf stream   okta\n"), "{text}");
        assert!(
            text.contains("health        jwtrevoker.ssf.okta NOT_SERVING"),
            "{text}"
        );
        assert!(text.contains("delivery      push https://revoker.example.com/ssf/push/okta"));
        assert!(text.contains(
            "status        paused (from status_endpoint at 2027-01-15T08:00:00Z) reason \"maintenance\""
        ), "{text}");
        assert!(text.contains("last SET      2027-01-15T08:00:01Z jti \"jti-1\" (3 accepted)"));
        assert!(text.contains(
            "verification  timeout  requested 2027-01-15T08:00:02Z  received -  error \"no verification event within 1s\""
        ), "{text}");
        let value = stream_json(&stream());
        assert_eq!(value["verification"]["outcome"], "timeout");
        assert_eq!(value["verification"]["received_at"], Value::Null);
        assert_eq!(value["status"], "paused");
        assert_eq!(value["last_set_jti"], "jti-1");
    }
}
