//! Turns a [`Decision`] into Envoy's `CheckResponse`: an RFC 6750 denial (401 with
//! `WWW-Authenticate: Bearer`, or 503 when revocations are unavailable), or an allow that
//! sets claim headers, can strip `authorization`, and carries the claims as dynamic metadata.

use super::challenge as rfc6750;
use super::decision::Denial;
use crate::config::{MetadataClaims, ResponseConfig};
use crate::token::{TokenError, VerifiedToken};
use bytes::Bytes;
use envoy_types::ext_authz::v3::pb::{
    CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue, HeaderValueOption,
    HttpResponse, HttpStatus, HttpStatusCode, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{ListValue, Struct, Value, value::Kind};
use envoy_types::pb::google::rpc;
use prost::Message;
use serde_json::Value as Json;
use std::collections::HashMap;

/// The key under which verified claims appear in the response's dynamic metadata (Envoy puts
/// it in the `envoy.filters.http.ext_authz` namespace).
pub const METADATA_CLAIMS_KEY: &str = "jwt_payload";
/// The longest claim value copied into a request header, in bytes.
const MAX_CLAIM_HEADER_BYTES: usize = 4096;

/// The encoded allow response for `token` under the response settings `config` (whose
/// process-unique id is `config_id`): made once per verified token and kept in its memo, so
/// a cached token's allow costs a reference count, not a `Struct` of its claims.
pub fn encoded_allow(token: &VerifiedToken, config: &ResponseConfig, config_id: u64) -> Bytes {
    if let Some((made_for, encoded)) = token.memo.allow_response.get()
        && *made_for == config_id
    {
        return encoded.clone();
    }
    let encoded = Bytes::from(allow(token, config).encode_to_vec());
    // Another Check of the same token may have set it meanwhile, with the same bytes.
    let _ = token.memo.allow_response.set((config_id, encoded.clone()));
    encoded
}

fn rpc_status(code: tonic::Code, message: &str) -> Option<rpc::Status> {
    Some(rpc::Status {
        code: code as i32,
        message: message.to_owned(),
        details: Vec::new(),
    })
}

/// A request or response header to set, with `action`.
pub(super) fn header(key: &str, value: String, action: HeaderAppendAction) -> HeaderValueOption {
    #[allow(deprecated)]
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_owned(),
            value,
            raw_value: Vec::new(),
        }),
        append: None,
        append_action: action.into(),
        keep_empty_value: false,
    }
}

fn allow(token: &VerifiedToken, config: &ResponseConfig) -> CheckResponse {
    let mut headers = Vec::new();
    let mut headers_to_remove = Vec::new();
    for (claim, name) in &config.claim_headers {
        match token.claims.all.get(claim).and_then(header_value) {
            Some(value) => headers.push(header(
                name,
                value,
                HeaderAppendAction::OverwriteIfExistsOrAdd,
            )),
            // A client must not be able to supply the header itself.
            None => headers_to_remove.push(name.clone()),
        }
    }
    headers_to_remove.extend(config.strip_headers.iter().cloned());
    let claims = match &config.dynamic_metadata {
        MetadataClaims::None => None,
        MetadataClaims::All => Some(json_object(&token.claims.all)),
        MetadataClaims::Only(names) => Some(Struct {
            fields: names
                .iter()
                .filter_map(|name| Some((name.clone(), json_value(token.claims.all.get(name)?))))
                .collect(),
        }),
    };
    let dynamic_metadata = claims
        .filter(|claims| !claims.fields.is_empty())
        .map(|claims| Struct {
            fields: HashMap::from([(
                METADATA_CLAIMS_KEY.to_owned(),
                Value {
                    kind: Some(Kind::StructValue(claims)),
                },
            )]),
        });
    CheckResponse {
        status: rpc_status(tonic::Code::Ok, ""),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers,
            headers_to_remove,
            ..Default::default()
        })),
        dynamic_metadata,
    }
}

