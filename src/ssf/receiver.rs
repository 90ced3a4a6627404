//! The SET pipeline that push and poll share: verify for the stream, skip a SET seen before
//! (its `jti`, remembered in the store), map its event, record the revocations durably (and
//! in this replica at once), then remember the `jti`. Every revocation's reason records its
//! origin: stream, event, SET `jti`, `txn` and `reason_admin`.

use super::error::SetError;
use super::mapping::{self, Decision, Policy};
use super::metrics::SsfMetrics;
use super::secevent::SetClaims;
pub use super::status::StreamStatus;
use super::status::{StatusSource, VerificationOutcome};
use super::verify::StreamVerifier;
use crate::admin::{AdminError, Revoker};
use crate::revocation::model::MAX_REASON_LEN;
use crate::revocation::{RevocationKey, StoreError};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use subtle::ConstantTimeEq;

/// The `remember_once` scope of SET `jti`s.
pub const SET_JTI_SCOPE: &str = "ssf-jti";
/// How long a SET's `jti` is remembered (replays later still change nothing: a revocation
/// is as of the event's time).
pub const REPLAY_WINDOW_SECS: u64 = 7 * 24 * 3600;

/// The `remember_once` scope of the verification `state`s replicas requested (so that a
/// verification event pushed to another replica is recognised there).
pub const VERIFY_STATE_SCOPE: &str = "ssf-verify-state";
/// The `remember_once` scope of the verification `state`s whose event arrived (so that the
/// requesting replica learns it, whichever replica received it).
pub const VERIFIED_SCOPE: &str = "ssf-verified";
/// How long those marks live.
pub const VERIFY_MARK_SECS: u64 = 3600;

/// The store id of a verification `state` of `stream`.
pub fn verify_mark(stream: &str, state: &str) -> String {
    format!("{}:{stream}:{state}", stream.len())
}

#[derive(Debug, Default)]
struct StreamState {
    status: StreamStatus,
    /// The `state` of the verification this receiver asked for, if any.
    pending_verification: Option<String>,
}

/// One configured stream.
#[derive(Debug)]
pub struct Stream {
    name: String,
    verifier: StreamVerifier,
    policy: Policy,
    push_secret: Option<String>,
    delivery: (&'static str, String),
    state: Mutex<StreamState>,
    changed: tokio::sync::watch::Sender<()>,
}

impl Stream {
    /// A stream named `name` (from the configuration), verifying with `verifier`, mapping by
    /// `policy`; pushes must carry `push_secret` (bare or as `Bearer`) when it is set.
    pub fn new(
        name: impl Into<String>,
        verifier: StreamVerifier,
        policy: Policy,
        push_secret: Option<String>,
    ) -> Self {
        Self {
            name: name.into(),
            verifier,
            policy,
            push_secret,
            delivery: ("push", String::new()),
            state: Mutex::new(StreamState {
                status: StreamStatus {
                    status: "unknown".to_owned(),
                    ..StreamStatus::default()
                },
                pending_verification: None,
            }),
            changed: tokio::sync::watch::channel(()).0,
        }
    }

    /// Records how SETs reach the stream: `method` (`push` or `poll`) and the endpoint (the
    /// push URL or path, the poll endpoint).
    #[must_use]
    pub fn with_delivery(mut self, method: &'static str, endpoint: impl Into<String>) -> Self {
        self.delivery = (method, endpoint.into());
        self
    }

    /// How SETs reach the stream: method and endpoint.
    pub fn delivery(&self) -> (&'static str, &str) {
        (self.delivery.0, &self.delivery.1)
    }

    /// Notified whenever the status changes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<()> {
        self.changed.subscribe()
    }

    /// Changes the state, then notifies subscribers.
    fn update<T>(&self, change: impl FnOnce(&mut StreamState) -> T) -> T {
        let result = change(&mut self.state());
        self.changed.send_replace(());
        result
    }

    /// Records the status the transmitter reported, with its reason, at `now`.
    pub fn record_status(
        &self,
        status: String,
        reason: Option<String>,
        source: StatusSource,
        now: u64,
    ) {
        self.update(|state| {
            let status_of = &mut state.status;
            status_of.status = status;
            status_of.status_reason = reason;
            status_of.status_source = Some(source);
            status_of.status_at = Some(now);
        });
    }

    /// Starts a verification: `state` is awaited from now on.
    pub fn begin_verification(&self, state: String, now: u64) {
        self.update(|stream| {
            stream.pending_verification = Some(state);
            stream.status.verification.requested_at = Some(now);
            stream.status.verification.pending = true;
        });
    }

    /// Whether the verification with `state` is still awaited here.
    pub fn awaits_verification(&self, state: &str) -> bool {
        self.state().pending_verification.as_deref() == Some(state)
    }

    /// Ends the verification with `state` (if it is still the awaited one) with `outcome`,
    /// at `now`; `error` says why it failed.
    pub fn end_verification(
        &self,
        state: &str,
        outcome: VerificationOutcome,
        error: Option<String>,
        now: u64,
    ) {
        self.update(|stream| {
            if stream.pending_verification.as_deref() != Some(state) {
                return;
            }
            stream.pending_verification = None;
            let verification = &mut stream.status.verification;
            verification.pending = false;
            verification.outcome = outcome;
            verification.error = error;
            if outcome == VerificationOutcome::Succeeded {
                verification.received_at = Some(now);
                verification.last_success_at = Some(now);
            }
        });
    }

