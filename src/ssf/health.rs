//! gRPC health per stream: the service `jwtrevoker.ssf.<stream>` is SERVING while the
//! stream is enabled and its last verification succeeded, NOT_SERVING otherwise (from the
//! start). The server's own health (`""` and the Check service) never depends on a stream:
//! a paused or unverified stream does not take a replica out of rotation.

use super::receiver::Receiver;
use super::status::health_service;
use std::sync::Arc;
use tokio::sync::watch;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// Registers every stream's health service (NOT_SERVING until healthy) and keeps it up to
/// date until `stop` turns true.
pub async fn spawn(
    receiver: &Arc<Receiver>,
    reporter: &HealthReporter,
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for stream in receiver.streams() {
        let service = health_service(stream.name());
        reporter
            .set_service_status(&service, ServingStatus::NotServing)
            .await;
        let stream = Arc::clone(stream);
        let reporter = reporter.clone();
        let mut stop = stop.clone();
        let mut changed = stream.subscribe();
        tasks.push(tokio::spawn(async move {
            loop {
                changed.mark_unchanged();
                let status = if stream.status().healthy() {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                reporter.set_service_status(&service, status).await;
                tokio::select! {
                    _ = stop.wait_for(|stopped| *stopped) => return,
                    changed = changed.changed() => if changed.is_err() { return },
                }
            }
        }));
    }
    tasks
}
