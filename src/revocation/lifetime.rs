//! How long a revocation must last: the one rule every revocation's expiry is computed from,
//! derived from how long Check can accept a token.
//!
//! Check accepts a token at time `t` only while `t < exp + leeway`, and only if its `iat` is
//! at most `t + leeway` and `exp - iat` at most `max_token_lifetime` (for an issuer with
//! `allow_missing_iat`, a token without `iat` only if `exp ≤ t + leeway + max_token_lifetime`).
//! So a token that Check could accept at `t`, or that was issued by `t`, has
//! `exp ≤ t + leeway + max_token_lifetime` (`iat` at most one leeway ahead of `t`) and is
//! accepted no later than one more leeway past that `exp`.

use std::time::Duration;

/// What a revocation covers, as far as its expiry is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Covered {
    /// One token whose `exp` (and `iat`, if it has one) is known (a revocation by token).
    Token {
        /// The token's `exp`.
        exp: u64,
        /// The token's `iat`.
        iat: Option<u64>,
    },
    /// Every token of an identifier (session, subject, client, …) that Check could accept at
    /// `at` or that was issued (`iat`) by then.
    IssuedBy {
        /// When the revocation takes effect (Unix seconds).
        at: u64,
    },
}

/// The configured `max_token_lifetime` and `leeway`, in seconds: the bounds on how long
/// Check can accept a token, and so on how long a revocation must last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// The longest `exp - iat` Check accepts.
    pub max_token_lifetime: u64,
    /// The leeway on `exp`, `nbf` and `iat`.
    pub leeway: u64,
}

impl Lifetimes {
    /// The bounds from the configured durations (whole seconds).
    pub fn new(max_token_lifetime: Duration, leeway: Duration) -> Self {
        Self {
            max_token_lifetime: max_token_lifetime.as_secs(),
            leeway: leeway.as_secs(),
        }
    }

    /// When a revocation of what `covered` describes may expire: the first second at which
    /// Check can no longer accept any token it covers.
    ///
    /// - a token: until `exp + leeway`, however far that is (a token without `iat` whose
    ///   `exp` lies further than `max_token_lifetime` ahead is accepted later, once the clock
    ///   has caught up); with `iat`, no later than `iat + max_token_lifetime + leeway`, since
    ///   a token that lives longer is never accepted;
    /// - an identifier revoked at `at`: until `at + leeway + max_token_lifetime + leeway` (a
    ///   covered token was issued by `at + leeway`, since one with `iat` up to a leeway ahead
    ///   is accepted, lives at most `max_token_lifetime`, and is accepted up to a leeway past
    ///   its `exp`).
    pub fn revocation_expiry(&self, covered: Covered) -> u64 {
        match covered {
            Covered::Token { exp, iat } => {
                let last_exp = iat.map_or(exp, |iat| {
                    exp.min(iat.saturating_add(self.max_token_lifetime))
                });
                last_exp.saturating_add(self.leeway)
            }
            Covered::IssuedBy { at } => at
                .saturating_add(self.leeway)
                .saturating_add(self.max_token_lifetime)
                .saturating_add(self.leeway),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_revocation_lasts_until_exp_plus_leeway_or_its_longest_life() {
        let lifetimes = Lifetimes::new(Duration::from_secs(3600), Duration::from_secs(30));
        let token = |exp, iat| lifetimes.revocation_expiry(Covered::Token { exp, iat });
        assert_eq!(token(1000, Some(900)), 1030);
        assert_eq!(token(1000, None), 1030);
        // A week-long token under a one-hour maximum: without `iat`, until its `exp` (it
        // becomes acceptable in its last hour); with `iat`, it is never accepted, and the
        // revocation stays bounded by `iat`.
        let week = 7 * 24 * 3600;
        assert_eq!(token(week, None), week + 30);
        assert_eq!(token(week, Some(0)), 3600 + 30);
        // An `iat` in the future: accepted from a leeway before it until `exp + leeway`.
        assert_eq!(token(week, Some(week - 3600)), week + 30);
        assert_eq!(token(u64::MAX, None), u64::MAX);
    }

    #[test]
    fn an_identifier_revocation_lasts_two_leeways_past_the_maximum_lifetime() {
        let lifetimes = Lifetimes::new(Duration::from_secs(3600), Duration::from_secs(30));
        assert_eq!(
            lifetimes.revocation_expiry(Covered::IssuedBy { at: 1000 }),
            1000 + 30 + 3600 + 30
        );
        assert_eq!(
            lifetimes.revocation_expiry(Covered::IssuedBy { at: u64::MAX - 1 }),
            u64::MAX
        );
    }
}
