//! The SET pipeline that push and poll share: verify for the stream, skip a SET seen before
//! (its `jti`, remembered in the store), map its event, record the revocations durably (and
//! in this replica at once), then remember the `jti`. Every revocation's reason records its
//! origin: stream, event, SET `jti`, `txn` and `reason_admin`.

use super::error::SetError;
use super::mapping::{self, Decision, Policy};
use super::metrics::SsfMetrics;
use super::secevent::SetClaims;
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

/// A stream's status as this replica knows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamStatus {
    /// `enabled`, `paused` or `disabled` as the transmitter last said (`unknown` until then).
    pub status: String,
    /// When the last SET was accepted (Unix seconds).
    pub last_set_at: Option<u64>,
    /// When the last verification event was accepted.
    pub last_verification_at: Option<u64>,
    /// SETs accepted since start.
    pub accepted: u64,
    /// The stream's id at the transmitter, once stream management has configured it.
    pub stream_id: Option<String>,
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
    state: Mutex<StreamState>,
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
            state: Mutex::new(StreamState {
                status: StreamStatus {
                    status: "unknown".to_owned(),
                    ..StreamStatus::default()
                },
                pending_verification: None,
            }),
        }
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
        self.state().status.stream_id = Some(stream_id);
    }

    /// Records the `state` of a verification this receiver requested.
    pub fn expect_verification(&self, state: String) {
        self.state().pending_verification = Some(state);
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
                let mut guard = stream.state();
                if let Some(expected) = &guard.pending_verification
                    && state.as_deref() != Some(expected.as_str())
                {
                    return Err(SetError::InvalidState.into());
                }
                guard.pending_verification = None;
                guard.status.last_verification_at = Some(now);
                Receipt::Verified
            }
            Decision::StreamUpdated { status } => {
                stream.state().status.status = status;
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
        let mut state = stream.state();
        state.status.last_set_at = Some(now);
        state.status.accepted += 1;
        Ok((receipt, claims))
    }
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
