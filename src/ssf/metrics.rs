//! Shared Signals metrics: `jwt_revoker_ssf_sets_total{stream, event, outcome}`, and read
//! from the streams at each scrape `jwt_revoker_ssf_stream_status{stream, status}` (1 for
//! the status the transmitter last announced), `jwt_revoker_ssf_stream_last_set_timestamp_seconds`
//! and `jwt_revoker_ssf_stream_last_verification_timestamp_seconds`,
//! `jwt_revoker_ssf_stream_last_verification_success_timestamp_seconds` and
//! `jwt_revoker_ssf_stream_healthy` (1 when the stream's gRPC health is SERVING),
//! `jwt_revoker_ssf_stream_last_verification_outcome{stream, outcome}`; and
//! `jwt_revoker_ssf_verification_total{stream, outcome}`, the verifications this replica
//! requested. Stream names come from
//! the configuration, events, outcomes and statuses from fixed lists, so every label is
//! bounded.

use super::receiver::Receiver;
use super::status::VerificationOutcome;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// The statuses a stream can be in (`unknown` until the transmitter says).
const STATUSES: [&str; 4] = ["unknown", "enabled", "paused", "disabled"];

/// How a stream's last verification can have ended.
const OUTCOMES: [VerificationOutcome; 4] = [
    VerificationOutcome::None,
    VerificationOutcome::Succeeded,
    VerificationOutcome::Timeout,
    VerificationOutcome::RequestFailed,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    stream: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    stream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    stream: String,
    status: &'static str,
}

/// Reports every stream's status on each scrape.
#[derive(Debug)]
pub struct StreamCollector {
    receiver: Arc<Receiver>,
}

impl StreamCollector {
    /// Registers a collector for `receiver`'s streams into `registry`.
    pub fn register(receiver: Arc<Receiver>, registry: &mut Registry) {
        registry.register_collector(Box::new(Self { receiver }));
    }
}

impl Collector for StreamCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = Family::<StatusLabels, Gauge>::default();
        let last_set = Family::<StreamLabels, Gauge>::default();
        let last_verification = Family::<StreamLabels, Gauge>::default();
        let last_success = Family::<StreamLabels, Gauge>::default();
        let healthy = Family::<StreamLabels, Gauge>::default();
        let last_outcome = Family::<OutcomeLabels, Gauge>::default();
        for stream in self.receiver.streams() {
            let current = stream.status();
            for known in STATUSES {
                status
                    .get_or_create(&StatusLabels {
                        stream: stream.name().to_owned(),
                        status: known,
                    })
                    .set(i64::from(current.status == known));
            }
            let labels = StreamLabels {
                stream: stream.name().to_owned(),
            };
            if let Some(at) = current.last_set_at {
                last_set
                    .get_or_create(&labels)
                    .set(i64::try_from(at).unwrap_or(i64::MAX));
            }
            if let Some(at) = current.last_verification_at {
                last_verification
                    .get_or_create(&labels)
                    .set(i64::try_from(at).unwrap_or(i64::MAX));
            }
            if let Some(at) = current.verification.last_success_at {
                last_success
                    .get_or_create(&labels)
                    .set(i64::try_from(at).unwrap_or(i64::MAX));
            }
            healthy
                .get_or_create(&labels)
                .set(i64::from(current.healthy()));
            for outcome in OUTCOMES {
                last_outcome
                    .get_or_create(&OutcomeLabels {
                        stream: stream.name().to_owned(),
                        outcome: outcome.as_str(),
                    })
                    .set(i64::from(current.verification.outcome == outcome));
            }
        }
        let metric = encoder.encode_descriptor(
            "jwt_revoker_ssf_stream_status",
            "1 for the status the transmitter last announced for the stream (unknown, \
             enabled, paused, disabled), 0 for the others",
            None,
            status.metric_type(),
        )?;
        status.encode(metric)?;
        let metric = encoder.encode_descriptor(
            "jwt_revoker_ssf_stream_last_set_timestamp_seconds",
            "When this replica last accepted a SET of the stream (Unix seconds)",
            None,
            last_set.metric_type(),
        )?;
        last_set.encode(metric)?;
        let metric = encoder.encode_descriptor(
            "jwt_revoker_ssf_stream_last_verification_timestamp_seconds",
            "When this replica last accepted a verification event of the stream (Unix seconds)",
            None,
            last_verification.metric_type(),
        )?;
        last_verification.encode(metric)?;
        let metric = encoder.encode_descriptor(
            "jwt_revoker_ssf_stream_last_verification_success_timestamp_seconds",
            "When a verification of the stream last succeeded at this replica (Unix seconds)",
            None,
            last_success.metric_type(),
        )?;
        last_success.encode(metric)?;
        let metric = encoder.encode_descriptor(
            "jwt_revoker_ssf_stream_healthy",
            "1 when the stream is enabled and its last verification succeeded (its gRPC \
             health service jwtrevoker.ssf.<stream> is SERVING), else 0",
            None,
            healthy.metric_type(),
        )?;
        healthy.encode(metric)?;
        let metric = encoder.encode_descriptor(
            "jwt_revoker_ssf_stream_last_verification_outcome",
            "1 for how the stream's last verification at this replica ended (none, \
             succeeded, timeout, request_failed), 0 for the others",
            None,
            last_outcome.metric_type(),
        )?;
        last_outcome.encode(metric)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SetLabels {
    stream: String,
    event: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerificationLabels {
    stream: String,
    outcome: &'static str,
}

/// Counts received SETs and requested verifications.
#[derive(Clone, Debug, Default)]
pub struct SsfMetrics {
    sets: Family<SetLabels, Counter>,
    verifications: Family<VerificationLabels, Counter>,
}

impl SsfMetrics {
    /// Creates the counters and registers them into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "jwt_revoker_ssf_sets",
            "Security Event Tokens received, by stream, event type and outcome",
            metrics.sets.clone(),
        );
        registry.register(
            "jwt_revoker_ssf_verification",
            "Stream verifications this replica requested, by stream and outcome (succeeded, \
             timeout, request_failed, rate_limited)",
            metrics.verifications.clone(),
        );
        metrics
    }

    /// Counts one verification of `stream` that ended with `outcome`.
    pub fn count_verification(&self, stream: &str, outcome: &'static str) {
        self.verifications
            .get_or_create(&VerificationLabels {
                stream: stream.to_owned(),
                outcome,
            })
            .inc();
    }

    /// Counts one SET of `stream` (a configured name).
    pub fn count(&self, stream: &str, event: &'static str, outcome: &'static str) {
        self.sets
            .get_or_create(&SetLabels {
                stream: stream.to_owned(),
                event,
                outcome,
            })
            .inc();
    }

    /// The count so far (for tests).
    pub fn get(&self, stream: &str, event: &'static str, outcome: &'static str) -> u64 {
        self.sets
            .get_or_create(&SetLabels {
                stream: stream.to_owned(),
                event,
                outcome,
            })
            .get()
    }
}
