//! The revocation feed: `jwtrevoker.replication.v1.Revocations/Watch`, which streams the
//! revocation set (a snapshot in pages, then every change, with resumable positions and
//! heartbeats) to in-process enforcers such as the Envoy dynamic module, so that they never
//! talk to the store themselves.
//!
//! - [`pb`]: the generated messages, server and client.
//! - [`convert`]: revocations and changes to and from their wire form.
//! - [`service`]: the server side, following the store for each watcher.
//! - [`follower`]: the client side, a read-only [`Store`](crate::revocation::Store) over the
//!   feed that a [`Replica`](crate::revocation::Replica) follows like any store.

pub mod convert;
pub mod follower;
pub mod pb;
pub mod service;

pub use follower::{FeedFollower, FollowerOptions, FollowerTls};
pub use service::FeedService;
