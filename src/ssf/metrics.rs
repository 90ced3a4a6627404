//! Shared Signals metrics: `jwt_revoker_ssf_sets_total{stream, event, outcome}`. Stream
//! names come from the configuration, events and outcomes from fixed lists, so every label
//! is bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SetLabels {
    stream: String,
    event: &'static str,
    outcome: &'static str,
}

/// Counts received SETs.
#[derive(Clone, Debug, Default)]
pub struct SsfMetrics {
    sets: Family<SetLabels, Counter>,
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
        metrics
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
