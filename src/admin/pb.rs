//! Generated code for the admin API (`jwtrevoker.admin.v1`), and its descriptor for reflection.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("jwtrevoker.admin.v1");

/// The encoded file descriptor set of the admin API, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("admin_descriptor");
