//! Verified-token cache metrics, read at each scrape: `jwt_revoker_token_cache_bytes` (the
//! bytes its entries are counted for, bounded by `cache.max_bytes`) and
//! `jwt_revoker_token_cache_entries`.

use crate::authz::Decider;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Reports the size of the decider's verified-token cache on every scrape.
#[derive(Debug)]
pub struct CacheCollector {
    decider: Arc<Decider>,
}

impl CacheCollector {
    /// Registers a collector for `decider`'s cache into `registry`.
    pub fn register(decider: Arc<Decider>, registry: &mut Registry) {
        registry.register_collector(Box::new(Self { decider }));
    }
}

impl Collector for CacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let cache = self.decider.cache();
        let bytes = ConstGauge::new(i64::try_from(cache.accounted_bytes()).unwrap_or(i64::MAX));
        let metric = encoder.encode_descriptor(
            "jwt_revoker_token_cache_bytes",
            "Bytes the verified-token cache's entries are counted for (at most cache.max_bytes)",
            None,
            bytes.metric_type(),
        )?;
        bytes.encode(metric)?;
        let entries = ConstGauge::new(i64::try_from(cache.len()).unwrap_or(i64::MAX));
        let metric = encoder.encode_descriptor(
            "jwt_revoker_token_cache_entries",
            "Tokens in the verified-token cache (at most cache.max_entries)",
            None,
            entries.metric_type(),
        )?;
        entries.encode(metric)
    }
}
