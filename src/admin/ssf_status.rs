//! A Shared Signals stream's status as `jwtrevoker.admin.v1.SsfStreamStatus`.

use super::pb::SsfStreamStatus;
use crate::ssf::Stream;
use crate::ssf::status::health_service;

fn timestamp(seconds: Option<u64>) -> Option<prost_types::Timestamp> {
    seconds.map(|seconds| prost_types::Timestamp {
        seconds: i64::try_from(seconds).unwrap_or(i64::MAX),
        nanos: 0,
    })
}

/// The status of `stream` for `GetStatus`.
pub fn stream_to_pb(stream: &Stream) -> SsfStreamStatus {
    let status = stream.status();
    let (delivery, endpoint) = stream.delivery();
    SsfStreamStatus {
        name: stream.name().to_owned(),
        delivery: delivery.to_owned(),
        endpoint: endpoint.to_owned(),
        stream_id: status.stream_id.clone().unwrap_or_default(),
        healthy: status.healthy(),
        status: status.status,
        status_reason: status.status_reason.unwrap_or_default(),
        status_source: status
            .status_source
            .map(|source| source.as_str().to_owned())
            .unwrap_or_default(),
        status_updated_at: timestamp(status.status_at),
        last_set_at: timestamp(status.last_set_at),
        last_set_jti: status.last_set_jti.unwrap_or_default(),
        sets_accepted: status.accepted,
        verification_requested_at: timestamp(status.verification.requested_at),
        verification_received_at: timestamp(status.verification.received_at),
        verification_outcome: status.verification.outcome.as_str().to_owned(),
        verification_error: status.verification.error.unwrap_or_default(),
        verification_pending: status.verification.pending,
        health_service: health_service(stream.name()),
    }
}
