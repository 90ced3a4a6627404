//! Finding the bearer token in a request's headers — `Authorization: Bearer`, the configured
//! header, the configured cookie — under one rule: one request, one token.
//!
//! Every copy of a token that the request carries counts, wherever a parser could find it:
//! each `Bearer` credential of `authorization` (repeated headers arrive joined with `,`;
//! `Bearer` then a tab, or any character that cannot continue a scheme name, is malformed),
//! and without one any JWT in it (`JWT <token>`, `Token token="<token>"`); each value of the
//! configured header (also under its `_`-for-`-` spellings, which CGI-style frameworks read
//! as the same header: copies, never sources); and each cookie of the configured name — by
//! RFC 6265 (`;`-separated pairs, a `,` belongs to the value), and also as a lenient parser
//! would read it (split on `,` too, names compared by [`lenient_name_eq`]). If the copies
//! are not all byte-identical the request is refused ([`TokenError::MultipleTokens`]):
//! whichever copy the application behind Envoy reads (first, last, cookie or header) is then
//! the one that was checked. The token itself is taken only from a strict reading:
//! `Authorization`, the configured header, or a cookie found by RFC 6265. An RFC 6750 §2.3
//! `access_token` query parameter (under any name [`lenient_name_eq`] to it) is never a
//! source, but a copy all the same (some frameworks read it).

use super::TokenError;
use crate::config::TokenSources;
use std::borrow::Cow;

/// The URI query parameter of RFC 6750 §2.3. Never a token source here, but a copy that an
/// application may read: it must equal the token, and is stripped with the others.
pub const QUERY_PARAMETER: &str = "access_token";

/// A request's headers: (lowercase name, value) pairs. A name may come more than once, or
/// with repeated values joined with `,` (as in Envoy's ext_authz `headers` map); both are
/// read the same way. And, when known, its query string.
pub trait HeaderSource {
    /// Every header, in any order.
    fn headers(&self) -> impl Iterator<Item = (&str, &str)>;

    /// The query string (after `?`, without it), when the source knows the request's path.
    fn query(&self) -> Option<Cow<'_, str>> {
        None
    }

    /// The first value of header `name` (lowercase), if present.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers()
            .find(|(header, _)| *header == name)
            .map(|(_, value)| value)
    }
}

#[cfg(test)]
impl HeaderSource for std::collections::HashMap<String, String> {
    fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }
}

impl HeaderSource for [(&str, &str)] {
    fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter().map(|(name, value)| (*name, *value))
    }
}

/// Finds the one bearer token of a request (see the module documentation for the rule; an
/// RFC 6750 `access_token` query parameter, when the source knows the query, is a copy to
/// compare, never the token).
///
/// `Authorization` holds `Bearer <token>` credentials (scheme case-insensitive, separated
/// from the token by spaces only); one of another scheme (`Basic …`) is no bearer token, but
/// mixed with a `Bearer` one it is [`TokenError::Malformed`], and a JWT in it is a copy. The configured header holds raw tokens or `Bearer <token>`.
/// Each token must be a single RFC 6750 `b64token` (else [`TokenError::Malformed`]) of at
/// most `max_bytes` (else [`TokenError::TooLarge`], refused before its characters are
/// examined). Copies that differ are [`TokenError::MultipleTokens`].
///
/// `Ok(None)` means the request carries no token at all.
pub fn extract_token<'a, H: HeaderSource + ?Sized>(
    headers: &'a H,
    sources: &TokenSources,
    max_bytes: usize,
) -> Result<Option<&'a str>, TokenError> {
    let mut copies = Copies::new(max_bytes);
    for (_, value) in headers
        .headers()
        .filter(|(name, _)| *name == "authorization")
    {
        authorization_copies(value, &mut copies)?;
    }
    if let Some(configured) = &sources.header {
        let named = |name: &str| same_header_name(name, configured);
        for (name, value) in headers.headers().filter(|(name, _)| named(name)) {
            header_copies(value, name == configured, &mut copies)?;
        }
    }
    if let Some(cookie) = &sources.cookie {
        for (_, value) in headers.headers().filter(|(name, _)| *name == "cookie") {
            cookie_copies(value, cookie, &mut copies)?;
        }
    }
    if let (Some(first), Some(query)) = (copies.first, headers.query()) {
        let differs = query_copies(&query).any(|(_, copy)| copy != first);
        if differs {
            return Err(TokenError::MultipleTokens);
        }
    }
    Ok(copies.token)
}

