//! What an event asks of jwt-revoker: the event types of CAEP 1.0, RISC 1.0, the 2018 OAuth
//! event types and SSF's own, mapped onto revocations by the default policy (opt-in rows only
//! when the stream enables them). Never an unrevoke: events that lift a restriction are
//! acknowledged and ignored.

use super::error::SetError;
use super::secevent::{SetClaims, numeric_date};
use super::subject::{self, Subject};
use crate::revocation::RevocationKind;
use serde_json::{Map, Value};

const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";
const OAUTH: &str = "https://schemas.openid.net/secevent/oauth/event-type/";
const SSF: &str = "https://schemas.openid.net/secevent/ssf/event-type/";

/// The SSF verification event type.
pub const VERIFICATION_EVENT: &str =
    "https://schemas.openid.net/secevent/ssf/event-type/verification";
/// The CAEP session-revoked event type.
pub const SESSION_REVOKED_EVENT: &str =
    "https://schemas.openid.net/secevent/caep/event-type/session-revoked";

/// Every event type known by name: its URI prefix, name, and metric label.
const KNOWN: &[(&str, &str, &str)] = &[
    (CAEP, "session-revoked", "caep_session_revoked"),
    (CAEP, "credential-change", "caep_credential_change"),
    (CAEP, "token-claims-change", "caep_token_claims_change"),
    (
        CAEP,
        "assurance-level-change",
        "caep_assurance_level_change",
    ),
    (
        CAEP,
        "device-compliance-change",
        "caep_device_compliance_change",
    ),
    (CAEP, "risk-level-change", "caep_risk_level_change"),
    (CAEP, "session-established", "caep_session_established"),
    (CAEP, "session-presented", "caep_session_presented"),
    (RISC, "account-disabled", "risc_account_disabled"),
    (RISC, "account-purged", "risc_account_purged"),
    (RISC, "credential-compromise", "risc_credential_compromise"),
    (RISC, "sessions-revoked", "risc_sessions_revoked"),
    (
        RISC,
        "account-credential-change-required",
        "risc_account_credential_change_required",
    ),
    (RISC, "identifier-recycled", "risc_identifier_recycled"),
    (RISC, "account-enabled", "risc_account_enabled"),
    (RISC, "identifier-changed", "risc_identifier_changed"),
    (RISC, "opt-in", "risc_opt_in"),
    (RISC, "opt-out-initiated", "risc_opt_out_initiated"),
    (RISC, "opt-out-cancelled", "risc_opt_out_cancelled"),
    (RISC, "opt-out-effective", "risc_opt_out_effective"),
    (RISC, "recovery-activated", "risc_recovery_activated"),
    (
        RISC,
        "recovery-information-changed",
        "risc_recovery_information_changed",
    ),
    // Google's verification event predates SSF's.
    (RISC, "verification", "verification"),
    (OAUTH, "tokens-revoked", "oauth_tokens_revoked"),
    (OAUTH, "token-revoked", "oauth_token_revoked"),
    (OAUTH, "token-issued", "oauth_token_issued"),
    (OAUTH, "client-disabled", "oauth_client_disabled"),
    (OAUTH, "client-enabled", "oauth_client_enabled"),
    (
        OAUTH,
        "client-credential-changed",
        "oauth_client_credential_changed",
    ),
    (SSF, "verification", "verification"),
    (SSF, "stream-updated", "stream_updated"),
];

/// The bounded metric label of an event type (`other` for one not known by name).
pub fn event_label(event_type: &str) -> &'static str {
    KNOWN
        .iter()
        .find(|(prefix, name, _)| {
            event_type
                .strip_prefix(prefix)
                .is_some_and(|rest| rest == *name)
        })
        .map_or("other", |(_, _, label)| label)
}

/// What an `opaque` subject identifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpaqueMeans {
    /// A session (`sid`) for session events, a user (`sub`) otherwise.
    #[default]
    ByEvent,
    /// Always a session id.
    Sid,
    /// Always a user (`sub`).
    Sub,
}

