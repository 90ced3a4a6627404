//! Finding the bearer token in a request's headers: `Authorization: Bearer`, then the
//! configured header, then the configured cookie.

use super::TokenError;
use crate::config::TokenSources;

/// A request's headers, looked up by lowercase name; a repeated header's values are joined
/// with `,` (as in Envoy's ext_authz header map).
pub trait HeaderSource {
    /// The value of header `name` (lowercase), if present.
    fn header(&self, name: &str) -> Option<&str>;
}

#[cfg(test)]
impl HeaderSource for std::collections::HashMap<String, String> {
    fn header(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// Finds the bearer token in a request's headers (lowercase names; repeated headers joined
/// with `,`).
///
/// Looks at `authorization` (`Bearer <token>`, scheme case-insensitive; another scheme such as
/// `Basic` counts as no bearer token), then the configured header (a raw token or
/// `Bearer <token>`), then the configured cookie; the first source that holds a token wins.
/// The token must be a single RFC 6750 `b64token`; anything else (a second token, a comma,
/// whitespace inside) is [`TokenError::Malformed`]. A token longer than `max_bytes` is
/// [`TokenError::TooLarge`], refused before its characters are examined.
///
/// `Ok(None)` means the request carries no token at all.
pub fn extract_token<'a>(
    headers: &'a (impl HeaderSource + ?Sized),
    sources: &TokenSources,
    max_bytes: usize,
) -> Result<Option<&'a str>, TokenError> {
    if let Some(value) = headers.header("authorization")
        && let Some(token) = bearer(value, max_bytes)?
    {
        return Ok(Some(token));
    }
    if let Some(name) = &sources.header
        && let Some(value) = headers.header(name)
    {
        let value = trim_ows(value);
        if let Some(token) = bearer(value, max_bytes)? {
            return Ok(Some(token));
        }
        if !value.is_empty() {
            return single_token(value, max_bytes).map(Some);
        }
    }
    if let Some(name) = &sources.cookie
        && let Some(value) = headers.header("cookie").and_then(|c| find_cookie(c, name))
        && !value.is_empty()
    {
        return single_token(value, max_bytes).map(Some);
    }
    Ok(None)
}

/// `Bearer <token>` → the token; another scheme → `None`.
fn bearer(value: &str, max_bytes: usize) -> Result<Option<&str>, TokenError> {
    let value = trim_ows(value);
    match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => {
            single_token(rest.trim_start_matches(' '), max_bytes).map(Some)
        }
        None if value.eq_ignore_ascii_case("bearer") => Err(TokenError::Malformed),
        _ => Ok(None),
    }
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

/// The value of the first cookie called `name` in a `cookie` header (RFC 6265 `name=value`
/// pairs separated by `;`; Envoy may also have joined several `cookie` headers with `,`,
/// which a cookie value cannot contain). Surrounding double quotes are removed.
fn find_cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split([';', ',']).find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        if trim_ows(key) != name {
            return None;
        }
        let value = trim_ows(value);
        Some(
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value),
        )
    })
}