/// The `access_token` parameters of a query string with a non-empty value, under every name
/// a framework reads as `access_token` ([`lenient_name_eq`]: `Access_Token`, `access.token`,
/// `access%5Ftoken`, …): each as its name exactly as it appears in the query (what Envoy
/// matches when it removes query parameters: it splits at `&` and the first `=`, and does not
/// decode names) and its value decoded as forms are.
pub fn query_copies(query: &str) -> impl Iterator<Item = (&str, Cow<'_, str>)> {
    query.split('&').filter_map(|pair| {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        if !lenient_name_eq(name, QUERY_PARAMETER) {
            return None;
        }
        let (_, value) = url::form_urlencoded::parse(pair.as_bytes()).next()?;
        (!value.is_empty()).then_some((name, value))
    })
}

/// Whether `name`, a cookie or query parameter name as sent, is one that some framework reads
/// as `expected`: `%XX` and `+` decoded (query names are form-decoded; ASP.NET Core and PHP
/// before 8.1.11 also decode cookie names), leading spaces dropped and the name cut at a
/// decoded NUL (PHP), ASCII letters in any case (ASP.NET Core query and cookie collections),
/// and `.`, ` ` and `[` read as `_` (PHP's `$_COOKIE` and `$_GET` turn `access.token` into
/// `access_token`).
pub fn lenient_name_eq(name: &str, expected: &str) -> bool {
    let fold = |b: u8| match b.to_ascii_lowercase() {
        b'.' | b' ' | b'[' => b'_',
        b => b,
    };
    decoded(name)
        .skip_while(|b| *b == b' ')
        .take_while(|b| *b != 0)
        .map(fold)
        .eq(expected.bytes().map(fold))
}

/// The bytes of `text` with `%XX` and `+` decoded as in a form (a `%` not followed by two hex
/// digits is kept).
fn decoded(text: &str) -> impl Iterator<Item = u8> + '_ {
    let bytes = text.as_bytes();
    let hex = |i: usize| {
        bytes
            .get(i)
            .and_then(|b| char::from(*b).to_digit(16))
            .and_then(|d| u8::try_from(d).ok())
    };
    let mut i = 0;
    std::iter::from_fn(move || {
        let b = *bytes.get(i)?;
        i += 1;
        Some(match b {
            b'+' => b' ',
            b'%' => match (hex(i), hex(i + 1)) {
                (Some(high), Some(low)) => {
                    i += 2;
                    high << 4 | low
                }
                _ => b,
            },
            b => b,
        })
    })
}

/// The token copies seen so far: the first (all others must equal it) and the token, once a
/// copy from a strict reading was seen.
struct Copies<'a> {
    first: Option<&'a str>,
    token: Option<&'a str>,
    max_bytes: usize,
}

impl<'a> Copies<'a> {
    fn new(max_bytes: usize) -> Self {
        Self {
            first: None,
            token: None,
            max_bytes,
        }
    }

    /// A copy from a strict reading: it must be a valid token.
    fn token(&mut self, token: &'a str) -> Result<(), TokenError> {
        let token = single_token(token, self.max_bytes)?;
        self.also(token)?;
        self.token = Some(token);
        Ok(())
    }

    /// A copy that only a lenient parser would find: it must equal the others.
    fn also(&mut self, copy: &'a str) -> Result<(), TokenError> {
        match self.first {
            None => {
                self.first = Some(copy);
                Ok(())
            }
            Some(first) if first == copy => Ok(()),
            Some(_) => Err(TokenError::MultipleTokens),
        }
    }
}

