//! Reading a compact JWS (RFC 7515 §7.1) whose signature is checked here rather than by the
//! access-token verifier: its three parts, its header and payload as JSON objects read once
//! (a member named twice is refused, as in access tokens), and its signature checked with an
//! issuer's keys. Shared by the SET parser ([`secevent`](super::secevent), verified in
//! [`verify`](super::verify)) and Global Token Revocation's caller JWTs
//! ([`gtr`](super::gtr)); each maps [`JwsError`] and [`PartError`] onto its own errors.

use crate::token::TokenError;
use crate::token::json::{JsonError, parse_object};
use crate::token::keys::IssuerKeys;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

/// Why a text is not a compact JWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JwsError {
    /// Five dot-separated parts: a compact JWE.
    Encrypted,
    /// Neither three parts nor five.
    NotCompact,
}

/// Why the header or the payload is not a JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PartError {
    /// Not base64url (without padding).
    NotBase64,
    /// An object names a member twice.
    DuplicateMember,
    /// Not JSON, or not an object.
    NotObject,
}

/// The three parts of a compact JWS, borrowed from its text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CompactJws<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    signing_input: &'a str,
}

impl<'a> CompactJws<'a> {
    /// Splits `text` (already trimmed) into its header, payload and signature.
    pub(crate) fn split(text: &'a str) -> Result<Self, JwsError> {
        let parts: Vec<&str> = text.splitn(6, '.').collect();
        match parts[..] {
            [header, payload, signature] => Ok(Self {
                header,
                payload,
                signature,
                signing_input: &text[..header.len() + 1 + payload.len()],
            }),
            [_, _, _, _, _] => Err(JwsError::Encrypted),
            _ => Err(JwsError::NotCompact),
        }
    }

    /// The JOSE header.
    pub(crate) fn header(&self) -> Result<Map<String, Value>, PartError> {
        object(self.header)
    }

    /// The payload, as a claims set.
    pub(crate) fn payload(&self) -> Result<Map<String, Value>, PartError> {
        object(self.payload)
    }

    /// `header.payload`, the text the signature covers.
    pub(crate) fn signing_input(&self) -> &'a str {
        self.signing_input
    }

    /// The signature, base64url-encoded.
    pub(crate) fn signature(&self) -> &'a str {
        self.signature
    }

    /// Checks the signature with the key of `keys` that `kid` and `alg` select.
    pub(crate) async fn verify_signature(
        &self,
        keys: &IssuerKeys,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<(), TokenError> {
        verify_signature(keys, kid, alg, self.signing_input, self.signature).await
    }
}

/// Checks `signature` (base64url) over `signing_input` with the key of `keys` that `kid` and
/// `alg` select.
pub(crate) async fn verify_signature(
    keys: &IssuerKeys,
    kid: Option<&str>,
    alg: Algorithm,
    signing_input: &str,
    signature: &str,
) -> Result<(), TokenError> {
    keys.verify(kid, alg, |key| {
        jsonwebtoken::crypto::verify(signature, signing_input.as_bytes(), key, alg).unwrap_or(false)
    })
    .await
}

/// A base64url-encoded JSON object, read once.
fn object(part: &str) -> Result<Map<String, Value>, PartError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| PartError::NotBase64)?;
    parse_object(&bytes).map_err(|error| match error {
        JsonError::DuplicateMember => PartError::DuplicateMember,
        JsonError::Invalid => PartError::NotObject,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        URL_SAFE_NO_PAD.encode(text)
    }

    #[test]
    fn splits_three_parts_and_tells_a_jwe_from_other_shapes() {
        let text = format!("{}.{}.c2ln", b64(r#"{"alg":"RS256"}"#), b64(r#"{"a":1}"#));
        let jws = CompactJws::split(&text).expect("three parts");
        assert_eq!(jws.signature(), "c2ln");
        assert_eq!(
            jws.signing_input(),
            &text[..text.len() - ".c2ln".len()],
            "header.payload"
        );
        assert_eq!(jws.header().expect("header")["alg"], "RS256");
        assert_eq!(jws.payload().expect("payload")["a"], 1);
        assert_eq!(
            CompactJws::split("a.b.c.d.e").err(),
            Some(JwsError::Encrypted)
        );
        for text in ["", "a", "a.b", "a.b.c.d", "a.b.c.d.e.f", "a.b.c.d.e.f.g"] {
            assert_eq!(
                CompactJws::split(text).err(),
                Some(JwsError::NotCompact),
                "{text}"
            );
        }
    }

    #[test]
    fn a_part_is_one_json_object_in_base64url() {
        let part = |header: &str| {
            let text = format!("{header}.{}.c2ln", b64("{}"));
            CompactJws::split(&text).expect("three parts").header()
        };
        assert_eq!(part("not base64!").err(), Some(PartError::NotBase64));
        assert_eq!(part(&b64("[1]")).err(), Some(PartError::NotObject));
        assert_eq!(part(&b64("{")).err(), Some(PartError::NotObject));
        assert_eq!(
            part(&b64(r#"{"alg":"RS256","alg":"none"}"#)).err(),
            Some(PartError::DuplicateMember)
        );
    }
}
