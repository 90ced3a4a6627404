//! Work that Check derives from a verified token and keeps with it in the verified-token
//! cache, so that a repeated token skips that work too.

use bytes::Bytes;
use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;

/// What the layers above the verifier computed from one verified token. A cache, not part of
/// the token's value: clones start empty and every memo compares equal.
#[derive(Debug, Default)]
pub struct TokenMemo {
    /// The revocation replica's generation at which no revocation covered the token (0: not
    /// looked up yet); see `Replica::lookup_remembered`.
    pub clear_at_generation: AtomicU64,
    /// The encoded allow response for the token, with the id of the response settings that
    /// produced it.
    pub allow_response: OnceLock<(u64, Bytes)>,
}

impl Clone for TokenMemo {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for TokenMemo {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
