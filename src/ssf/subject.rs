//! Subject identifiers (RFC 9493 and SSF §3), normalised from every shape seen on the wire:
//! the `format` member of RFC 9493 and SSF, Google's legacy RISC `subject_type` (`iss-sub`,
//! `id_token_claims`, `oauth_token`), and the OAuth event types' `oauth_client`.

use super::error::SetError;
use serde_json::{Map, Value};

/// How deeply `complex` and `aliases` subjects may nest.
const MAX_DEPTH: usize = 2;
/// The most identifiers an `aliases` subject may list.
const MAX_ALIASES: usize = 16;

/// A subject, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// `iss_sub`: a user at an issuer.
    IssSub {
        /// The issuer.
        iss: String,
        /// The subject.
        sub: String,
    },
    /// `email`.
    Email(String),
    /// `phone_number`.
    Phone(String),
    /// `account` (`acct:` URI).
    Account(String),
    /// `opaque`: an identifier whose meaning the stream defines.
    Opaque(String),
    /// `jwt_id`: one token.
    JwtId {
        /// Its issuer.
        iss: String,
        /// Its `jti`.
        jti: String,
    },
    /// A client application (`oauth_client`, or the OAuth events' `client_id`).
    Client(String),
    /// `complex`: members describing one principal; an absent member is a wildcard.
    Complex {
        /// `user`.
        user: Option<Box<Subject>>,
        /// `session`.
        session: Option<Box<Subject>>,
        /// The other members present (`device`, `tenant`, …), which cannot narrow a
        /// revocation here.
        others: Vec<String>,
    },
    /// `aliases`: several identifiers of one subject.
    Aliases(Vec<Subject>),
    /// A format this receiver cannot act on (`saml_assertion_id`, `ip-addresses`, `did`,
    /// `uri`, an OAuth refresh token, an unknown format), by name.
    Other(String),
}

/// Reads a subject object (RFC 9493 `format`, or a legacy `subject_type`).
pub fn parse(value: &Value) -> Result<Subject, SetError> {
    parse_at(value, 0)
}

fn parse_at(value: &Value, depth: usize) -> Result<Subject, SetError> {
    let Value::Object(subject) = value else {
        return Err(SetError::InvalidEvent("a subject is not an object"));
    };
    if let Some(format) = subject.get("format") {
        let Value::String(format) = format else {
            return Err(SetError::InvalidEvent("a subject's format is not a string"));
        };
        return by_format(format, subject, depth);
    }
    if let Some(kind) = subject.get("subject_type") {
        let Value::String(kind) = kind else {
            return Err(SetError::InvalidEvent("subject_type is not a string"));
        };
        return legacy(kind, subject);
    }
    Err(SetError::InvalidEvent(
        "a subject has neither format nor subject_type",
    ))
}

fn text(subject: &Map<String, Value>, name: &'static str) -> Result<String, SetError> {
    match subject.get(name) {
        Some(Value::String(value)) if !value.is_empty() => Ok(value.clone()),
        _ => Err(SetError::InvalidEvent(
            "a subject lacks a member its format requires",
        )),
    }
}

fn by_format(
    format: &str,
    subject: &Map<String, Value>,
    depth: usize,
) -> Result<Subject, SetError> {
    Ok(match format {
        "iss_sub" => Subject::IssSub {
            iss: text(subject, "iss")?,
            sub: text(subject, "sub")?,
        },
        "email" => Subject::Email(text(subject, "email")?),
        "phone_number" => Subject::Phone(text(subject, "phone_number")?),
        "account" => Subject::Account(text(subject, "uri")?),
        "opaque" => Subject::Opaque(text(subject, "id")?),
        "jwt_id" => Subject::JwtId {
            iss: text(subject, "iss")?,
            jti: text(subject, "jti")?,
        },
        "complex" => complex(subject, depth)?,
        "aliases" => {
            if depth >= MAX_DEPTH {
                return Err(SetError::InvalidEvent("subjects nest too deeply"));
            }
            let Some(Value::Array(items)) = subject.get("identifiers") else {
                return Err(SetError::InvalidEvent("aliases without identifiers"));
            };
            if items.is_empty() || items.len() > MAX_ALIASES {
                return Err(SetError::InvalidEvent(
                    "aliases must list 1 to 16 identifiers",
                ));
            }
            Subject::Aliases(
                items
                    .iter()
                    .map(|item| parse_at(item, depth + 1))
                    .collect::<Result<_, _>>()?,
            )
        }
        other => Subject::Other(other.chars().take(64).collect()),
    })
}

fn complex(subject: &Map<String, Value>, depth: usize) -> Result<Subject, SetError> {
    if depth >= MAX_DEPTH {
        return Err(SetError::InvalidEvent("subjects nest too deeply"));
    }
    let mut user = None;
    let mut session = None;
    let mut others = Vec::new();
    for (name, member) in subject {
        match name.as_str() {
            "format" => {}
            "user" => user = Some(Box::new(parse_at(member, depth + 1)?)),
            "session" => session = Some(Box::new(parse_at(member, depth + 1)?)),
            other if member.is_object() => {
                // Validated too: a malformed member makes the subject malformed.
                parse_at(member, depth + 1)?;
                others.push(other.chars().take(64).collect());
            }
            _ => {}
        }
    }
    if user.is_none() && session.is_none() && others.is_empty() {
        return Err(SetError::InvalidEvent("a complex subject without members"));
    }
    Ok(Subject::Complex {
        user,
        session,
        others,
    })
}

/// Google's legacy RISC shapes and the 2018 OAuth event types' subjects.
fn legacy(kind: &str, subject: &Map<String, Value>) -> Result<Subject, SetError> {
    Ok(match kind {
        "iss-sub" | "iss_sub" => Subject::IssSub {
            iss: text(subject, "iss")?,
            sub: text(subject, "sub")?,
        },
        "id_token_claims" => match (subject.get("sub"), subject.get("email")) {
            (Some(_), _) => Subject::IssSub {
                iss: text(subject, "iss")?,
                sub: text(subject, "sub")?,
            },
            (None, Some(_)) => Subject::Email(text(subject, "email")?),
            (None, None) => {
                return Err(SetError::InvalidEvent(
                    "id_token_claims without sub or email",
                ));
            }
        },
        "email" => Subject::Email(text(subject, "email")?),
        "phone" | "phone_number" => Subject::Phone(text(subject, "phone_number")?),
        "oauth_client" | "client_id" => Subject::Client(text(subject, "client_id")?),
        // A refresh token (by hash): refresh tokens never reach the mesh.
        "oauth_token" => Subject::Other("oauth_token".to_owned()),
        other => Subject::Other(other.chars().take(64).collect()),
    })
}

/// The subject of an event: the SET's `sub_id`, else the event's own `subject` member
/// (CAEP/RISC, and Google's legacy shape).
pub fn of_event(sub_id: Option<&Value>, event: &Map<String, Value>) -> Result<Subject, SetError> {
    match (sub_id, event.get("subject")) {
        (Some(sub_id), _) => parse(sub_id),
        (None, Some(subject)) => parse(subject),
        (None, None) => Err(SetError::InvalidEvent(
            "the event names no subject (sub_id)",
        )),
    }
}
