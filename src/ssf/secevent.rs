//! Parsing a Security Event Token (RFC 8417 as profiled by SSF 1.0 §4) from the bytes of a
//! compact JWS, before its signature is checked: the JOSE header (`typ` must be
//! `secevent+jwt`, no `none`, no `crit`, no JWE) and the claims (`iss`, `aud`, `jti`, `iat`
//! required; no `sub`, no `exp`; exactly one event; `sub_id`, `txn`, `toe` when present).
//! Unknown header fields and claims are ignored. [`parse`] is a plain function over bytes,
//! bounded in work and memory, so that it can be fuzzed.

use super::error::SetError;
use super::jws::{CompactJws, JwsError, PartError};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use std::str::FromStr;

/// The largest SET accepted, in bytes.
pub const MAX_SET_BYTES: usize = 64 * 1024;
/// The `typ` SSF requires (RFC 8417 §2.3), compared without case and `application/`.
pub const SET_TYP: &str = "secevent+jwt";

/// A SET whose structure and claims are acceptable, signature not yet checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSet {
    /// The header's `alg`.
    pub alg: Algorithm,
    /// The header's `kid`.
    pub kid: Option<String>,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: String,
    /// The base64url signature.
    pub signature: String,
    /// The claims.
    pub claims: SetClaims,
}

/// The claims of a SET that the receiver reads.
#[derive(Debug, Clone, PartialEq)]
pub struct SetClaims {
    /// `iss`: the transmitter.
    pub iss: String,
    /// `aud`, as a list.
    pub aud: Vec<String>,
    /// `jti`, unique per transmitter.
    pub jti: String,
    /// `iat`.
    pub iat: u64,
    /// `toe`, the time of the event, when given.
    pub toe: Option<u64>,
    /// `txn`, the transaction that caused the event, when given.
    pub txn: Option<String>,
    /// `sub_id`, the subject identifier, when given at the top level.
    pub sub_id: Option<Value>,
    /// The one event's type URI.
    pub event_type: String,
    /// The one event's payload.
    pub event: Map<String, Value>,
}

/// Parses a compact SET (surrounding whitespace allowed) and checks every rule that needs no
/// key: see the module documentation.
pub fn parse(bytes: &[u8]) -> Result<ParsedSet, SetError> {
    if bytes.len() > MAX_SET_BYTES {
        return Err(SetError::Malformed("larger than 64 KiB"));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| SetError::Malformed("not UTF-8"))?
        .trim();
    let jws = CompactJws::split(text).map_err(|error| {
        SetError::Malformed(match error {
            JwsError::Encrypted => "an encrypted (JWE) SET is not supported",
            JwsError::NotCompact => "not a compact JWS",
        })
    })?;
    if jws.signature().is_empty() || URL_SAFE_NO_PAD.decode(jws.signature()).is_err() {
        return Err(SetError::Key("no valid signature"));
    }
    let header = object(jws.header(), "header")?;
    let (alg, kid) = check_header(&header)?;
    let claims = object(jws.payload(), "payload")?;
    let claims = check_claims(claims)?;
    Ok(ParsedSet {
        alg,
        kid,
        signing_input: jws.signing_input().to_owned(),
        signature: jws.signature().to_owned(),
        claims,
    })
}

/// The header or the payload, with this parser's error for each way it can be wrong.
fn object(
    part: Result<Map<String, Value>, PartError>,
    what: &'static str,
) -> Result<Map<String, Value>, SetError> {
    let header = what == "header";
    part.map_err(|error| {
        SetError::Malformed(match (error, header) {
            (PartError::NotBase64, true) => "the header is not base64url",
            (PartError::NotBase64, false) => "the payload is not base64url",
            (PartError::DuplicateMember, true) => "the header names a member twice",
            (PartError::DuplicateMember, false) => "the payload names a member twice",
            (PartError::NotObject, true) => "the header is not a JSON object",
            (PartError::NotObject, false) => "the payload is not a JSON object",
        })
    })
}