/// The `Bearer` credentials of an `authorization` value (joined repeats split at `,`); or, when
/// it holds none, the JWTs in its credentials of other schemes (`JWT <token>`, `Token
/// token="<token>"`, which Django REST SimpleJWT or Rails read): copies, never the token.
fn authorization_copies<'a>(value: &'a str, copies: &mut Copies<'a>) -> Result<(), TokenError> {
    let elements = || value.split(',').map(trim_ows).filter(|e| !e.is_empty());
    if !elements().any(|element| bearer_scheme(element).is_some()) {
        let runs =
            value.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
        for run in runs.filter(|run| looks_like_jwt(run)) {
            copies.also(run)?;
        }
        return Ok(());
    }
    for element in elements() {
        match bearer_scheme(element) {
            Some(token) => copies.token(token)?,
            None => return Err(TokenError::Malformed),
        }
    }
    Ok(())
}

/// `Bearer <rest>` → `rest` (empty for a bare `Bearer`); another scheme → `None`.
///
/// The scheme name ends at the first character that cannot continue it (not an RFC 9110
/// `tchar`), so `Bearerx` is another scheme but `Bearer<TAB>…` is not. Only spaces separate
/// the scheme from its credential (RFC 7235: `1*SP`); anything else there (a tab, which
/// `split()`-style parsers take for a separator) stays in `rest`, which is then no valid token:
/// the request is refused as malformed rather than read one way here and another upstream.
fn bearer_scheme(element: &str) -> Option<&str> {
    const SCHEME: &str = "bearer";
    let scheme = element.get(..SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let rest = &element[SCHEME.len()..];
    match rest.bytes().next() {
        Some(b' ') => Some(rest.trim_start_matches(' ')),
        Some(b) if is_tchar(b) => None,
        _ => Some(rest),
    }
}

/// Whether `b` may appear in an RFC 9110 `token` (such as an auth-scheme).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `text` has the shape of a compact JWS or JWE: three or five `.`-separated base64url
/// parts, the first (the JOSE header) decoding to a JSON object.
fn looks_like_jwt(text: &str) -> bool {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone),
    );
    let b64url = |part: &str| {
        part.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let header = text.split('.').next().unwrap_or_default();
    matches!(text.split('.').count(), 3 | 5)
        && text.split('.').all(b64url)
        && LENIENT
            .decode(header)
            .is_ok_and(|json| json.trim_ascii_start().starts_with(b"{"))
}

/// The tokens of a configured-header value: each `,`-separated element a raw token or
/// `Bearer <token>`; tokens when the header is the configured one (`strict`), copies to
/// compare when it is another spelling of it.
fn header_copies<'a>(
    value: &'a str,
    strict: bool,
    copies: &mut Copies<'a>,
) -> Result<(), TokenError> {
    for element in value.split(',').map(trim_ows).filter(|e| !e.is_empty()) {
        let token = bearer_scheme(element).unwrap_or(element);
        if strict {
            copies.token(token)?;
        } else {
            copies.also(token)?;
        }
    }
    Ok(())
}

/// The copies of cookie `name` in a `cookie` value: RFC 6265 pairs named exactly `name` are
/// tokens; pieces a lenient parser would read as that cookie (split at `,` too, names compared
/// by [`lenient_name_eq`]) must equal them.
fn cookie_copies<'a>(
    value: &'a str,
    name: &str,
    copies: &mut Copies<'a>,
) -> Result<(), TokenError> {
    for (key, value) in value.split([';', ',']).filter_map(cookie_pair) {
        if lenient_name_eq(key, name) && !value.is_empty() {
            copies.also(value)?;
        }
    }
    for (key, value) in value.split(';').filter_map(cookie_pair) {
        if key == name && !value.is_empty() {
            copies.token(value)?;
        }
    }
    Ok(())
}

/// `name=value` → the trimmed name and the trimmed value without surrounding quotes.
fn cookie_pair(pair: &str) -> Option<(&str, &str)> {
    let (key, value) = pair.split_once('=')?;
    let value = trim_ows(value);
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    Some((trim_ows(key), value))
}

/// Whether header `name` is the configured header `configured`, also when some `-` are
/// spelled `_` or the other way round (CGI, WSGI and nginx map both to the same variable).
fn same_header_name(name: &str, configured: &str) -> bool {
    let fold = |b: u8| if b == b'_' { b'-' } else { b };
    name.len() == configured.len()
        && name
            .bytes()
            .zip(configured.bytes())
            .all(|(a, b)| fold(a) == fold(b))
}

