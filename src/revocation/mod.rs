//! Revocations: the model, the `Store` trait it needs, and the in-memory replica that
//! answers Check.

pub mod lifetime;
pub mod model;
pub mod replica;
pub mod set;
pub mod store;

pub use lifetime::{Covered, Lifetimes};
pub use model::{InvalidRevocation, Revocation, RevocationKey, RevocationKind};
pub use replica::{Followed, Lookup, Replica, ReplicaHealth, ReplicaStatus};
pub use set::{RevocationSet, TokenIdentity};
pub use store::{
    Change, ChangeBatch, FeedPosition, Inserted, NOT_REPLICATED, Page, Store, StoreError,
};
