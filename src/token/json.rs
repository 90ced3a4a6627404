//! Strict JSON for a JOSE header or a JWT claims set: one object, no member name twice in
//! any object at any depth, at most [`MAX_DEPTH`] levels of nesting.
//!
//! RFC 7515 §4 and RFC 7519 §4 let a parser either refuse duplicate member names or keep the
//! last; parsers differ (serde_json and most JavaScript keep the last, others the first), so
//! `{"sub":"alice","sub":"mallory"}` could be checked as one subject and read by the
//! application as the other. Refusing them leaves one reading. Memory stays proportional to
//! the input (the token is bounded by `max_token_bytes` before it gets here), and the depth
//! limit keeps the recursive descent shallow whatever the input.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::fmt;

/// The deepest nesting accepted: the top object is depth 1, an object or array inside it 2.
pub const MAX_DEPTH: usize = 32;

/// Why a JOSE header or claims set was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not JSON, not an object, trailing data, or nested deeper than [`MAX_DEPTH`].
    #[error("not a JSON object")]
    Invalid,
    /// An object names the same member twice (compared after unescaping).
    #[error("duplicate member name")]
    DuplicateMember,
}

/// Parses `bytes` as one JSON object under the rules above.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    let fault = Cell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed = StrictValue {
        depth: 0,
        fault: &fault,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    match (parsed, fault.get()) {
        (_, Some(error)) => Err(error),
        (Ok(Value::Object(map)), None) => Ok(map),
        _ => Err(JsonError::Invalid),
    }
}

/// A JSON value at `depth`, refusing duplicates and excess depth (noted in `fault`).
#[derive(Clone, Copy)]
struct StrictValue<'a> {
    depth: usize,
    fault: &'a Cell<Option<JsonError>>,
}

