//! Replica metrics, read from [`Replica::status`] at each scrape:
//! `jwt_revoker_revocations{kind}`, `jwt_revoker_replica_staleness_seconds` (absent until
//! the first sync) and `jwt_revoker_replica_health{state}` (1 for the current state).

use crate::revocation::{Replica, ReplicaHealth, RevocationKind};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// Reports the replica's state on every scrape.
#[derive(Debug)]
pub struct ReplicaCollector {
    replica: Arc<Replica>,
}

impl ReplicaCollector {
    /// Registers a collector for `replica` into `registry`.
    pub fn register(replica: Arc<Replica>, registry: &mut Registry) {
        registry.register_collector(Box::new(Self { replica }));
    }
}

impl Collector for ReplicaCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = self.replica.status();

        let revocations = Family::<KindLabels, Gauge>::default();
        for (kind, count) in RevocationKind::ALL.iter().zip(status.by_kind) {
            revocations
                .get_or_create(&KindLabels {
                    kind: kind.as_str(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        let metric = encoder.encode_descriptor(
            "jwt_revoker_revocations",
            "Live revocations in this replica's set, by kind",
            None,
            revocations.metric_type(),
        )?;
        revocations.encode(metric)?;

        if let Some(staleness) = status.staleness {
            let gauge = ConstGauge::new(staleness.as_secs_f64());
            let metric = encoder.encode_descriptor(
                "jwt_revoker_replica_staleness_seconds",
                "Time since this replica last heard from the store",
                None,
                gauge.metric_type(),
            )?;
            gauge.encode(metric)?;
        }

        let current = match status.health {
            ReplicaHealth::Starting => "starting",
            ReplicaHealth::Current => "current",
            ReplicaHealth::Stale { serving: true } => "stale_serving",
            ReplicaHealth::Stale { serving: false } => "stale_denying",
        };
        let health = Family::<StateLabels, Gauge>::default();
        for state in ["starting", "current", "stale_serving", "stale_denying"] {
            health
                .get_or_create(&StateLabels { state })
                .set(i64::from(state == current));
        }
        let metric = encoder.encode_descriptor(
            "jwt_revoker_replica_health",
            "1 for the replica's current state (starting, current, stale_serving, \
             stale_denying), 0 for the others",
            None,
            health.metric_type(),
        )?;
        health.encode(metric)
    }
}
