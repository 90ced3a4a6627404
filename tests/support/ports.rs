//! Free TCP ports on 127.0.0.1 for processes the tests start.

use std::net::{Ipv4Addr, TcpListener};

/// Returns a TCP port on 127.0.0.1 that was free a moment ago: binds port 0, reads the
/// port the kernel chose and releases it.
///
/// Another process can take the port before it is used again; the kernel hands out
/// ephemeral ports in rotation, so that is rare. Prefer binding `127.0.0.1:0` directly
/// when the listener is created in the test process itself.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}
