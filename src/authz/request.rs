//! The parts of Envoy's `CheckRequest` that Check reads — the HTTP method, path and headers —
//! decoded straight from the wire without copying.
//!
//! Envoy sends every request attribute it has (peers, all headers, TLS details, metadata);
//! decoding all of that into owned strings, as a generic `CheckRequest` would, costs more
//! than the whole decision for a cached token. These messages declare only the fields Check
//! uses, with the same tags as `envoy.service.auth.v3.AttributeContext`; prost skips the
//! others, and string fields are decoded as `Bytes` slices of the received frame.

use crate::token::HeaderSource;
use bytes::Bytes;
use std::borrow::Cow;
use std::collections::HashMap;

/// `envoy.service.auth.v3.CheckRequest`, as far as Check reads it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckRequestView {
    /// `attributes`.
    #[prost(message, optional, tag = "1")]
    attributes: Option<AttributesView>,
}

/// `AttributeContext`: only `request`.
#[derive(Clone, PartialEq, prost::Message)]
struct AttributesView {
    #[prost(message, optional, tag = "4")]
    request: Option<RequestView>,
}

/// `AttributeContext.Request`: only `http`.
#[derive(Clone, PartialEq, prost::Message)]
struct RequestView {
    #[prost(message, optional, tag = "2")]
    http: Option<HttpView>,
}

/// `AttributeContext.HttpRequest`: `method`, `headers`, `path` and `header_map`.
#[derive(Clone, PartialEq, prost::Message)]
struct HttpView {
    #[prost(bytes = "bytes", tag = "2")]
    method: Bytes,
    /// `map<string, string> headers`: on the wire, repeated key/value entries.
    #[prost(message, repeated, tag = "3")]
    headers: Vec<HeaderEntry>,
    #[prost(bytes = "bytes", tag = "4")]
    path: Bytes,
    /// Set instead of `headers` when Envoy's `encode_raw_headers` is on.
    #[prost(message, optional, tag = "13")]
    header_map: Option<HeaderMapView>,
}

/// One entry of the `headers` map (`key` = 1, `value` = 2), or one
/// `envoy.config.core.v3.HeaderValue` (`key` = 1, `value` = 2, `raw_value` = 3).
#[derive(Clone, PartialEq, prost::Message)]
struct HeaderEntry {
    #[prost(bytes = "bytes", tag = "1")]
    key: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    value: Bytes,
    #[prost(bytes = "bytes", tag = "3")]
    raw_value: Bytes,
}

/// `envoy.config.core.v3.HeaderMap`.
#[derive(Clone, PartialEq, prost::Message)]
struct HeaderMapView {
    #[prost(message, repeated, tag = "1")]
    headers: Vec<HeaderEntry>,
}

/// A request as Check sees it: method, path and headers (names lowercase, values UTF-8).
#[derive(Debug, Clone, Default)]
pub struct CheckedRequest {
    method: Bytes,
    path: Bytes,
    headers: RequestHeaders,
}

impl CheckedRequest {
    /// The request's method (bytes that are not UTF-8 read as U+FFFD).
    pub fn method(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.method)
    }

    /// The request's path with its query string (bytes that are not UTF-8 read as U+FFFD,
    /// so that stray bytes in the query cannot hide the path from a logout route).
    pub fn path(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.path)
    }

    /// The request's headers.
    pub fn headers(&self) -> &RequestHeaders {
        &self.headers
    }
}

/// The request's headers, and its query string (for the RFC 6750 `access_token` parameter).
impl HeaderSource for CheckedRequest {
    fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers.headers()
    }

    fn query(&self) -> Option<Cow<'_, str>> {
        let (_, query) = self
            .path
            .split_at(self.path.iter().position(|b| *b == b'?')? + 1);
        Some(String::from_utf8_lossy(query))
    }
}

impl From<CheckRequestView> for CheckedRequest {
    fn from(view: CheckRequestView) -> Self {
        let Some(http) = view
            .attributes
            .and_then(|attributes| attributes.request)
            .and_then(|request| request.http)
        else {
            return Self::default();
        };
        let headers = match http.header_map {
            Some(map) if http.headers.is_empty() => RequestHeaders::from_header_map(map.headers),
            _ => RequestHeaders::from_map_entries(http.headers),
        };
        Self {
            method: http.method,
            path: http.path,
            headers,
        }
    }
}

/// A request's headers: lowercase names, values valid UTF-8, repeated `header_map` entries
/// joined as Envoy joins them (`cookie` with `; `, others with `,`). The `headers` map has
/// each name once; should a name repeat anyway, every entry is kept, so that token
/// extraction sees each copy. Read by a scan: Envoy sends at most about a hundred headers.
#[derive(Debug, Clone, Default)]
pub struct RequestHeaders {
    entries: Vec<HeaderEntry>,
}