    /// Gives up waiting for `state` without recording an outcome (the transmitter refused
    /// the request as too frequent: the last outcome stands).
    pub fn abandon_verification(&self, state: &str) {
        self.update(|stream| {
            if stream.pending_verification.as_deref() == Some(state) {
                stream.pending_verification = None;
                stream.status.verification.pending = false;
            }
        });
    }

    /// Its configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The transmitter's issuer.
    pub fn issuer(&self) -> &str {
        self.verifier.issuer()
    }

    /// Its status.
    pub fn status(&self) -> StreamStatus {
        self.state().status.clone()
    }

    /// Records the stream's id at the transmitter.
    pub fn set_stream_id(&self, stream_id: String) {
        self.update(|state| state.status.stream_id = Some(stream_id));
    }

    /// Records the `state` of a verification this receiver requested.
    pub fn expect_verification(&self, state: String) {
        self.update(|stream| stream.pending_verification = Some(state));
    }

    fn state(&self) -> std::sync::MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a push's `authorization` header value is acceptable: any when the stream has
    /// no secret; else the secret, bare or after `Bearer `, compared in constant time.
    pub fn push_authorized(&self, header: Option<&[u8]>) -> bool {
        let Some(secret) = &self.push_secret else {
            return true;
        };
        let Some(header) = header.map(<[u8]>::trim_ascii) else {
            return false;
        };
        let token = match header.split_at_checked(7) {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case(b"bearer ") => rest.trim_ascii(),
            _ => header,
        };
        token.ct_eq(secret.as_bytes()).into()
    }
}

/// What receiving a SET did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    /// The revocations were recorded (some may have existed already).
    Revoked(usize),
    /// The SET was received before; nothing to do.
    Duplicate,
    /// Acknowledged and ignored (bounded reason).
    Ignored(&'static str),
    /// A verification event matched.
    Verified,
    /// A stream-updated event was recorded.
    StatusRecorded,
}

impl Receipt {
    /// The bounded metric outcome.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Revoked(_) => "revoked",
            Self::Duplicate => "duplicate",
            Self::Ignored(_) => "ignored",
            Self::Verified => "verified",
            Self::StatusRecorded => "status",
        }
    }
}

