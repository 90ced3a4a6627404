//! With `response.strip_authorization`, every copy of the token leaves the request before it
//! goes upstream, not only `authorization` and `token.header` (which every allow response
//! removes): other spellings of `token.header` (`x_access_token` for `x-access-token`) are
//! removed, `cookie` is rewritten without the token cookie (under any name a framework reads
//! as it), keeping the others, and an RFC 6750 `access_token` query parameter is removed
//! (under each name it appears as: `Access_Token`, `access.token`, `access%5Ftoken`, …).
//!
//! These depend on the request, while the allow response is encoded once per token and
//! cached; so they are encoded apart, as a `CheckResponse` holding only these header
//! changes, and appended to it. Protocol Buffers merge a message that appears twice (its
//! repeated fields concatenated), so Envoy reads one `OkHttpResponse` with both parts.

use super::response::header;
use crate::config::TokenSources;
use crate::token::HeaderSource;
use crate::token::extract::{cookie_without, header_spellings, query_copies};
use bytes::{Bytes, BytesMut};
use envoy_types::ext_authz::v3::pb::{
    CheckResponse, HeaderAppendAction, HttpResponse, OkHttpResponse,
};
use prost::Message;

/// The request-specific part of an allow response that strips `sources` from `headers`, or
/// `None` when the request holds nothing more to strip.
pub fn stripped_sources(
    headers: &(impl HeaderSource + ?Sized),
    sources: &TokenSources,
) -> Option<Bytes> {
    let mut headers_to_remove: Vec<String> = sources
        .header
        .as_deref()
        .map(|configured| {
            header_spellings(headers, configured)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut headers_to_set = Vec::new();
    if let Some(name) = &sources.cookie {
        let mut cookies = headers.headers().filter(|(header, _)| *header == "cookie");
        // Envoy sends one `cookie` value; should there be several, they are one header.
        let cookie = match (cookies.next(), cookies.next()) {
            (None, _) => None,
            (Some((_, only)), None) => cookie_without(only, name),
            (Some((_, first)), Some((_, second))) => {
                let mut all = vec![first, second];
                all.extend(cookies.map(|(_, value)| value));
                cookie_without(&all.join("; "), name)
            }
        };
        match cookie {
            Some(rest) if rest.is_empty() => headers_to_remove.push("cookie".to_owned()),
            Some(rest) => headers_to_set.push(header(
                "cookie",
                rest,
                HeaderAppendAction::OverwriteIfExistsOrAdd,
            )),
            None => {}
        }
    }
    // Envoy removes query parameters by their names as they appear in the query (it does not
    // decode them): so each name under which a copy was found, not `access_token`.
    let mut query_parameters_to_remove: Vec<String> = Vec::new();
    if let Some(query) = headers.query() {
        for (name, _) in query_copies(&query) {
            if !query_parameters_to_remove.iter().any(|known| known == name) {
                query_parameters_to_remove.push(name.to_owned());
            }
        }
    }
    if headers_to_remove.is_empty()
        && headers_to_set.is_empty()
        && query_parameters_to_remove.is_empty()
    {
        return None;
    }
    let part = CheckResponse {
        status: None,
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers: headers_to_set,
            headers_to_remove,
            query_parameters_to_remove,
            ..OkHttpResponse::default()
        })),
        dynamic_metadata: None,
    };
    Some(Bytes::from(part.encode_to_vec()))
}