impl RequestHeaders {
    /// Headers from `(name, value)` pairs, as Envoy's `headers` map would carry them (names
    /// are lowercased; a repeated name is kept as given).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self::from_map_entries(
            pairs
                .into_iter()
                .map(|(key, value)| HeaderEntry {
                    key: Bytes::copy_from_slice(key.as_bytes()),
                    value: Bytes::copy_from_slice(value.as_bytes()),
                    raw_value: Bytes::new(),
                })
                .collect(),
        )
    }

    /// From the `headers` map, whose names Envoy sends lowercase and once each: the entries
    /// are kept as decoded, normalized in place.
    fn from_map_entries(mut entries: Vec<HeaderEntry>) -> Self {
        for entry in &mut entries {
            lowercase(&mut entry.key);
            utf8(&mut entry.value);
        }
        Self { entries }
    }

    /// From `header_map`: a name may repeat (joined here as Envoy joins the `headers` map
    /// and its own header map: `cookie` with `; ` — RFC 9113 §8.2.3, RFC 6265 §4.2.1 — others
    /// with `,`), and a value may come as `raw_value` bytes. Linear in the number of
    /// entries, however many a hostile caller sends.
    fn from_header_map(entries: Vec<HeaderEntry>) -> Self {
        let mut index: HashMap<Bytes, usize> = HashMap::with_capacity(entries.len());
        let mut values: Vec<(Bytes, Vec<Bytes>)> = Vec::with_capacity(entries.len());
        for mut entry in entries {
            lowercase(&mut entry.key);
            let value = if entry.raw_value.is_empty() {
                entry.value
            } else {
                entry.raw_value
            };
            match index.get(&entry.key) {
                Some(&at) => values[at].1.push(value),
                None => {
                    index.insert(entry.key.clone(), values.len());
                    values.push((entry.key, vec![value]));
                }
            }
        }
        let entries = values
            .into_iter()
            .map(|(key, mut parts)| {
                let mut value = if parts.len() == 1 {
                    parts.swap_remove(0)
                } else if key == "cookie" {
                    Bytes::from(parts.join(&b"; "[..]))
                } else {
                    Bytes::from(parts.join(&b","[..]))
                };
                utf8(&mut value);
                HeaderEntry {
                    key,
                    value,
                    raw_value: Bytes::new(),
                }
            })
            .collect();
        Self { entries }
    }
}

impl HeaderSource for RequestHeaders {
    fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        // Names and values are UTF-8 once normalized; an entry that is not is skipped.
        self.entries.iter().filter_map(|entry| {
            Some((
                std::str::from_utf8(&entry.key).ok()?,
                std::str::from_utf8(&entry.value).ok()?,
            ))
        })
    }
}

/// Lowercases an ASCII header name (copying it only when it is not lowercase already).
fn lowercase(name: &mut Bytes) {
    if name.iter().any(u8::is_ascii_uppercase) {
        *name = Bytes::from(name.to_ascii_lowercase());
    }
}