/// A claim as a header value: strings, numbers and booleans as they are, arrays of those
/// joined with commas; nothing for other shapes or values with control characters.
fn header_value(claim: &Json) -> Option<String> {
    let scalar = |value: &Json| match value {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let value = match claim {
        Json::Array(items) => items
            .iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()?
            .join(","),
        other => scalar(other)?,
    };
    let printable = value.chars().all(|c| !c.is_control());
    (printable && !value.is_empty() && value.len() <= MAX_CLAIM_HEADER_BYTES).then_some(value)
}

fn json_object(map: &serde_json::Map<String, Json>) -> Struct {
    Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), json_value(v)))
            .collect(),
    }
}

fn json_value(value: &Json) -> Value {
    let kind = match value {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(json_value).collect(),
        }),
        Json::Object(map) => Kind::StructValue(json_object(map)),
    };
    Value { kind: Some(kind) }
}

/// Builds the `CheckResponse` for a refusal.
pub fn denial_response(denial: &Denial, config: &ResponseConfig) -> CheckResponse {
    let realm = &config.realm;
    let (http, code, challenge, error, description) = match denial {
        Denial::NoToken => (
            HttpStatusCode::Unauthorized,
            tonic::Code::Unauthenticated,
            Some(rfc6750::bearer_challenge(realm)),
            "unauthorized",
            "a bearer token is required",
        ),
        // The issuer's keys could not be fetched: not the token's fault, so no challenge
        // that would make the client drop it.
        Denial::InvalidToken(TokenError::KeysUnavailable) => (
            HttpStatusCode::ServiceUnavailable,
            tonic::Code::Unavailable,
            None,
            "temporarily_unavailable",
            "the issuer's keys are unavailable; retry later",
        ),
        // More than one token: the request is at fault, not a token (RFC 6750 §3.1).
        Denial::InvalidToken(TokenError::MultipleTokens) => (
            HttpStatusCode::BadRequest,
            tonic::Code::InvalidArgument,
            Some(format!(
                "Bearer realm=\"{realm}\", error=\"invalid_request\", error_description=\"{}\"",
                TokenError::MultipleTokens.description()
            )),
            "invalid_request",
            TokenError::MultipleTokens.description(),
        ),
        Denial::InvalidToken(error) => invalid_token(realm, error.description()),
        Denial::Revoked(..) => invalid_token(realm, rfc6750::REVOKED),
        Denial::Unavailable => (
            HttpStatusCode::ServiceUnavailable,
            tonic::Code::Unavailable,
            None,
            "temporarily_unavailable",
            rfc6750::UNAVAILABLE,
        ),
        Denial::LogoutFailed => (
            HttpStatusCode::ServiceUnavailable,
            tonic::Code::Unavailable,
            None,
            "temporarily_unavailable",
            "the logout could not be recorded; retry later",
        ),
    };
    let mut headers = vec![
        header(
            "content-type",
            "application/json".to_owned(),
            HeaderAppendAction::OverwriteIfExistsOrAdd,
        ),
        header(
            "cache-control",
            "no-store".to_owned(),
            HeaderAppendAction::OverwriteIfExistsOrAdd,
        ),
    ];
    if let Some(challenge) = challenge {
        headers.push(header(
            "www-authenticate",
            challenge,
            HeaderAppendAction::OverwriteIfExistsOrAdd,
        ));
    }
    let body = rfc6750::error_body(error, description);
    CheckResponse {
        status: rpc_status(code, description),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: http.into() }),
            headers,
            body,
        })),
        dynamic_metadata: None,
    }
}

