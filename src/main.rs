//! The `jwt-revoker` binary.

fn main() {}