/// Keeps `value` if it is UTF-8, else replaces it with its lossy conversion (invalid
/// sequences become U+FFFD), so that a lookup always finds a string.
fn utf8(value: &mut Bytes) {
    if std::str::from_utf8(value).is_err() {
        *value = Bytes::from(String::from_utf8_lossy(value).into_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
    use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
        HttpRequest, Peer, Request,
    };
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
    use prost::Message;
    use std::collections::HashMap;

    /// Encodes a full `CheckRequest` as Envoy would, and decodes it as Check does.
    fn decode(http: HttpRequest) -> CheckedRequest {
        let request = CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(Peer {
                    principal: "spiffe://mesh/ns/default/sa/web".to_owned(),
                    ..Peer::default()
                }),
                request: Some(Request {
                    http: Some(http),
                    ..Request::default()
                }),
                context_extensions: HashMap::from([("k".to_owned(), "v".to_owned())]),
                ..AttributeContext::default()
            }),
        };
        let bytes = Bytes::from(request.encode_to_vec());
        CheckRequestView::decode(bytes).expect("decodes").into()
    }

    #[test]
    fn reads_method_path_and_the_headers_map() {
        let request = decode(HttpRequest {
            method: "POST".to_owned(),
            path: "/logout?next=/".to_owned(),
            host: "api.example.com".to_owned(),
            headers: HashMap::from([
                ("authorization".to_owned(), "Bearer abc".to_owned()),
                ("cookie".to_owned(), "a=1; b=2".to_owned()),
            ]),
            ..HttpRequest::default()
        });
        assert_eq!(request.method(), "POST");
        assert_eq!(request.path(), "/logout?next=/");
        assert_eq!(
            request.headers().header("authorization"),
            Some("Bearer abc")
        );
        assert_eq!(request.headers().header("cookie"), Some("a=1; b=2"));
        assert_eq!(request.headers().header("host"), None);
    }

    #[test]
    fn reads_the_raw_header_map_joining_repeats_and_lowercasing_names() {
        #[allow(deprecated)]
        let value = |key: &str, value: &str, raw: &[u8]| HeaderValue {
            key: key.to_owned(),
            value: value.to_owned(),
            raw_value: raw.to_vec(),
        };
        let request = decode(HttpRequest {
            header_map: Some(HeaderMap {
                headers: vec![
                    value("Authorization", "", b"Bearer abc"),
                    value("cookie", "a=1", b""),
                    value("Cookie", "", b"b=2"),
                    value("x-bin", "", b"\xff\xfe"),
                ],
            }),
            ..HttpRequest::default()
        });
        let headers = request.headers();
        assert_eq!(headers.header("authorization"), Some("Bearer abc"));
        assert_eq!(headers.header("cookie"), Some("a=1; b=2"));
        assert_eq!(headers.header("x-bin"), Some("\u{fffd}\u{fffd}"));
    }

    #[test]
    fn every_copy_of_a_token_reaches_extraction() {
        use crate::config::TokenSources;
        use crate::token::{TokenError, extract_token};
        let sources = TokenSources {
            header: None,
            cookie: Some("access_token".to_owned()),
        };
        #[allow(deprecated)]
        let value = |key: &str, value: &str| HeaderValue {
            key: key.to_owned(),
            value: value.to_owned(),
            raw_value: Vec::new(),
        };
        for pairs in [
            [
                ("Authorization", "Bearer aaa"),
                ("authorization", "Bearer bbb"),
            ],
            [
                ("cookie", "access_token=aaa"),
                ("Cookie", "access_token=bbb"),
            ],
            [
                ("authorization", "Bearer aaa"),
                ("cookie", "x=1,access_token=bbb"),
            ],
        ] {
            let request = decode(HttpRequest {
                header_map: Some(HeaderMap {
                    headers: pairs.iter().map(|(k, v)| value(k, v)).collect(),
                }),
                ..HttpRequest::default()
            });
            assert_eq!(
                extract_token(request.headers(), &sources, 1024),
                Err(TokenError::MultipleTokens),
                "{pairs:?}"
            );
        }
        // A `headers` map entry repeated on the wire (Envoy never does) is seen twice too.
        let headers = RequestHeaders::from_pairs([
            ("authorization", "Bearer aaa"),
            ("authorization", "Bearer bbb"),
        ]);
        assert_eq!(
            extract_token(&headers, &sources, 1024),
            Err(TokenError::MultipleTokens)
        );
    }

    #[test]
    fn the_headers_map_wins_over_the_header_map() {
        let request = decode(HttpRequest {
            headers: HashMap::from([("authorization".to_owned(), "Bearer map".to_owned())]),
            header_map: Some(HeaderMap {
                headers: vec![HeaderValue {
                    key: "authorization".to_owned(),
                    value: "Bearer raw".to_owned(),
                    ..HeaderValue::default()
                }],
            }),
            ..HttpRequest::default()
        });
        assert_eq!(
            request.headers().header("authorization"),
            Some("Bearer map")
        );
    }

    #[test]
    fn a_request_without_http_attributes_has_no_headers() {
        let request: CheckedRequest = CheckRequestView::decode(Bytes::new())
            .expect("empty message")
            .into();
        assert_eq!(request.method(), "");
        assert_eq!(request.path(), "");
        assert_eq!(request.headers().header("authorization"), None);
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        for bytes in [
            &b"\x0a\xff\xff\xff\xff\x0f"[..],
            b"\x0a\x05\x22\x10",
            b"\xff",
        ] {
            assert!(CheckRequestView::decode(Bytes::copy_from_slice(bytes)).is_err());
        }
    }

    #[test]
    fn a_header_value_that_is_not_utf8_is_read_lossily() {
        let headers = RequestHeaders::from_map_entries(vec![HeaderEntry {
            key: Bytes::from_static(b"Cookie"),
            value: Bytes::from_static(b"a=\xff; token=abc"),
            raw_value: Bytes::new(),
        }]);
        assert_eq!(headers.header("cookie"), Some("a=\u{fffd}; token=abc"));
    }

    #[test]
    fn a_path_with_bytes_that_are_not_utf8_keeps_its_readable_part() {
        let http = HttpView {
            method: Bytes::from_static(b"POST"),
            path: Bytes::from_static(b"/logout?next=\xff"),
            ..HttpView::default()
        };
        let view = CheckRequestView {
            attributes: Some(AttributesView {
                request: Some(RequestView { http: Some(http) }),
            }),
        };
        let request = CheckedRequest::from(view);
        assert_eq!(request.path(), "/logout?next=\u{fffd}");
        assert_eq!(request.method(), "POST");
    }

    #[test]
    fn a_header_map_with_many_entries_is_read_in_linear_time() {
        let entries: Vec<HeaderEntry> = (0..200_000)
            .map(|i| HeaderEntry {
                key: Bytes::from(format!("x-{}", i % 50_000)),
                value: Bytes::from_static(b"v"),
                raw_value: Bytes::new(),
            })
            .collect();
        let headers = RequestHeaders::from_header_map(entries);
        assert_eq!(headers.entries.len(), 50_000);
        assert_eq!(headers.header("x-7"), Some("v,v,v,v"));
    }

    #[test]
    fn from_pairs_lowercases_and_keeps_the_first_value() {
        let headers = RequestHeaders::from_pairs([("X-A", "1"), ("x-a", "2")]);
        assert_eq!(headers.header("x-a"), Some("1"));
    }
}
