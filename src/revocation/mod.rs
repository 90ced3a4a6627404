//! Revocations: the model, the `Store` trait it needs, and the in-memory replica that
//! answers Check.

pub mod model;
pub mod store;

pub use model::{InvalidRevocation, Revocation, RevocationKey, RevocationKind};
pub use store::{Change, ChangeBatch, FeedPosition, Inserted, Page, Snapshot, Store, StoreError};
