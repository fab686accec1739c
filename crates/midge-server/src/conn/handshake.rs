//! A TLS listener's handshake, run in the connection's own task within the connect timeout,
//! and the user name the client's certificate gives when the listener takes names from
//! certificates.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tracing::debug;

use super::{ClientAuth, ListenerContext};
use crate::tls::{certificate_username, CertificateUsername, TlsListener};

/// Runs the handshake until `deadline` (the connect timeout's end). `None` means the connection
/// is over: the handshake failed (logged at debug with the peer and the reason, and counted),
/// ran out of time, or the server is shutting down.
pub(super) async fn handshake(
    socket: TcpStream,
    peer: SocketAddr,
    tls: Arc<TlsListener>,
    listener: &ListenerContext,
    deadline: tokio::time::Instant,
) -> Option<(TlsStream<TcpStream>, ClientAuth)> {
    let mut shutdown = listener.shutdown.clone();
    let handshake = tls.acceptor().accept(socket);
    let stream = tokio::select! {
        result = handshake => match result {
            Ok(stream) => stream,
            Err(error) => {
                tls.handshake_failed();
                debug!(%peer, reason = %error, "TLS handshake failed");
                return None;
            }
        },
        _ = tokio::time::sleep_until(deadline) => {
            tls.handshake_failed();
            super::connect_timed_out(listener, peer, "TLS handshake");
            return None;
        }
        _ = shutdown.changed() => return None,
    };
    let auth = match tls.username() {
        None => {
            let certificate = stream.get_ref().1.peer_certificates().and_then(|chain| chain.first());
            let subject = certificate.and_then(|der| certificate_username(der, CertificateUsername::Subject).ok());
            ClientAuth::Connect { certificate_subject: subject.map(Arc::from) }
        }
        Some(how) => {
            let certificate = stream.get_ref().1.peer_certificates().and_then(|chain| chain.first());
            ClientAuth::Certificate(match certificate {
                Some(certificate) => certificate_username(certificate, how).map(Arc::from),
                None => Err("the client presented no certificate"),
            })
        }
    };
    Some((stream, auth))
}