/// The `cookie` value without any pair in which a lenient parser could find cookie `name`
/// (split at `,` too, names compared by [`lenient_name_eq`]), the others kept as sent and
/// joined with `; `; `None` when there is no such pair. Used to keep the token cookie from
/// the application when token sources are stripped.
pub fn cookie_without(value: &str, name: &str) -> Option<String> {
    let holds_token = |pair: &str| {
        pair.split(',')
            .filter_map(cookie_pair)
            .any(|(key, _)| lenient_name_eq(key, name))
    };
    if !value.split(';').any(holds_token) {
        return None;
    }
    let kept: Vec<&str> = value
        .split(';')
        .filter(|pair| !holds_token(pair))
        .map(trim_ows)
        .filter(|pair| !pair.is_empty())
        .collect();
    Some(kept.join("; "))
}

/// The names under which the configured header `configured` appears in `headers` (its
/// `_`/`-` spellings), other than `configured` itself.
pub fn header_spellings<'a, H: HeaderSource + ?Sized>(
    headers: &'a H,
    configured: &'a str,
) -> impl Iterator<Item = &'a str> {
    headers
        .headers()
        .map(|(name, _)| name)
        .filter(move |name| *name != configured && same_header_name(name, configured))
}

/// The characters of an RFC 6750 `b64token` (before its trailing `=`s).
static B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

/// Checks that `token` is one RFC 6750 `b64token` of at most `max_bytes`.
fn single_token(token: &str, max_bytes: usize) -> Result<&str, TokenError> {
    if token.len() > max_bytes {
        return Err(TokenError::TooLarge);
    }
    let body = token.trim_end_matches('=');
    // No early exit, so that the loop vectorizes: tokens are long and on every request.
    let valid = !body.is_empty()
        && body
            .bytes()
            .fold(true, |valid, b| valid & B64TOKEN[usize::from(b)]);
    if valid {
        Ok(token)
    } else {
        Err(TokenError::Malformed)
    }
}