/// The opt-in rows of the mapping table (all off by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OptIn {
    /// CAEP assurance-level-change with `change_direction = decrease` → the user.
    pub assurance_decrease: bool,
    /// CAEP device-compliance-change to `not-compliant` without a session → the user.
    pub device_not_compliant: bool,
    /// CAEP risk-level-change to `HIGH` → the user.
    pub risk_high: bool,
    /// RISC account-credential-change-required → the user.
    pub credential_change_required: bool,
}

/// A stream's policy for turning events into revocations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// The token issuers the stream may revoke for (the first is used for subjects that
    /// name no issuer, together with the others).
    pub token_issuers: Vec<String>,
    /// What an `opaque` subject means.
    pub opaque_means: OpaqueMeans,
    /// When set, an `email` subject is this user's `sub` in access tokens (the IdP puts the
    /// e-mail address in `sub`).
    pub email_is_sub: bool,
    /// Subject formats (`email`, `phone_number`, `account`) revoked by a claim of the access
    /// tokens: (format, claim). A subject of such a format revokes kind `claim`
    /// `CLAIM=<value>` for each token issuer (`subject_claims` in the config).
    pub subject_claims: Vec<(String, String)>,
    /// Subject members that, if present and not understood, discard the event (SSF §3.6).
    pub critical_subject_members: Vec<String>,
    /// The opt-in rows.
    pub opt_in: OptIn,
}

/// One revocation an event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// What it covers.
    pub kind: RevocationKind,
    /// The token issuer.
    pub issuer: String,
    /// The `sub`, `sid`, `jti`, client id, or `CLAIM=VALUE`.
    pub id: String,
}

/// What to do with a verified SET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Record these revocations as of `as_of` (Unix seconds, never later than now).
    Revoke {
        /// The revocations.
        planned: Vec<Planned>,
        /// The time they take effect from.
        as_of: u64,
    },
    /// Acknowledge and do nothing; the bounded reason is for logs and metrics.
    Ignore(&'static str),
    /// An SSF verification event with this `state`.
    Verification {
        /// The `state` the transmitter echoes.
        state: Option<String>,
    },
    /// An SSF stream-updated event.
    StreamUpdated {
        /// `enabled`, `paused` or `disabled`.
        status: String,
    },
}

/// Who a subject resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    User {
        issuer: Option<String>,
        sub: String,
    },
    Session(String),
    Token {
        issuer: String,
        jti: String,
    },
    Client(String),
    /// Every user whose tokens carry this claim value (the claim, the value).
    Claim(String, String),
}

/// Which member of a complex subject wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Session,
    User,
}

