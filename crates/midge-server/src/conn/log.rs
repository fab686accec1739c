//! A client's connect and disconnect as mosquitto 2 logs them, so that what reads mosquitto's
//! log (people, fail2ban rules, log dashboards) reads Midge's: the line is the message, and the
//! same facts are also structured fields beside it.

use midge_broker::CloseKind;
use midge_codec::ProtocolVersion;

/// mosquitto's "New client connected from ADDR as ID (p2, c1, k60, u'user')."
pub(crate) fn connected(
    peer: &dyn std::fmt::Display,
    client_id: &str,
    version: ProtocolVersion,
    clean_start: bool,
    keep_alive: u16,
    username: Option<&str>,
) -> String {
    // mosquitto's protocol numbers: 1 for 3.1, 2 for 3.1.1, 5 for 5.0.
    let protocol = match version {
        ProtocolVersion::V31 => 1,
        ProtocolVersion::V311 => 2,
        ProtocolVersion::V5 => 5,
    };
    let user = username.map(|name| format!(", u'{name}'")).unwrap_or_default();
    format!(
        "New client connected from {peer} as {client_id} (p{protocol}, c{}, k{keep_alive}{user}).",
        u8::from(clean_start)
    )
}

/// mosquitto's line for a client's end, from how it ended and the driver's reason.
pub(crate) fn disconnected(client_id: &str, how: CloseKind, reason: &str) -> String {
    match how {
        CloseKind::Normal | CloseKind::NormalWithWill => format!("Client {client_id} disconnected."),
        CloseKind::TakenOver => format!("Client {client_id} already connected, closing old connection."),
        CloseKind::ServerShutdown => format!("Client {client_id} disconnected: server shutting down."),
        CloseKind::Abnormal => match reason {
            "connection closed by client" => format!("Client {client_id} closed its connection."),
            "keep alive timeout" => format!("Client {client_id} has exceeded timeout, disconnecting."),
            _ if reason.starts_with("bad packet") => {
                format!("Client {client_id} disconnected due to malformed packet.")
            }
            _ if reason.starts_with("protocol violation") => {
                format!("Client {client_id} disconnected due to protocol error.")
            }
            _ => format!("Client {client_id} disconnected: {reason}."),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connect_reads_as_mosquittos() {
        let peer = "127.0.0.1:33892";
        assert_eq!(
            connected(&peer, "dev-1", ProtocolVersion::V311, true, 60, None),
            "New client connected from 127.0.0.1:33892 as dev-1 (p2, c1, k60)."
        );
        assert_eq!(
            connected(&peer, "dev-1", ProtocolVersion::V5, false, 30, Some("alice")),
            "New client connected from 127.0.0.1:33892 as dev-1 (p5, c0, k30, u'alice')."
        );
    }

    #[test]
    fn each_end_reads_as_mosquittos() {
        assert_eq!(disconnected("c", CloseKind::Normal, "client sent DISCONNECT"), "Client c disconnected.");
        assert_eq!(
            disconnected("c", CloseKind::Abnormal, "connection closed by client"),
            "Client c closed its connection."
        );
        assert_eq!(
            disconnected("c", CloseKind::Abnormal, "keep alive timeout"),
            "Client c has exceeded timeout, disconnecting."
        );
        assert_eq!(
            disconnected("c", CloseKind::Abnormal, "read error: reset"),
            "Client c disconnected: read error: reset."
        );
    }
}
