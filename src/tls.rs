//! TLS termination for the gRPC ports: a rustls `ServerConfig` built from a port's PEM files
//! (aws-lc-rs, optional client-certificate verification, the port's ALPN protocols), and the
//! stream of accepted connections handed to tonic, whose handshakes run concurrently, each
//! under a deadline, so that a failed or slow handshake only drops that connection.

use crate::config::{PemFile, PortTls};
use futures_util::Stream;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;

/// How long a client has, from the TCP accept, to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// ALPN of a gRPC-only port: HTTP/2.
pub const ALPN_H2: &[&[u8]] = &[b"h2"];

/// ALPN of the admin port: HTTP/2 for gRPC, HTTP/1.1 for `/revoke` and
/// `/backchannel-logout` (clients such as curl `--http1.1` or Python's urllib3 offer only
/// `http/1.1`, and rustls refuses a client whose ALPN list shares nothing with ours).
pub const ALPN_H2_HTTP1: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Why a port's TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be parsed.
    #[error("cannot parse {}: {source}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        source: pem::Error,
    },
    /// A certificate file holds no certificate.
    #[error("no certificate in {}", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A client CA certificate cannot be used as a trust anchor.
    #[error("cannot use a certificate of {} as a client CA: {source}", path.display())]
    ClientCa {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built.
    #[error("cannot verify client certificates: {0}")]
    Verifier(#[from] VerifierBuilderError),
    /// rustls refused the certificate chain and key (e.g. an unusable or mismatched key).
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

fn certificates(file: &PemFile) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(&file.pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: file.path.clone(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: file.path.clone(),
        });
    }
    Ok(certs)
}

/// The rustls server settings of one port: its certificate chain and key, client
/// certificates required (and verified against `client_ca`) when the port has one, and
/// `alpn` offered to clients, most preferred first.
pub fn server_config(tls: &PortTls, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca)? {
                roots.add(cert).map_err(|source| TlsError::ClientCa {
                    path: ca.path.clone(),
                    source,
                })?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build()?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let chain = certificates(&tls.identity.cert)?;
    let key =
        PrivateKeyDer::from_pem_slice(&tls.identity.key.pem).map_err(|source| TlsError::Pem {
            path: tls.identity.key.path.clone(),
            source,
        })?;
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Accepts connections on `listener` and yields those that complete the TLS handshake of
/// `config` within `handshake_timeout`. Handshakes run concurrently; one that fails or
/// times out closes its connection (logged at debug level) and nothing else, and the
/// stream never ends or fails on its own: tonic stops polling it at shutdown.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    port: &'static str,
    handshake_timeout: Duration,
) -> impl Stream<Item = Result<TlsStream<TcpStream>, Infallible>> + Send {
    let acceptor = TlsAcceptor::from(config);
    let state = (listener, JoinSet::new());
    futures_util::stream::unfold(state, move |(listener, mut handshakes)| {
        let acceptor = acceptor.clone();
        async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((tcp, peer)) => {
                            handshakes.spawn(handshake(
                                acceptor.clone(),
                                tcp,
                                peer,
                                port,
                                handshake_timeout,
                            ));
                        }
                        Err(error) => accept_failed(port, &error).await,
                    },
                    Some(done) = handshakes.join_next(), if !handshakes.is_empty() => {
                        if let Ok(Some(stream)) = done {
                            return Some((Ok(stream), (listener, handshakes)));
                        }
                    }
                }
            }
        }
    })
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    port: &'static str,
    timeout: Duration,
) -> Option<TlsStream<TcpStream>> {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(port, %peer, %error, "cannot set TCP_NODELAY");
    }
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            tracing::debug!(port, %peer, %error, "tls handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(port, %peer, ?timeout, "tls handshake timed out");
            None
        }
    }
}

/// An accept error: one about a single connection (the peer went away) is ignored; others
/// (e.g. out of file descriptors) are logged and followed by a short pause, so that the
/// loop neither stops nor spins.
async fn accept_failed(port: &'static str, error: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        tracing::debug!(port, %error, "connection lost before accept");
        return;
    }
    tracing::warn!(port, %error, "cannot accept a connection");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