fn trim_ows(value: &str) -> &str {
    value.trim_matches([' ', '\t'])
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJl";
    const OTHER: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ5In0.c2lnbmF0dXJl";

    fn sources() -> TokenSources {
        TokenSources {
            header: Some("x-access-token".to_owned()),
            cookie: Some("access_token".to_owned()),
        }
    }

    /// Extracts from these headers, in this order, repeats kept.
    fn extract(pairs: &[(&str, &str)]) -> Result<Option<String>, TokenError> {
        extract_token(pairs, &sources(), 1024).map(|t| t.map(str::to_owned))
    }

    fn ok(token: &str) -> Result<Option<String>, TokenError> {
        Ok(Some(token.to_owned()))
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let value = format!("{scheme} {JWT}");
            assert_eq!(extract(&[("authorization", &value)]), ok(JWT));
        }
    }

    #[test]
    fn extra_spaces_around_the_token_are_tolerated() {
        let value = format!("  Bearer   {JWT} ");
        assert_eq!(extract(&[("authorization", &value)]), ok(JWT));
    }

    #[test]
    fn no_headers_means_no_token() {
        assert_eq!(extract(&[]), Ok(None));
        assert_eq!(extract(&[("x-other", JWT)]), Ok(None));
    }

    #[test]
    fn basic_and_other_schemes_are_not_bearer_tokens() {
        for value in [
            "Basic dXNlcjpwYXNz",
            "Negotiate abc",
            "Bearerx abc",
            "",
            "Digest username=\"a\", realm=\"b\"",
            "Basic a,Basic b",
            "Bearer.x abc",
        ] {
            assert_eq!(extract(&[("authorization", value)]), Ok(None), "{value}");
        }
    }

    #[test]
    fn two_tokens_commas_and_inner_whitespace_are_malformed() {
        for value in [
            format!("Bearer {JWT} {JWT}"),
            format!("Bearer {JWT},{JWT}"),
            format!("Bearer {JWT}\t{JWT}"),
            format!("Basic dXNlcjpwYXNz,Bearer {JWT}"),
            "Bearer".to_owned(),
            "Bearer ".to_owned(),
            "Bearer a=b".to_owned(),
            "Bearer ===".to_owned(),
            "Bearer t\u{e9}st".to_owned(),
            // Only SP separates the scheme from the token (RFC 7235 `1*SP`).
            format!("Bearer\t{JWT}"),
            format!("bearer\t\t{JWT}"),
            format!("Bearer \t{JWT}"),
            format!("Bearer\u{a0}{JWT}"),
            format!("Bearer\u{b}{JWT}"),
        ] {
            assert_eq!(
                extract(&[("authorization", &value)]),
                Err(TokenError::Malformed),
                "{value:?}"
            );
        }
    }

    #[test]
    fn a_tab_after_bearer_is_malformed_not_another_scheme() {
        // SimpleJWT (`header.split()`) and Rails (`/^Bearer\s+/`) read the token after a tab:
        // ignoring it would let a cookie be checked instead.
        let tab = format!("Bearer\t{OTHER}");
        let cookie = format!("access_token={JWT}");
        for pairs in [
            vec![("authorization", tab.as_str()), ("cookie", cookie.as_str())],
            vec![("cookie", cookie.as_str()), ("authorization", tab.as_str())],
            vec![("authorization", tab.as_str()), ("x-access-token", JWT)],
        ] {
            assert_eq!(extract(&pairs), Err(TokenError::Malformed), "{pairs:?}");
        }
        assert_eq!(
            extract(&[("x-access-token", &tab)]),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn a_jwt_under_another_scheme_is_a_copy() {
        let cookie = format!("access_token={JWT}");
        let with_cookie =
            |authorization: &str| extract(&[("authorization", authorization), ("cookie", &cookie)]);
        for value in [
            format!("JWT {OTHER}"),
            format!("Token {OTHER}"),
            format!("jwt\t{OTHER}"),
            format!("Token token=\"{OTHER}\", nonce=\"x\""),
            format!("Basic dXNlcjpwYXNz, JWT {OTHER}"),
            OTHER.to_owned(),
        ] {
            assert_eq!(
                with_cookie(&value),
                Err(TokenError::MultipleTokens),
                "{value}"
            );
        }
        // The same token, or no JWT at all, changes nothing; alone, it is no token.
        for value in [
            format!("JWT {JWT}"),
            "Basic dXNlcjpwYXNz".to_owned(),
            "Digest realm=\"api.example.com\", uri=\"/a.b.c\"".to_owned(),
            "Token abc.def.ghi".to_owned(),
        ] {
            assert_eq!(with_cookie(&value), ok(JWT), "{value}");
        }
        let alone = format!("JWT {OTHER}");
        assert_eq!(extract(&[("authorization", &alone)]), Ok(None));
    }

    #[test]
    fn names_that_frameworks_fold_into_the_token_name_are_copies() {
        // PHP's $_COOKIE reads `access.token`, `access token` and `access[token` as
        // `access_token`; ASP.NET Core compares names in any case, and decodes them.
        for name in [
            "access.token",
            "access token",
            "access[token",
            "ACCESS.TOKEN",
            "access%2Etoken",
            "access%5ftoken",
            "access+token",
            "access_token%00x",
        ] {
            for cookie in [
                format!("{name}={OTHER}; access_token={JWT}"),
                format!("access_token={JWT}; {name}={OTHER}"),
            ] {
                assert_eq!(
                    extract(&[("cookie", &cookie)]),
                    Err(TokenError::MultipleTokens),
                    "{cookie}"
                );
            }
            let same = format!("{name}={JWT}; access_token={JWT}");
            assert_eq!(extract(&[("cookie", &same)]), ok(JWT), "{same}");
            // Never the token itself.
            let alone = format!("{name}={JWT}");
            assert_eq!(extract(&[("cookie", &alone)]), Ok(None), "{alone}");
        }
        for name in [
            "access_tokens",
            "accesstoken",
            "access__token",
            "xaccess_token",
            "access%2",
        ] {
            let other = format!("{name}={OTHER}; access_token={JWT}");
            assert_eq!(extract(&[("cookie", &other)]), ok(JWT), "{other}");
        }
    }

    #[test]
    fn lenient_names_compare_as_frameworks_read_them() {
        for name in [
            "access_token",
            "Access_Token",
            "access.token",
            " access token",
            "access[token",
            "access%5Btoken",
            "%61ccess_token",
            "access+token",
            "access_token%00.anything",
        ] {
            assert!(lenient_name_eq(name, "access_token"), "{name}");
        }
        for name in [
            "access_token_",
            "access%token",
            "access%5",
            "access-token",
            "",
            "%00",
        ] {
            assert!(!lenient_name_eq(name, "access_token"), "{name}");
        }
    }

    #[test]
    fn hostile_text_is_refused_or_ignored_without_panicking() {
        for value in [
            "Bea\u{e9}",
            "Beare\u{e9} x",
            "bearer\u{e9}x",
            "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
            ",,,,",
            "Bearer ,",
            ";=;=,=",
        ] {
            for name in [
                "authorization",
                "x-access-token",
                "x_access_token",
                "cookie",
            ] {
                let _ = extract(&[(name, value)]);
            }
            let _ = cookie_without(value, "access_token");
        }
        assert_eq!(
            extract(&[("authorization", "Bearer ,")]),
            Err(TokenError::Malformed)
        );
        assert_eq!(extract(&[("cookie", ";=;=,=")]), Ok(None));
    }

    #[test]
    fn b64token_charset_and_trailing_padding_are_accepted() {
        let value = "Bearer aZ09-._~+/==";
        assert_eq!(extract(&[("authorization", value)]), ok("aZ09-._~+/=="));
    }

    #[test]
    fn oversized_tokens_are_refused_before_scanning() {
        let big = format!("Bearer {}", "a".repeat(1025));
        assert_eq!(
            extract(&[("authorization", &big)]),
            Err(TokenError::TooLarge)
        );
        // The length check comes first: even characters that are not allowed give TooLarge.
        let big = format!("Bearer {}", " x".repeat(600));
        assert_eq!(
            extract(&[("authorization", &big)]),
            Err(TokenError::TooLarge)
        );
        let exact = format!("Bearer {}", "a".repeat(1024));
        assert!(matches!(extract(&[("authorization", &exact)]), Ok(Some(_))));
        assert_eq!(
            extract(&[("x-access-token", &"a".repeat(1025))]),
            Err(TokenError::TooLarge)
        );
        let cookie = format!("access_token={}", "a".repeat(1025));
        assert_eq!(extract(&[("cookie", &cookie)]), Err(TokenError::TooLarge));
    }

    #[test]
    fn configured_header_holds_a_raw_or_bearer_token() {
        assert_eq!(extract(&[("x-access-token", JWT)]), ok(JWT));
        let value = format!("Bearer {JWT}");
        assert_eq!(extract(&[("x-access-token", &value)]), ok(JWT));
        assert_eq!(extract(&[("x-access-token", "")]), Ok(None));
        assert_eq!(
            extract(&[("x-access-token", "Basic abc")]),
            Err(TokenError::Malformed)
        );
        let two = format!("{JWT} {JWT}");
        assert_eq!(
            extract(&[("x-access-token", &two)]),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn another_spelling_of_the_configured_header_is_a_copy_not_a_source() {
        assert_eq!(extract(&[("x_access_token", JWT)]), Ok(None));
        assert_eq!(extract(&[("x-access_token", JWT)]), Ok(None));
        assert_eq!(
            extract(&[("x_access_token", JWT), ("x-access-token", JWT)]),
            ok(JWT)
        );
    }

    #[test]
    fn configured_header_is_ignored_when_not_configured() {
        let pairs: &[(&str, &str)] = &[("x-access-token", JWT), ("cookie", "access_token=x")];
        assert_eq!(
            extract_token(pairs, &TokenSources::default(), 1024),
            Ok(None)
        );
    }

    #[test]
    fn the_same_token_in_several_places_is_one_token() {
        let auth = format!("Bearer {JWT}");
        let cookie = format!("theme=dark; access_token={JWT}");
        let joined = format!("Bearer {JWT},Bearer {JWT}");
        for pairs in [
            vec![
                ("authorization", auth.as_str()),
                ("cookie", cookie.as_str()),
            ],
            vec![("authorization", auth.as_str()), ("x-access-token", JWT)],
            vec![
                ("authorization", auth.as_str()),
                ("authorization", auth.as_str()),
            ],
            vec![("authorization", joined.as_str())],
            vec![("x-access-token", JWT), ("x_access_token", auth.as_str())],
        ] {
            assert_eq!(extract(&pairs), ok(JWT), "{pairs:?}");
        }
        let two = format!("{JWT},{JWT}");
        assert_eq!(extract(&[("x-access-token", &two)]), ok(JWT));
        let twice = format!("access_token={JWT}; access_token=\"{JWT}\"");
        assert_eq!(extract(&[("cookie", &twice)]), ok(JWT));
    }

    #[test]
    fn different_tokens_in_one_request_are_refused() {
        let auth = |t: &str| format!("Bearer {t}");
        let cookie = |t: &str| format!("access_token={t}");
        let cases: Vec<Vec<(&str, String)>> = vec![
            // One of each place.
            vec![("authorization", auth(JWT)), ("cookie", cookie(OTHER))],
            vec![
                ("authorization", auth(JWT)),
                ("x-access-token", OTHER.into()),
            ],
            vec![("x-access-token", JWT.into()), ("cookie", cookie(OTHER))],
            // One place twice: repeated headers, joined values, two cookies.
            vec![("authorization", auth(JWT)), ("authorization", auth(OTHER))],
            vec![("authorization", format!("Bearer {JWT},Bearer {OTHER}"))],
            vec![("x-access-token", format!("{JWT},{OTHER}"))],
            vec![
                ("x-access-token", JWT.into()),
                ("x_access_token", OTHER.into()),
            ],
            vec![(
                "cookie",
                format!("access_token={JWT}; access_token={OTHER}"),
            )],
            vec![("cookie", cookie(JWT)), ("cookie", cookie(OTHER))],
            // Where only a lenient cookie parser looks: after a comma, in another case.
            vec![(
                "cookie",
                format!("theme=dark,access_token={JWT}; access_token={OTHER}"),
            )],
            vec![(
                "cookie",
                format!("theme=dark,access_token={OTHER}; access_token={JWT}"),
            )],
            vec![(
                "cookie",
                format!("access_token={JWT}; Access_Token={OTHER}"),
            )],
            vec![("cookie", format!("access_token={JWT},access_token={OTHER}"))],
        ];
        for case in cases {
            let pairs: Vec<(&str, &str)> = case.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_eq!(
                extract(&pairs),
                Err(TokenError::MultipleTokens),
                "{pairs:?}"
            );
            let reversed: Vec<(&str, &str)> = pairs.iter().rev().copied().collect();
            assert_eq!(
                extract(&reversed),
                Err(TokenError::MultipleTokens),
                "{reversed:?}"
            );
        }
    }

    /// Headers and a query string.
    struct WithQuery<'a>(&'a [(&'a str, &'a str)], &'a str);

    impl HeaderSource for WithQuery<'_> {
        fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
            self.0.headers()
        }

        fn query(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.1))
        }
    }

    #[test]
    fn an_access_token_query_parameter_is_a_copy_never_the_token() {
        let auth = format!("Bearer {JWT}");
        let extract = |pairs: &[(&str, &str)], query: &str| {
            extract_token(&WithQuery(pairs, query), &sources(), 1024).map(|t| t.map(str::to_owned))
        };
        let same = format!("a=1&access_token={JWT}");
        assert_eq!(extract(&[("authorization", &auth)], &same), ok(JWT));
        for query in [
            format!("access_token={OTHER}"),
            format!("access_token={JWT}&access_token={OTHER}"),
            format!("x=1&access_token={}", OTHER.replace('.', "%2E")),
        ] {
            assert_eq!(
                extract(&[("authorization", &auth)], &query),
                Err(TokenError::MultipleTokens),
                "{query}"
            );
        }
        // Alone, it is no token; other parameters and an empty one do not count.
        assert_eq!(extract(&[], &same), Ok(None));
        let other = format!("token={OTHER}&access_token=&Access_Token=&access_tokens={OTHER}");
        assert_eq!(extract(&[("authorization", &auth)], &other), ok(JWT));
    }

    #[test]
    fn query_names_that_frameworks_fold_into_access_token_are_copies() {
        // ASP.NET Core reads query names in any case; PHP's $_GET turns `.`, ` `, `[` into `_`.
        let auth = format!("Bearer {JWT}");
        let headers: &[(&str, &str)] = &[("authorization", &auth)];
        let extract = |query: &str| {
            extract_token(&WithQuery(headers, query), &sources(), 1024)
                .map(|t| t.map(str::to_owned))
        };
        for name in [
            "Access_Token",
            "ACCESS_TOKEN",
            "access.token",
            "access+token",
            "access%20token",
            "access[token",
            "access%5Ftoken",
        ] {
            let query = format!("x=1&{name}={OTHER}");
            assert_eq!(extract(&query), Err(TokenError::MultipleTokens), "{query}");
            let same = format!("{name}={JWT}");
            assert_eq!(extract(&same), ok(JWT), "{same}");
        }
    }

    #[test]
    fn query_copies_are_named_as_they_appear() {
        let query = format!("a=1&Access_Token={JWT}&access%2Etoken={OTHER}&access_token=&b");
        let copies: Vec<(&str, String)> = query_copies(&query)
            .map(|(name, value)| (name, value.into_owned()))
            .collect();
        assert_eq!(
            copies,
            [
                ("Access_Token", JWT.to_owned()),
                ("access%2Etoken", OTHER.to_owned())
            ]
        );
    }

    #[test]
    fn malformed_authorization_does_not_fall_back_to_other_sources() {
        assert_eq!(
            extract(&[("authorization", "Bearer a b"), ("x-access-token", JWT)]),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn cookies_are_parsed_as_rfc_6265_says() {
        let cookie = format!("other=1; xaccess_token=2; access_token={JWT}; access_tokens=3");
        assert_eq!(extract(&[("cookie", &cookie)]), ok(JWT));
        let quoted = format!("access_token=\"{JWT}\"");
        assert_eq!(extract(&[("cookie", &quoted)]), ok(JWT));
        let spaced = format!(" a=1 ;access_token = {JWT} ;b=2");
        assert_eq!(extract(&[("cookie", &spaced)]), ok(JWT));
        // A comma is part of a value: this is one cookie named `theme`, and no token.
        let inside = format!("theme=dark,access_token={JWT}");
        assert_eq!(extract(&[("cookie", &inside)]), Ok(None));
        // Names are case-sensitive: `Access_Token` alone is not the token cookie.
        let upper = format!("Access_Token={JWT}");
        assert_eq!(extract(&[("cookie", &upper)]), Ok(None));
        assert_eq!(extract(&[("cookie", "access_tokens=x; token=y")]), Ok(None));
        assert_eq!(extract(&[("cookie", "access_token=")]), Ok(None));
        assert_eq!(
            extract(&[("cookie", "access_token=a b")]),
            Err(TokenError::Malformed)
        );
        let comma = format!("access_token={JWT},x");
        assert_eq!(extract(&[("cookie", &comma)]), Err(TokenError::Malformed));
    }

    #[test]
    fn the_token_cookie_is_cut_out_of_the_cookie_header() {
        let cases = [
            ("a=1; access_token=T; b=2", Some("a=1; b=2")),
            ("access_token=T", Some("")),
            ("access_token=T; access_token=T", Some("")),
            ("a=1;access_token=T", Some("a=1")),
            ("theme=dark,access_token=T; b=2", Some("b=2")),
            ("ACCESS_TOKEN=T; b=2", Some("b=2")),
            ("a=1; access.token=T; access[token=T; b=2", Some("a=1; b=2")),
            ("access%5Ftoken=T; access+token=T", Some("")),
            ("a=1; b=2", None),
            ("access_tokens=1", None),
            ("", None),
        ];
        for (value, expected) in cases {
            assert_eq!(
                cookie_without(value, "access_token").as_deref(),
                expected,
                "{value}"
            );
        }
    }

    #[test]
    fn other_spellings_of_the_configured_header_are_listed() {
        let pairs: &[(&str, &str)] = &[
            ("x-access-token", "a"),
            ("x_access_token", "a"),
            ("x-access_token", "a"),
            ("x-access-tokens", "a"),
        ];
        let names: Vec<&str> = header_spellings(pairs, "x-access-token").collect();
        assert_eq!(names, ["x_access_token", "x-access_token"]);
    }
}
