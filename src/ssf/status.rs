//! What a replica knows about one stream: the status the transmitter reported (through its
//! status endpoint or a `stream-updated` event), the last SET accepted, and the last
//! verification (requested, received, outcome); and whether the stream is healthy: enabled,
//! and its last verification succeeded.

/// How the last completed verification ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerificationOutcome {
    /// No verification completed yet.
    #[default]
    None,
    /// The verification event with the requested `state` arrived in time (or the
    /// transmitter sent one on its own).
    Succeeded,
    /// The requested verification event did not arrive within `verification_timeout`.
    Timeout,
    /// The verification request itself failed (unreachable, refused, no endpoint).
    RequestFailed,
}

impl VerificationOutcome {
    /// Its name in status, logs and the `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Succeeded => "succeeded",
            Self::Timeout => "timeout",
            Self::RequestFailed => "request_failed",
        }
    }
}

/// Where the recorded status came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusSource {
    /// The transmitter's status endpoint (`GET status_endpoint?stream_id=`).
    StatusEndpoint,
    /// A `stream-updated` event.
    StreamUpdated,
}

impl StatusSource {
    /// Its name in status output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StatusEndpoint => "status_endpoint",
            Self::StreamUpdated => "stream_updated",
        }
    }
}

/// The verification record of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerificationStatus {
    /// When this replica last requested a verification event (Unix seconds).
    pub requested_at: Option<u64>,
    /// When the last verification event was accepted.
    pub received_at: Option<u64>,
    /// How the last completed verification ended.
    pub outcome: VerificationOutcome,
    /// Whether a requested verification is still awaited.
    pub pending: bool,
    /// Why the last verification failed (empty when it did not).
    pub error: Option<String>,
    /// When the last verification succeeded.
    pub last_success_at: Option<u64>,
}

/// A stream's status as this replica knows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamStatus {
    /// `enabled`, `paused` or `disabled` as the transmitter last said (`unknown` until then).
    pub status: String,
    /// The reason the transmitter gave with it, if any.
    pub status_reason: Option<String>,
    /// Where the status came from.
    pub status_source: Option<StatusSource>,
    /// When it was recorded (Unix seconds).
    pub status_at: Option<u64>,
    /// When the last SET was accepted (Unix seconds).
    pub last_set_at: Option<u64>,
    /// The `jti` of the last SET accepted.
    pub last_set_jti: Option<String>,
    /// When the last verification event was accepted.
    pub last_verification_at: Option<u64>,
    /// SETs accepted since start.
    pub accepted: u64,
    /// The stream's id at the transmitter, once stream management has configured it.
    pub stream_id: Option<String>,
    /// The last verification.
    pub verification: VerificationStatus,
}

impl StreamStatus {
    /// Whether the stream is healthy: the transmitter says it is enabled and its last
    /// verification succeeded.
    pub fn healthy(&self) -> bool {
        self.status == "enabled" && self.verification.outcome == VerificationOutcome::Succeeded
    }
}

/// The gRPC health service name of stream `name`: `jwtrevoker.ssf.<name>`.
pub fn health_service(name: &str) -> String {
    format!("jwtrevoker.ssf.{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_needs_enabled_and_a_successful_last_verification() {
        let mut status = StreamStatus {
            status: "enabled".to_owned(),
            ..StreamStatus::default()
        };
        assert!(!status.healthy(), "never verified");
        status.verification.outcome = VerificationOutcome::Succeeded;
        assert!(status.healthy());
        status.verification.pending = true;
        assert!(status.healthy(), "a round under way keeps the last outcome");
        status.status = "paused".to_owned();
        assert!(!status.healthy());
        status.status = "enabled".to_owned();
        status.verification.outcome = VerificationOutcome::Timeout;
        assert!(!status.healthy());
        assert_eq!(health_service("okta"), "jwtrevoker.ssf.okta");
    }
}