/// Why a SET was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The SET is refused; the transmitter should not send it again.
    #[error("{0}")]
    Refused(#[from] SetError),
    /// The store failed; the transmitter should redeliver.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// The streams and what they revoke with.
#[derive(Debug)]
pub struct Receiver {
    streams: BTreeMap<String, Arc<Stream>>,
    revoker: Arc<Revoker>,
    metrics: SsfMetrics,
}

impl Receiver {
    /// A receiver for `streams`, recording revocations through `revoker`.
    pub fn new(
        streams: impl IntoIterator<Item = Stream>,
        revoker: Arc<Revoker>,
        metrics: SsfMetrics,
    ) -> Self {
        Self {
            streams: streams
                .into_iter()
                .map(|stream| (stream.name.clone(), Arc::new(stream)))
                .collect(),
            revoker,
            metrics,
        }
    }

    /// The stream with this name.
    pub fn stream(&self, name: &str) -> Option<&Arc<Stream>> {
        self.streams.get(name)
    }

    /// Every stream, by name.
    pub fn streams(&self) -> impl Iterator<Item = &Arc<Stream>> {
        self.streams.values()
    }

    /// The store revocations and marks are written to.
    pub fn store(&self) -> &Arc<dyn crate::revocation::Store> {
        self.revoker.store()
    }

    /// The metrics.
    pub fn metrics(&self) -> &SsfMetrics {
        &self.metrics
    }

    /// Receives one compact SET for `stream` at `now` (Unix seconds): returns only once its
    /// revocations are durable in the store.
    pub async fn receive(
        &self,
        stream: &Stream,
        set: &[u8],
        now: u64,
    ) -> Result<Receipt, ReceiveError> {
        let result = self.receive_inner(stream, set, now).await;
        let event = match &result {
            Ok((_, claims)) => mapping::event_label(&claims.event_type),
            Err(_) => "unknown",
        };
        let outcome = match &result {
            Ok((receipt, _)) => receipt.outcome(),
            Err(ReceiveError::Refused(error)) if error.is_transient() => "retry",
            Err(ReceiveError::Refused(_)) => "refused",
            Err(ReceiveError::Store(_)) => "store_error",
        };
        self.metrics.count(&stream.name, event, outcome);
        match result {
            Ok((receipt, claims)) => {
                tracing::info!(stream = %stream.name, event, jti = %claims.jti, outcome, "security event received");
                Ok(receipt)
            }
            Err(error) => {
                tracing::warn!(stream = %stream.name, %error, outcome, "security event not accepted");
                Err(error)
            }
        }
    }

    async fn receive_inner(
        &self,
        stream: &Stream,
        set: &[u8],
        now: u64,
    ) -> Result<(Receipt, SetClaims), ReceiveError> {
        let claims = stream.verifier.verify(set).await?;
        let mark = format!("{}:{}{}", claims.iss.len(), claims.iss, claims.jti);
        let store = self.revoker.store();
        if store.is_remembered(SET_JTI_SCOPE, &mark, now).await? {
            return Ok((Receipt::Duplicate, claims));
        }
        let receipt = match mapping::decide(&claims, &stream.policy, now)? {
            Decision::Revoke { planned, as_of } => {
                let reason = origin(&stream.name, &claims);
                for planned in &planned {
                    let key = RevocationKey::new(
                        planned.issuer.clone(),
                        planned.kind,
                        planned.id.clone(),
                    )
                    .map_err(|_| SetError::InvalidEvent("an unusable subject identifier"))?;
                    match self
                        .revoker
                        .revoke_key_as_of(key, as_of, &reason, now)
                        .await
                    {
                        Ok(_) => {}
                        Err(AdminError::Store(error)) => return Err(error.into()),
                        Err(_) => {
                            return Err(SetError::AccessDenied(
                                "not a revocation this stream may make",
                            )
                            .into());
                        }
                    }
                }
                Receipt::Revoked(planned.len())
            }
            Decision::Ignore(reason) => Receipt::Ignored(reason),
            Decision::Verification { state } => {
                self.verification(stream, state.as_deref(), now).await?;
                Receipt::Verified
            }
            Decision::StreamUpdated { status } => {
                let reason = claims
                    .event
                    .get("reason")
                    .and_then(Value::as_str)
                    .map(bounded);
                stream.record_status(status, reason, StatusSource::StreamUpdated, now);
                Receipt::StatusRecorded
            }
        };
        store
            .remember_once(
                SET_JTI_SCOPE,
                &mark,
                claims.iat.max(now).saturating_add(REPLAY_WINDOW_SECS),
                now,
            )
            .await?;
        stream.update(|state| {
            state.status.last_set_at = Some(now);
            state.status.last_set_jti = Some(bounded(&claims.jti));
            state.status.accepted += 1;
        });
        Ok((receipt, claims))
    }

    /// A verification event with `state`: accepted when it is the state this replica
    /// awaits, one another replica requested (recorded in the store), or when none is
    /// awaited here (the transmitter verifies on its own); else `invalid_state`. The arrival
    /// is recorded in the store for the replica that asked.
    async fn verification(
        &self,
        stream: &Stream,
        state: Option<&str>,
        now: u64,
    ) -> Result<(), ReceiveError> {
        let store = self.revoker.store();
        let awaited = stream.state().pending_verification.clone();
        let ours = awaited.is_some() && awaited.as_deref() == state;
        if let (Some(_), false) = (&awaited, ours) {
            let requested_elsewhere = match state {
                Some(state) => {
                    store
                        .is_remembered(VERIFY_STATE_SCOPE, &verify_mark(&stream.name, state), now)
                        .await?
                }
                None => false,
            };
            if !requested_elsewhere {
                return Err(SetError::InvalidState.into());
            }
        }
        if let Some(state) = state {
            store
                .remember_once(
                    VERIFIED_SCOPE,
                    &verify_mark(&stream.name, state),
                    now.saturating_add(VERIFY_MARK_SECS),
                    now,
                )
                .await?;
        }
        stream.update(|guard| {
            guard.status.last_verification_at = Some(now);
            if ours || awaited.is_none() {
                guard.pending_verification = None;
                let verification = &mut guard.status.verification;
                verification.received_at = Some(now);
                verification.pending = false;
                verification.outcome = VerificationOutcome::Succeeded;
                verification.error = None;
                verification.last_success_at = Some(now);
            }
        });
        Ok(())
    }
}

/// Text from a SET kept in the status: at most 256 bytes, no control characters.
fn bounded(text: &str) -> String {
    let mut clean: String = text.chars().filter(|c| !c.is_control()).collect();
    if clean.len() > 256 {
        let mut end = 256;
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        clean.truncate(end);
    }
    clean
}

/// The reason recorded with a revocation: where it came from, within the reason's limit and
/// without control characters.
pub fn origin(stream: &str, claims: &SetClaims) -> String {
    let mut reason = format!(
        "ssf stream={stream} event={} jti={}",
        mapping::event_label(&claims.event_type),
        claims.jti
    );
    if let Some(txn) = &claims.txn {
        reason.push_str(&format!(" txn={txn}"));
    }
    let admin = match claims.event.get("reason_admin") {
        Some(Value::String(text)) => Some(text.as_str()),
        Some(Value::Object(by_language)) => by_language
            .get("en")
            .or_else(|| by_language.values().next())
            .and_then(Value::as_str),
        _ => None,
    };
    if let Some(admin) = admin {
        reason.push_str(&format!(" reason_admin={admin:?}"));
    }
    let mut clean: String = reason.chars().filter(|c| !c.is_control()).collect();
    if clean.len() > MAX_REASON_LEN {
        let mut end = MAX_REASON_LEN;
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        clean.truncate(end);
    }
    clean
}