fn check_header(header: &Map<String, Value>) -> Result<(Algorithm, Option<String>), SetError> {
    if header.contains_key("enc") {
        return Err(SetError::Malformed(
            "an encrypted (JWE) SET is not supported",
        ));
    }
    match header.get("typ") {
        Some(Value::String(typ)) => {
            if !crate::token::typ::same_type(typ, SET_TYP) {
                return Err(SetError::NotASet("typ is not secevent+jwt"));
            }
        }
        Some(_) => return Err(SetError::Malformed("typ is not a string")),
        None => return Err(SetError::NotASet("typ secevent+jwt is required")),
    }
    let alg = match header.get("alg") {
        Some(Value::String(alg)) if alg.eq_ignore_ascii_case("none") => {
            return Err(SetError::Key("alg none is never accepted"));
        }
        Some(Value::String(alg)) => {
            Algorithm::from_str(alg).map_err(|_| SetError::Key("unsupported alg"))?
        }
        _ => return Err(SetError::Malformed("alg is missing or not a string")),
    };
    if header.contains_key("crit") {
        return Err(SetError::Malformed(
            "crit header parameters are not supported",
        ));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(SetError::Malformed("kid is not a string")),
    };
    Ok((alg, kid))
}

fn check_claims(mut claims: Map<String, Value>) -> Result<SetClaims, SetError> {
    // A `sub` or `exp` claim marks an ID or access token (SSF §4.1.2, §4.1.7; RFC 8417 §4).
    if claims.contains_key("sub") {
        return Err(SetError::NotASet("a SET must not carry sub"));
    }
    if claims.contains_key("exp") {
        return Err(SetError::NotASet("a SET must not carry exp"));
    }
    let iss = required_string(&claims, "iss")?;
    let aud = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or(SetError::Malformed("aud holds a non-string"))?,
        Some(_) => return Err(SetError::Malformed("aud is not a string or an array")),
        None => return Err(SetError::MissingClaim("aud")),
    };
    let jti = required_string(&claims, "jti")?;
    let iat = numeric_date(&claims, "iat")?.ok_or(SetError::MissingClaim("iat"))?;
    let toe = numeric_date(&claims, "toe")?;
    let txn = match claims.get("txn") {
        None => None,
        Some(Value::String(txn)) => Some(txn.clone()),
        // The SSF and CAEP examples write it as a number.
        Some(Value::Number(txn)) => Some(txn.to_string()),
        Some(_) => return Err(SetError::Malformed("txn is not a string")),
    };
    let sub_id = match claims.remove("sub_id") {
        None => None,
        Some(value @ Value::Object(_)) => Some(value),
        Some(_) => return Err(SetError::Malformed("sub_id is not an object")),
    };
    let events = match claims.remove("events") {
        Some(Value::Object(events)) => events,
        Some(_) => return Err(SetError::Malformed("events is not an object")),
        None => return Err(SetError::NotASet("no events claim")),
    };
    if events.len() != 1 {
        return Err(SetError::NotASet("a SET must carry exactly one event"));
    }
    let Some((event_type, event)) = events.into_iter().next() else {
        return Err(SetError::NotASet("a SET must carry exactly one event"));
    };
    let Value::Object(event) = event else {
        return Err(SetError::Malformed("the event's payload is not an object"));
    };
    // The member name is the event type's URI: an empty one names no event (found by the
    // set_parse fuzz target).
    if event_type.is_empty() {
        return Err(SetError::Malformed("the event type is empty"));
    }
    Ok(SetClaims {
        iss,
        aud,
        jti,
        iat,
        toe,
        txn,
        sub_id,
        event_type,
        event,
    })
}

fn required_string(claims: &Map<String, Value>, name: &'static str) -> Result<String, SetError> {
    match claims.get(name) {
        Some(Value::String(value)) if !value.is_empty() => Ok(value.clone()),
        Some(Value::String(_)) | None => Err(SetError::MissingClaim(name)),
        Some(_) => Err(SetError::Malformed("iss and jti must be strings")),
    }
}

/// An optional NumericDate (non-negative; fractions floored).
pub(crate) fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<u64>, SetError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(number)) => match (number.as_u64(), number.as_f64()) {
            (Some(seconds), _) => Ok(Some(seconds)),
            (None, Some(seconds)) if seconds.is_finite() && seconds >= 0.0 => {
                Ok(Some(seconds.floor() as u64))
            }
            _ => Err(SetError::Malformed("a time claim is not a NumericDate")),
        },
        Some(_) => Err(SetError::Malformed("a time claim is not a NumericDate")),
    }
}