impl StrictValue<'_> {
    /// The seed for a value nested one level deeper, or an error past [`MAX_DEPTH`].
    fn nested<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_DEPTH {
            self.fault.set(Some(JsonError::Invalid));
            return Err(E::custom("nested too deeply"));
        }
        Ok(Self {
            depth: self.depth + 1,
            fault: self.fault,
        })
    }
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let item = self.nested()?;
        let mut items = Vec::new();
        while let Some(value) = seq.next_element_seed(item)? {
            items.push(value);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let member = self.nested()?;
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                self.fault.set(Some(JsonError::DuplicateMember));
                return Err(de::Error::custom("duplicate member name"));
            }
            let value = map.next_value_seed(member)?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_objects_like_serde_json() {
        let text = br#"{"iss":"https://i","aud":["a","b"],"exp":2000,"n":-1,"f":1.5,
            "t":true,"z":null,"o":{"x":{"y":[1,{"k":"v"}]}},"e":"s\u0075b"}"#;
        let strict = parse_object(text).expect("object");
        let loose: Value = serde_json::from_slice(text).expect("json");
        assert_eq!(Value::Object(strict), loose);
    }

    #[test]
    fn duplicate_names_are_refused_at_every_depth() {
        for text in [
            &br#"{"sub":"alice","sub":"mallory"}"#[..],
            br#"{"sub":"alice","s\u0075b":"mallory"}"#,
            br#"{"a":1,"b":{"c":1,"c":2}}"#,
            br#"{"a":[{"x":1},{"y":1,"y":1}]}"#,
            br#"{"alg":"RS256","alg":"none"}"#,
        ] {
            assert_eq!(
                parse_object(text),
                Err(JsonError::DuplicateMember),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        // The same name in different objects is fine.
        assert!(parse_object(br#"{"a":{"x":1},"b":{"x":1}}"#).is_ok());
    }

    #[test]
    fn non_objects_and_trailing_data_are_invalid() {
        for text in [
            &b""[..],
            b"[]",
            b"\"s\"",
            b"1",
            b"null",
            b"{",
            b"{} {}",
            b"{}x",
            b"{\"a\":1,}",
            b"{\"a\":NaN}",
            b"\xff",
        ] {
            assert_eq!(parse_object(text), Err(JsonError::Invalid), "{text:?}");
        }
        assert_eq!(parse_object(b" {} \n"), Ok(Map::new()));
    }

    #[test]
    fn nesting_is_limited() {
        let nest = |depth: usize| {
            let mut text = String::new();
            for _ in 1..depth {
                text.push_str("{\"a\":");
            }
            text.push_str("{}");
            for _ in 1..depth {
                text.push('}');
            }
            text
        };
        assert!(parse_object(nest(MAX_DEPTH).as_bytes()).is_ok());
        assert_eq!(
            parse_object(nest(MAX_DEPTH + 1).as_bytes()),
            Err(JsonError::Invalid)
        );
        // Far past serde_json's own limit, refused without exhausting the stack.
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse_object(deep.as_bytes()), Err(JsonError::Invalid));
        let arrays = format!(
            "{{\"a\":{}{}}}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(parse_object(arrays.as_bytes()).is_ok());
        assert_eq!(
            parse_object(json!({"a": [[[]]]}).to_string().as_bytes()).map(|m| m.len()),
            Ok(1)
        );
    }
}

/// The rule through the [`Verifier`](super::Verifier): every JWT path parses with it.
#[cfg(test)]
mod verifier_tests {
    use crate::token::logout::BACKCHANNEL_LOGOUT_EVENT;
    use crate::token::test_tokens::*;
    use crate::token::{LogoutTokenError, TimeRule, TokenError, Verifier};
    use std::collections::BTreeMap;
    use std::time::Duration;

    async fn verifier() -> Verifier {
        Verifier::new(
            &test_issuers(),
            Duration::from_secs(30),
            8192,
            Duration::from_secs(3600),
        )
        .await
        .expect("verifier")
    }

    /// A token of exactly these header and claims texts, signed with the RSA test key.
    fn raw_token(header: &str, claims: &str) -> String {
        let key = TestKey::Rsa;
        let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        sign_input(&input, key.alg(), &key.encoding_key())
    }

    fn access_claims(extra: &str) -> String {
        format!(
            r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","iat":{},"exp":{}{extra}}}"#,
            NOW - 10,
            NOW + 300
        )
    }

    const HEADER: &str = r#"{"alg":"RS256","kid":"rsa-1"}"#;

    #[tokio::test]
    async fn access_tokens_with_duplicate_members_are_refused() {
        let verifier = verifier().await;
        let check = |token: String| {
            let verifier = &verifier;
            async move { verifier.verify(&token, NOW, TimeRule::Enforce).await }
        };
        // The control: the same texts without a duplicate verify.
        let good = check(raw_token(HEADER, &access_claims(r#","sub":"alice""#))).await;
        assert_eq!(
            good.map(|t| t.claims.sub),
            Ok(Some("alice".to_owned())),
            "control"
        );
        for (header, claims) in [
            (
                HEADER.to_owned(),
                access_claims(r#","sub":"alice","sub":"mallory""#),
            ),
            (
                HEADER.to_owned(),
                access_claims(r#","sub":"alice","s\u0075b":"mallory""#),
            ),
            (HEADER.to_owned(), access_claims(r#","exp":1"#)),
            (
                HEADER.to_owned(),
                access_claims(r#","x":{"role":"user","role":"admin"}"#),
            ),
            (
                r#"{"alg":"RS256","kid":"rsa-1","kid":"rsa-1"}"#.to_owned(),
                access_claims(""),
            ),
            (
                r#"{"alg":"RS256","kid":"rsa-1","typ":"JWT","typ":"logout+jwt"}"#.to_owned(),
                access_claims(""),
            ),
        ] {
            assert_eq!(
                check(raw_token(&header, &claims)).await.err(),
                Some(TokenError::DuplicateMember),
                "{header} {claims}"
            );
            // Revocation by token (no time rule) parses the same way.
            assert_eq!(
                verifier
                    .verify(&raw_token(&header, &claims), NOW, TimeRule::Ignore)
                    .await
                    .err(),
                Some(TokenError::DuplicateMember)
            );
        }
    }

    #[tokio::test]
    async fn an_untyped_token_carrying_events_is_not_an_access_token() {
        let verifier = verifier().await;
        let event = format!(r#","events":{{"{BACKCHANNEL_LOGOUT_EVENT}":{{}}}}"#);
        for header in [HEADER, r#"{"alg":"RS256","kid":"rsa-1","typ":"JWT"}"#] {
            let token = raw_token(header, &access_claims(&event));
            assert_eq!(
                verifier.verify(&token, NOW, TimeRule::Enforce).await.err(),
                Some(TokenError::WrongType),
                "{header}"
            );
        }
    }

    #[tokio::test]
    async fn logout_tokens_with_duplicate_members_are_refused() {
        let verifier = verifier().await;
        let audiences = BTreeMap::from([(ISSUER.to_owned(), vec!["web-app".to_owned()])]);
        let claims = |extra: &str| {
            format!(
                r#"{{"iss":"{ISSUER}","aud":"web-app","iat":{},"jti":"lt-1","events":{{"{BACKCHANNEL_LOGOUT_EVENT}":{{}}}}{extra}}}"#,
                NOW - 5
            )
        };
        let header = r#"{"alg":"RS256","kid":"rsa-1","typ":"logout+jwt"}"#;
        let good = raw_token(header, &claims(r#","sid":"s-1""#));
        assert!(
            verifier
                .verify_logout_token(&good, &audiences, NOW)
                .await
                .is_ok()
        );
        for token in [
            raw_token(header, &claims(r#","sid":"s-1","sid":"s-2""#)),
            raw_token(
                r#"{"alg":"RS256","kid":"rsa-1","typ":"logout+jwt","typ":"at+jwt"}"#,
                &claims(r#","sid":"s-1""#),
            ),
        ] {
            assert_eq!(
                verifier.verify_logout_token(&token, &audiences, NOW).await,
                Err(LogoutTokenError::Token(TokenError::DuplicateMember))
            );
        }
    }
}