/// The outcome of resolving a subject.
enum Resolved {
    Who(Who),
    /// Cannot be mapped onto tokens (bounded reason).
    Unmapped(&'static str),
    /// A critical member is not understood: discard the event.
    Discard,
}

fn resolve(subject: &Subject, level: Level, policy: &Policy) -> Result<Resolved, SetError> {
    let allowed = |iss: &str| policy.token_issuers.iter().any(|i| i == iss);
    Ok(match subject {
        Subject::IssSub { iss, sub } if allowed(iss) => Resolved::Who(Who::User {
            issuer: Some(iss.clone()),
            sub: sub.clone(),
        }),
        Subject::JwtId { iss, jti } if allowed(iss) => Resolved::Who(Who::Token {
            issuer: iss.clone(),
            jti: jti.clone(),
        }),
        Subject::IssSub { .. } | Subject::JwtId { .. } => {
            return Err(SetError::AccessDenied(
                "the subject's issuer is not one this stream may revoke for",
            ));
        }
        Subject::Email(email) if policy.email_is_sub => Resolved::Who(Who::User {
            issuer: None,
            sub: email.clone(),
        }),
        Subject::Email(value) | Subject::Phone(value) | Subject::Account(value) => {
            let format = match subject {
                Subject::Email(_) => "email",
                Subject::Phone(_) => "phone_number",
                _ => "account",
            };
            match policy.subject_claims.iter().find(|(f, _)| f == format) {
                Some((_, claim)) => Resolved::Who(Who::Claim(claim.clone(), value.clone())),
                None if format == "email" => Resolved::Unmapped("unmapped_email"),
                None => Resolved::Unmapped("unmapped_subject"),
            }
        }
        Subject::Opaque(id) => {
            let session = match policy.opaque_means {
                OpaqueMeans::Sid => true,
                OpaqueMeans::Sub => false,
                OpaqueMeans::ByEvent => level == Level::Session,
            };
            Resolved::Who(if session {
                Who::Session(id.clone())
            } else {
                Who::User {
                    issuer: None,
                    sub: id.clone(),
                }
            })
        }
        Subject::Client(id) => Resolved::Who(Who::Client(id.clone())),
        Subject::Complex {
            user,
            session,
            others,
        } => {
            if others
                .iter()
                .any(|member| policy.critical_subject_members.contains(member))
            {
                return Ok(Resolved::Discard);
            }
            let order = match level {
                Level::Session => [session, user],
                Level::User => [user, session],
            };
            for (position, member) in order.into_iter().enumerate() {
                if let Some(member) = member {
                    let is_session =
                        matches!((level, position), (Level::Session, 0) | (Level::User, 1));
                    // An opaque session member is a session id whatever `opaque_means` says.
                    if let (true, Subject::Opaque(sid)) = (is_session, member.as_ref()) {
                        return Ok(Resolved::Who(Who::Session(sid.clone())));
                    }
                    // A session member is read as a session whatever the stream's default.
                    let member_level = if is_session {
                        Level::Session
                    } else {
                        Level::User
                    };
                    let resolved = resolve(member, member_level, policy)?;
                    if !matches!(resolved, Resolved::Unmapped(_)) {
                        return Ok(resolved);
                    }
                }
            }
            Resolved::Unmapped("unmapped_subject")
        }
        Subject::Aliases(aliases) => {
            for alias in aliases {
                let resolved = resolve(alias, level, policy)?;
                if !matches!(resolved, Resolved::Unmapped(_)) {
                    return Ok(resolved);
                }
            }
            Resolved::Unmapped("unmapped_subject")
        }
        Subject::Other(_) => Resolved::Unmapped("unmapped_subject"),
    })
}

fn planned(who: Who, policy: &Policy) -> Vec<Planned> {
    let for_issuers = |kind: RevocationKind, issuer: Option<String>, id: String| match issuer {
        Some(issuer) => vec![Planned { kind, issuer, id }],
        None => policy
            .token_issuers
            .iter()
            .map(|issuer| Planned {
                kind,
                issuer: issuer.clone(),
                id: id.clone(),
            })
            .collect(),
    };
    match who {
        Who::User { issuer, sub } => for_issuers(RevocationKind::Subject, issuer, sub),
        Who::Session(sid) => for_issuers(RevocationKind::Session, None, sid),
        Who::Token { issuer, jti } => for_issuers(RevocationKind::Token, Some(issuer), jti),
        Who::Client(id) => for_issuers(RevocationKind::Client, None, id),
        Who::Claim(claim, value) => {
            for_issuers(RevocationKind::Claim, None, format!("{claim}={value}"))
        }
    }
}

/// The revocations that revoke a user named by `subject` (Global Token Revocation): `None`
/// when the subject cannot be mapped onto tokens.
pub fn user_revocations(
    subject: &Subject,
    policy: &Policy,
) -> Result<Option<Vec<Planned>>, SetError> {
    Ok(match resolve(subject, Level::User, policy)? {
        Resolved::Who(who @ (Who::User { .. } | Who::Claim(..))) => Some(planned(who, policy)),
        Resolved::Who(_) | Resolved::Unmapped(_) | Resolved::Discard => None,
    })
}

/// A string member of the event, compared without case.
fn member_is(event: &Map<String, Value>, name: &str, wanted: &str) -> bool {
    event
        .get(name)
        .and_then(Value::as_str)
        .is_some_and(|value| value.eq_ignore_ascii_case(wanted))
}

/// Decides what a SET (already verified) asks for, at `now` (Unix seconds).
pub fn decide(claims: &SetClaims, policy: &Policy, now: u64) -> Result<Decision, SetError> {
    let event = &claims.event;
    let label = event_label(&claims.event_type);
    // The CAEP examples write `event_timestamp` in milliseconds (1615304991643): a value
    // past the year 5000 in seconds is read as milliseconds.
    let event_time = numeric_date(event, "event_timestamp")?
        .map(|t| if t >= 100_000_000_000 { t / 1000 } else { t });
    let mut as_of = event_time.or(claims.toe).unwrap_or(claims.iat);
    let level = match label {
        "verification" => {
            let state = match event.get("state") {
                None => None,
                Some(Value::String(state)) => Some(state.clone()),
                Some(_) => return Err(SetError::InvalidEvent("state is not a string")),
            };
            return Ok(Decision::Verification { state });
        }
        "stream_updated" => {
            let status = event
                .get("status")
                .and_then(Value::as_str)
                .filter(|s| matches!(*s, "enabled" | "paused" | "disabled"))
                .ok_or(SetError::InvalidEvent(
                    "stream-updated needs status enabled, paused or disabled",
                ))?;
            return Ok(Decision::StreamUpdated {
                status: status.to_owned(),
            });
        }
        "caep_session_revoked" => Level::Session,
        "caep_credential_change" => {
            let Some(change) = event.get("change_type").and_then(Value::as_str) else {
                return Err(SetError::InvalidEvent(
                    "credential-change needs change_type",
                ));
            };
            if change.eq_ignore_ascii_case("create") {
                return Ok(Decision::Ignore("credential_created"));
            }
            Level::User
        }
        "caep_token_claims_change" => {
            if !event.get("claims").is_some_and(Value::is_object) {
                return Err(SetError::InvalidEvent("token-claims-change needs claims"));
            }
            Level::User
        }
        "caep_assurance_level_change" => {
            if !(policy.opt_in.assurance_decrease
                && member_is(event, "change_direction", "decrease"))
            {
                return Ok(Decision::Ignore("policy"));
            }
            Level::User
        }
        "caep_device_compliance_change" => {
            if !member_is(event, "current_status", "not-compliant") {
                return Ok(Decision::Ignore("policy"));
            }
            // With a session in a complex subject: that session; else opt-in, the user.
            Level::Session
        }
        "caep_risk_level_change" => {
            if !(policy.opt_in.risk_high && member_is(event, "current_level", "HIGH")) {
                return Ok(Decision::Ignore("policy"));
            }
            Level::User
        }
        "risc_account_credential_change_required" => {
            if !policy.opt_in.credential_change_required {
                return Ok(Decision::Ignore("policy"));
            }
            Level::User
        }
        "risc_credential_compromise" => {
            // The attacker may mint tokens until the transmitter told us.
            as_of = as_of.max(claims.iat);
            Level::User
        }
        "risc_account_disabled"
        | "risc_account_purged"
        | "risc_sessions_revoked"
        | "risc_identifier_recycled"
        | "oauth_tokens_revoked"
        | "oauth_client_disabled"
        | "oauth_client_credential_changed" => Level::User,
        "other" => return Ok(Decision::Ignore("unknown_event")),
        _ => return Ok(Decision::Ignore("informational")),
    };
    let subject = subject::of_event(claims.sub_id.as_ref(), event)?;
    let who = match resolve(&subject, level, policy)? {
        Resolved::Who(who) => who,
        Resolved::Unmapped(reason) => return Ok(Decision::Ignore(reason)),
        Resolved::Discard => return Ok(Decision::Ignore("critical_member")),
    };
    let who = match (label, who) {
        // Client events revoke clients; no other event does.
        ("oauth_client_disabled" | "oauth_client_credential_changed", who @ Who::Client(_)) => who,
        ("oauth_client_disabled" | "oauth_client_credential_changed", _) => {
            return Ok(Decision::Ignore("unmapped_subject"));
        }
        (_, Who::Client(_)) => return Ok(Decision::Ignore("unmapped_subject")),
        ("caep_device_compliance_change", Who::Session(sid)) => Who::Session(sid),
        ("caep_device_compliance_change", _) if !policy.opt_in.device_not_compliant => {
            return Ok(Decision::Ignore("policy"));
        }
        (_, who) => who,
    };
    let planned = planned(who, policy);
    if planned.is_empty() {
        return Ok(Decision::Ignore("no_token_issuer"));
    }
    Ok(Decision::Revoke {
        planned,
        as_of: as_of.min(now),
    })
}
