//! The implementations of [`crate::revocation::Store`]: Redis and the embedded file store.