fn trim_ows(value: &str) -> &str {
    value.trim_matches([' ', '\t'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJl";

    fn headers(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn sources() -> TokenSources {
        TokenSources {
            header: Some("x-access-token".to_owned()),
            cookie: Some("access_token".to_owned()),
        }
    }

    fn extract(pairs: &[(&str, &str)]) -> Result<Option<String>, TokenError> {
        let map = headers(pairs);
        extract_token(&map, &sources(), 1024).map(|t| t.map(str::to_owned))
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let value = format!("{scheme} {JWT}");
            assert_eq!(
                extract(&[("authorization", &value)]),
                Ok(Some(JWT.to_owned()))
            );
        }
    }

    #[test]
    fn extra_spaces_around_the_token_are_tolerated() {
        let value = format!("  Bearer   {JWT} ");
        assert_eq!(
            extract(&[("authorization", &value)]),
            Ok(Some(JWT.to_owned()))
        );
    }

    #[test]
    fn no_headers_means_no_token() {
        assert_eq!(extract(&[]), Ok(None));
        assert_eq!(extract(&[("x-other", JWT)]), Ok(None));
    }

    #[test]
    fn basic_and_other_schemes_are_not_bearer_tokens() {
        assert_eq!(
            extract(&[("authorization", "Basic dXNlcjpwYXNz")]),
            Ok(None)
        );
        assert_eq!(extract(&[("authorization", "Negotiate abc")]), Ok(None));
        assert_eq!(extract(&[("authorization", "Bearerx abc")]), Ok(None));
        assert_eq!(extract(&[("authorization", "")]), Ok(None));
    }

    #[test]
    fn two_tokens_commas_and_inner_whitespace_are_malformed() {
        for value in [
            format!("Bearer {JWT} {JWT}"),
            format!("Bearer {JWT},Bearer {JWT}"),
            format!("Bearer {JWT},{JWT}"),
            format!("Bearer {JWT}\t{JWT}"),
            "Bearer".to_owned(),
            "Bearer ".to_owned(),
            "Bearer a=b".to_owned(),
            "Bearer ===".to_owned(),
            "Bearer t\u{e9}st".to_owned(),
        ] {
            assert_eq!(
                extract(&[("authorization", &value)]),
                Err(TokenError::Malformed),
                "{value:?}"
            );
        }
    }

    #[test]
    fn b64token_charset_and_trailing_padding_are_accepted() {
        let value = "Bearer aZ09-._~+/==";
        assert_eq!(
            extract(&[("authorization", value)]),
            Ok(Some("aZ09-._~+/==".to_owned()))
        );
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
        assert_eq!(
            extract(&[("x-access-token", JWT)]),
            Ok(Some(JWT.to_owned()))
        );
        let value = format!("Bearer {JWT}");
        assert_eq!(
            extract(&[("x-access-token", &value)]),
            Ok(Some(JWT.to_owned()))
        );
        assert_eq!(extract(&[("x-access-token", "")]), Ok(None));
        assert_eq!(
            extract(&[("x-access-token", "Basic abc")]),
            Err(TokenError::Malformed)
        );
        let two = format!("{JWT},{JWT}");
        assert_eq!(
            extract(&[("x-access-token", &two)]),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn configured_header_is_ignored_when_not_configured() {
        let map = headers(&[("x-access-token", JWT)]);
        assert_eq!(
            extract_token(&map, &TokenSources::default(), 1024),
            Ok(None)
        );
    }

    #[test]
    fn authorization_wins_over_header_and_cookie() {
        let auth = format!("Bearer {JWT}");
        let cookie = "access_token=b.b.b";
        assert_eq!(
            extract(&[
                ("authorization", &auth),
                ("x-access-token", "a.a.a"),
                ("cookie", cookie)
            ]),
            Ok(Some(JWT.to_owned()))
        );
        assert_eq!(
            extract(&[
                ("authorization", "Basic dXNlcjpwYXNz"),
                ("x-access-token", "a.a.a"),
                ("cookie", cookie)
            ]),
            Ok(Some("a.a.a".to_owned()))
        );
        assert_eq!(
            extract(&[("authorization", "Basic dXNlcjpwYXNz"), ("cookie", cookie)]),
            Ok(Some("b.b.b".to_owned()))
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
    fn cookie_is_parsed_by_name() {
        let cookie = format!("other=1; xaccess_token=2; access_token={JWT}; access_token=second");
        assert_eq!(extract(&[("cookie", &cookie)]), Ok(Some(JWT.to_owned())));
        let quoted = format!("access_token=\"{JWT}\"");
        assert_eq!(extract(&[("cookie", &quoted)]), Ok(Some(JWT.to_owned())));
        let joined = format!("a=1; b=2,access_token={JWT}");
        assert_eq!(extract(&[("cookie", &joined)]), Ok(Some(JWT.to_owned())));
        assert_eq!(extract(&[("cookie", "access_tokens=x; token=y")]), Ok(None));
        assert_eq!(extract(&[("cookie", "access_token=")]), Ok(None));
        assert_eq!(
            extract(&[("cookie", "access_token=a b")]),
            Err(TokenError::Malformed)
        );
    }
}