/// The request-specific part of every allow response that removes the other spellings of
/// the configured claim headers (`x_jwt_sub` for `x-jwt-sub`), or `None` when the request
/// has none. The allow overwrites the claim headers themselves; but CGI-style servers
/// (WSGI, Rack, PHP) read `x-jwt-sub` and `x_jwt_sub` as one variable, so a client-sent
/// `x_jwt_sub: victim` could otherwise reach the application as the verified subject.
pub fn forged_claim_spellings<'a>(
    headers: &(impl HeaderSource + ?Sized),
    claim_headers: impl IntoIterator<Item = &'a String>,
) -> Option<Bytes> {
    let mut headers_to_remove: Vec<String> = Vec::new();
    for configured in claim_headers {
        for name in header_spellings(headers, configured) {
            if !headers_to_remove.iter().any(|known| known == name) {
                headers_to_remove.push(name.to_owned());
            }
        }
    }
    if headers_to_remove.is_empty() {
        return None;
    }
    let part = CheckResponse {
        status: None,
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers_to_remove,
            ..OkHttpResponse::default()
        })),
        dynamic_metadata: None,
    };
    Some(Bytes::from(part.encode_to_vec()))
}

/// `allow` (an encoded allow response) with `part` appended, when there is one.
pub fn with_part(allow: Bytes, part: Option<Bytes>) -> Bytes {
    match part {
        None => allow,
        Some(part) => {
            let mut both = BytesMut::with_capacity(allow.len() + part.len());
            both.extend_from_slice(&allow);
            both.extend_from_slice(&part);
            both.freeze()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::response::encoded_allow;
    use crate::config::ResponseConfig;
    use crate::token::{Claims, TokenMemo, VerifiedToken};
    use envoy_types::ext_authz::v3::pb::HeaderValueOption;
    use std::collections::BTreeMap;

    fn sources() -> TokenSources {
        TokenSources {
            header: Some("x-access-token".to_owned()),
            cookie: Some("access_token".to_owned()),
        }
    }

    fn allow() -> Bytes {
        let all = serde_json::json!({"iss": "i", "sub": "alice", "aud": "api", "exp": 1});
        let serde_json::Value::Object(all) = all else {
            panic!("object")
        };
        let token = VerifiedToken {
            claims: Claims {
                iss: "i".to_owned(),
                sub: Some("alice".to_owned()),
                aud: vec!["api".to_owned()],
                exp: 1,
                nbf: None,
                iat: None,
                jti: None,
                sid: None,
                client_id: None,
                all,
            },
            token_id: "t".to_owned(),
            revocable_claims: Vec::new(),
            memo: TokenMemo::default(),
        };
        let config = ResponseConfig {
            realm: "r".to_owned(),
            strip_headers: vec!["authorization".to_owned(), "x-access-token".to_owned()],
            strip_sources: Some(sources()),
            claim_headers: BTreeMap::from([("sub".to_owned(), "x-jwt-sub".to_owned())]),
            dynamic_metadata: crate::config::MetadataClaims::All,
        };
        encoded_allow(&token, &config, 1)
    }

    fn ok_response(bytes: Bytes) -> (CheckResponse, OkHttpResponse) {
        let response = CheckResponse::decode(bytes).expect("a CheckResponse");
        let Some(HttpResponse::OkResponse(ok)) = response.http_response.clone() else {
            panic!("an OkHttpResponse");
        };
        (response, ok)
    }

    fn set(headers: &[HeaderValueOption]) -> Vec<(String, String)> {
        headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect()
    }

    #[test]
    fn the_token_cookie_and_other_spellings_are_stripped_and_the_allow_kept() {
        let pairs: &[(&str, &str)] = &[
            ("cookie", "theme=dark; access_token=T; lang=en"),
            ("x_access_token", "T"),
            ("authorization", "Bearer T"),
        ];
        let part = stripped_sources(pairs, &sources());
        assert!(part.is_some());
        let (response, ok) = ok_response(with_part(allow(), part));
        // The cached allow is intact: status, claim header, metadata, static removals.
        assert_eq!(response.status.map(|s| s.code), Some(0));
        assert!(response.dynamic_metadata.is_some());
        assert_eq!(
            set(&ok.headers),
            [
                ("x-jwt-sub".to_owned(), "alice".to_owned()),
                ("cookie".to_owned(), "theme=dark; lang=en".to_owned())
            ]
        );
        assert_eq!(
            ok.headers_to_remove,
            ["authorization", "x-access-token", "x_access_token"]
        );
    }

    #[test]
    fn other_spellings_of_claim_headers_are_removed_from_every_allow() {
        let claim_headers = [("x-jwt-sub".to_owned()), ("x-jwt-email".to_owned())];
        let pairs: &[(&str, &str)] = &[
            ("x_jwt_sub", "victim"),
            ("x-jwt_email", "victim@example.com"),
            ("x-jwt-sub", "whatever the client sent"),
            ("x_other", "kept"),
        ];
        let part = forged_claim_spellings(pairs, &claim_headers);
        let (_, ok) = ok_response(with_part(allow(), part));
        assert_eq!(
            ok.headers_to_remove,
            [
                "authorization",
                "x-access-token",
                "x_jwt_sub",
                "x-jwt_email"
            ]
        );
        // The claim header itself is overwritten by the allow with the verified value.
        assert_eq!(
            set(&ok.headers),
            [("x-jwt-sub".to_owned(), "alice".to_owned())]
        );
        let clean: &[(&str, &str)] = &[("x-jwt-sub", "x"), ("accept", "*/*")];
        assert_eq!(forged_claim_spellings(clean, &claim_headers), None);
    }

    #[test]
    fn a_cookie_header_holding_only_the_token_is_removed() {
        let pairs: &[(&str, &str)] = &[("cookie", "access_token=T")];
        let (_, ok) = ok_response(with_part(allow(), stripped_sources(pairs, &sources())));
        assert!(ok.headers_to_remove.iter().any(|h| h == "cookie"));
        assert!(!set(&ok.headers).iter().any(|(k, _)| k == "cookie"));
    }

    /// Headers and a query string.
    struct WithQuery<'a>(&'a [(&'a str, &'a str)], &'a str);

    impl HeaderSource for WithQuery<'_> {
        fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
            self.0.iter().map(|(name, value)| (*name, *value))
        }

        fn query(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(std::borrow::Cow::Borrowed(self.1))
        }
    }

    #[test]
    fn query_copies_are_removed_under_the_names_they_appear_as() {
        let request = WithQuery(
            &[("authorization", "Bearer T")],
            "x=1&Access_Token=T&access%5Ftoken=T&access.token=T&Access_Token=T&y=2",
        );
        let (_, ok) = ok_response(with_part(allow(), stripped_sources(&request, &sources())));
        assert_eq!(
            ok.query_parameters_to_remove,
            ["Access_Token", "access%5Ftoken", "access.token"]
        );
        let plain = WithQuery(&[], "access_token=T");
        let (_, ok) = ok_response(with_part(allow(), stripped_sources(&plain, &sources())));
        assert_eq!(ok.query_parameters_to_remove, ["access_token"]);
        let none = WithQuery(&[], "x=1&access_token=&token=T");
        assert_eq!(stripped_sources(&none, &sources()), None);
    }

    #[test]
    fn cookies_that_frameworks_read_as_the_token_cookie_are_stripped() {
        let pairs: &[(&str, &str)] = &[("cookie", "a=1; access.token=T; access_token=T; b=2")];
        let (_, ok) = ok_response(with_part(allow(), stripped_sources(pairs, &sources())));
        assert_eq!(
            set(&ok.headers),
            [
                ("x-jwt-sub".to_owned(), "alice".to_owned()),
                ("cookie".to_owned(), "a=1; b=2".to_owned())
            ]
        );
    }

    #[test]
    fn nothing_more_to_strip_adds_nothing() {
        let pairs: &[(&str, &str)] = &[
            ("cookie", "theme=dark"),
            ("authorization", "Bearer T"),
            ("x-access-token", "T"),
        ];
        assert_eq!(stripped_sources(pairs, &sources()), None);
        assert_eq!(stripped_sources(pairs, &TokenSources::default()), None);
        let allow = allow();
        assert_eq!(with_part(allow.clone(), None), allow);
    }
}
