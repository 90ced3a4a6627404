//! Generated code for the revocation feed (`jwtrevoker.replication.v1`).
#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("jwtrevoker.replication.v1");
