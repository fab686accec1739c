//! A connection's start: the verdict on a checked CONNECT turned into a connected client or a
//! refusal (see [`crate::ConnectRequest`] for the two steps).

use std::sync::Arc;
use std::time::Instant;

use midge_codec::ConnAck;

use super::state::ClientConnection;
use crate::broker::{Admitted, Broker, ClientEvent, ConnectRequest, Refusal};
use crate::ports::access::{AccessCache, Authorizer};
use crate::ports::auth::Verdict;

/// What the listener a client came through says about it, beyond the CONNECT packet.
#[derive(Debug, Clone, Default)]
pub struct ConnectContext {
    /// The peer's address, for logs.
    pub peer: String,
    /// What its clients may do; `None` allows everything.
    pub authorizer: Option<Arc<dyn Authorizer>>,
}

/// The outcome of a CONNECT.
#[derive(Debug)]
pub enum ConnectOutcome {
    /// The client is connected: send the CONNACK, then drive the connection.
    Accepted {
        /// The per-connection protocol state.
        connection: Box<ClientConnection>,
        /// The CONNACK to send first.
        connack: ConnAck,
    },
    /// The client is refused: send the CONNACK and close.
    Refused(Refusal),
}

impl ClientConnection {
    /// Step 2 of a CONNECT: with the authenticator's `verdict` on `request`, refuses the client
    /// or attaches it to its session (see [`Broker::check_connect`] for step 1).
    pub fn accept(
        broker: &Arc<Broker>,
        request: ConnectRequest,
        verdict: Verdict,
        context: &ConnectContext,
        now: Instant,
    ) -> ConnectOutcome {
        let identity = match verdict {
            Verdict::Allow(identity) => identity,
            Verdict::Deny { reason, detail } => {
                return ConnectOutcome::Refused(Refusal::new(request.version(), reason, detail));
            }
        };
        let Admitted { session, conn_id, kick, connack } = match broker.admit(&request, now) {
            Ok(admitted) => admitted,
            Err(refusal) => return ConnectOutcome::Refused(*refusal),
        };
        let connect = &request.connect;
        let access =
            AccessCache::new(context.authorizer.clone(), identity, Arc::clone(&request.client_id)).map(Box::new);
        let connection = ClientConnection {
            version: connect.protocol,
            keep_alive: request.keep_alive,
            connect_expiry: request.granted_expiry,
            will: connect.will.clone().map(Box::new),
            aliases: None,
            alias_slots: if connect.protocol.is_v5() { broker.limits().topic_alias_maximum } else { 0 },
            client_alias_maximum: connect.properties.topic_alias_maximum.unwrap_or(0),
            // MQTT-3.1.2-24: outbound packets are bounded by the client's limit alone; the
            // server's max_packet_size bounds what it accepts.
            client_max_packet_size: connect.properties.maximum_packet_size.unwrap_or(u32::MAX),
            access,
            broker: Arc::clone(broker),
            session,
            conn_id,
            kick,
            hold: None,
            bridge: connect.bridge,
            receive_maximum: broker.limits().receive_maximum,
        };
        let mut connection = connection;
        connection.arm_will(now);
        broker.client_event(ClientEvent::Connected, &request.client_id, now);
        ConnectOutcome::Accepted { connection: Box::new(connection), connack }
    }
}