fn invalid_token(
    realm: &str,
    description: &'static str,
) -> (
    HttpStatusCode,
    tonic::Code,
    Option<String>,
    &'static str,
    &'static str,
) {
    (
        HttpStatusCode::Unauthorized,
        tonic::Code::Unauthenticated,
        Some(rfc6750::invalid_token_challenge(realm, description)),
        "invalid_token",
        description,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::RevocationKind;
    use crate::token::{Claims, TokenError, VerifiedToken};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn config() -> ResponseConfig {
        ResponseConfig {
            realm: "mesh".to_owned(),
            strip_headers: vec!["authorization".to_owned()],
            strip_sources: None,
            claim_headers: BTreeMap::from([
                ("sub".to_owned(), "x-jwt-sub".to_owned()),
                ("email".to_owned(), "x-jwt-email".to_owned()),
                ("roles".to_owned(), "x-jwt-roles".to_owned()),
                ("name".to_owned(), "x-jwt-name".to_owned()),
            ]),
            dynamic_metadata: MetadataClaims::All,
        }
    }

    fn token() -> Arc<VerifiedToken> {
        let all = serde_json::json!({
            "iss": "https://idp", "sub": "alice", "aud": "api", "exp": 2_000_000_000u64,
            "roles": ["admin", "dev"], "name": "evil\r\nx-injected: 1",
        });
        let serde_json::Value::Object(all) = all else {
            panic!("object")
        };
        Arc::new(VerifiedToken {
            claims: Claims {
                iss: "https://idp".to_owned(),
                sub: Some("alice".to_owned()),
                aud: vec!["api".to_owned()],
                exp: 2_000_000_000,
                nbf: None,
                iat: None,
                jti: None,
                sid: None,
                client_id: None,
                all,
            },
            token_id: "sha256:00".to_owned(),
            revocable_claims: Vec::new(),
            memo: crate::token::TokenMemo::default(),
        })
    }

    fn denied(response: &CheckResponse) -> &DeniedHttpResponse {
        match &response.http_response {
            Some(HttpResponse::DeniedResponse(denied)) => denied,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    fn header_of<'a>(headers: &'a [HeaderValueOption], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .find(|h| h.key == name)
            .map(|h| h.value.as_str())
    }

    #[test]
    fn no_token_gets_a_bare_bearer_challenge() {
        let response = denial_response(&Denial::NoToken, &config());
        assert_eq!(response.status.as_ref().map(|s| s.code), Some(16));
        let denied = denied(&response);
        assert_eq!(denied.status.as_ref().map(|s| s.code), Some(401));
        assert_eq!(
            header_of(&denied.headers, "www-authenticate"),
            Some("Bearer realm=\"mesh\"")
        );
        assert_eq!(
            header_of(&denied.headers, "cache-control"),
            Some("no-store")
        );
        let body: serde_json::Value = serde_json::from_str(&denied.body).expect("json body");
        assert_eq!(body["error"], "unauthorized");
    }

    #[test]
    fn bad_and_revoked_tokens_get_invalid_token() {
        for (denial, description) in [
            (
                Denial::InvalidToken(TokenError::Expired),
                TokenError::Expired.description(),
            ),
            (
                Denial::Revoked(RevocationKind::Session, token()),
                "the token has been revoked",
            ),
        ] {
            let response = denial_response(&denial, &config());
            assert_eq!(response.status.as_ref().map(|s| s.code), Some(16));
            let denied = denied(&response);
            assert_eq!(denied.status.as_ref().map(|s| s.code), Some(401));
            assert_eq!(
                header_of(&denied.headers, "www-authenticate"),
                Some(
                    format!(
                        "Bearer realm=\"mesh\", error=\"invalid_token\", error_description=\"{description}\""
                    )
                    .as_str()
                )
            );
            let body: serde_json::Value = serde_json::from_str(&denied.body).expect("json body");
            assert_eq!(body["error"], "invalid_token");
            assert_eq!(body["error_description"], description);
        }
    }

    #[test]
    fn more_than_one_token_is_a_bad_request() {
        let response =
            denial_response(&Denial::InvalidToken(TokenError::MultipleTokens), &config());
        assert_eq!(
            response.status.as_ref().map(|s| s.code),
            Some(tonic::Code::InvalidArgument as i32)
        );
        let denied = denied(&response);
        assert_eq!(denied.status.as_ref().map(|s| s.code), Some(400));
        assert_eq!(
            header_of(&denied.headers, "www-authenticate"),
            Some(
                "Bearer realm=\"mesh\", error=\"invalid_request\", \
                 error_description=\"the request carries more than one token\""
            )
        );
        let body: serde_json::Value = serde_json::from_str(&denied.body).expect("json body");
        assert_eq!(body["error"], "invalid_request");
    }

    #[test]
    fn unavailable_revocations_or_keys_answer_503_without_a_challenge() {
        for denial in [
            Denial::Unavailable,
            Denial::InvalidToken(TokenError::KeysUnavailable),
        ] {
            let response = denial_response(&denial, &config());
            assert_eq!(response.status.as_ref().map(|s| s.code), Some(14));
            let denied = denied(&response);
            assert_eq!(denied.status.as_ref().map(|s| s.code), Some(503));
            assert_eq!(header_of(&denied.headers, "www-authenticate"), None);
        }
    }

    #[test]
    fn allow_sets_claim_headers_removes_unset_ones_and_carries_claims() {
        let encoded = encoded_allow(&token(), &config(), 1);
        let response = CheckResponse::decode(encoded).expect("a CheckResponse");
        assert_eq!(response.status.as_ref().map(|s| s.code), Some(0));
        let Some(HttpResponse::OkResponse(ok)) = &response.http_response else {
            panic!("expected OkResponse");
        };
        assert_eq!(header_of(&ok.headers, "x-jwt-sub"), Some("alice"));
        assert_eq!(header_of(&ok.headers, "x-jwt-roles"), Some("admin,dev"));
        let sub = ok
            .headers
            .iter()
            .find(|h| h.header.as_ref().is_some_and(|h| h.key == "x-jwt-sub"))
            .expect("x-jwt-sub");
        assert_eq!(
            sub.append_action,
            i32::from(HeaderAppendAction::OverwriteIfExistsOrAdd)
        );
        // Absent claims and values with control characters are removed, never forwarded.
        assert_eq!(header_of(&ok.headers, "x-jwt-email"), None);
        assert_eq!(header_of(&ok.headers, "x-jwt-name"), None);
        for name in ["x-jwt-email", "x-jwt-name", "authorization"] {
            assert!(ok.headers_to_remove.iter().any(|h| h == name), "{name}");
        }
        let metadata = response.dynamic_metadata.expect("metadata");
        let Some(Kind::StructValue(claims)) = metadata
            .fields
            .get(METADATA_CLAIMS_KEY)
            .and_then(|v| v.kind.clone())
        else {
            panic!("claims struct");
        };
        assert_eq!(
            claims.fields.get("sub").and_then(|v| v.kind.clone()),
            Some(Kind::StringValue("alice".to_owned()))
        );
    }

    #[test]
    fn allow_carries_only_listed_claims_and_no_metadata_by_default() {
        let claims_in = |dynamic_metadata: MetadataClaims| {
            let config = ResponseConfig {
                dynamic_metadata,
                ..config()
            };
            let response = CheckResponse::decode(encoded_allow(&token(), &config, 2)).expect("ok");
            response.dynamic_metadata.map(|metadata| {
                let Some(Kind::StructValue(claims)) = metadata
                    .fields
                    .get(METADATA_CLAIMS_KEY)
                    .and_then(|v| v.kind.clone())
                else {
                    panic!("claims struct");
                };
                let mut names: Vec<String> = claims.fields.into_keys().collect();
                names.sort();
                names
            })
        };
        assert_eq!(claims_in(MetadataClaims::None), None);
        let listed = MetadataClaims::Only(vec![
            "roles".to_owned(),
            "scope".to_owned(),
            "sub".to_owned(),
        ]);
        assert_eq!(
            claims_in(listed),
            Some(vec!["roles".to_owned(), "sub".to_owned()])
        );
        assert_eq!(
            claims_in(MetadataClaims::Only(vec!["scope".to_owned()])),
            None
        );
        assert_eq!(
            claims_in(MetadataClaims::All).map(|names| names.len()),
            Some(6)
        );
    }
}
