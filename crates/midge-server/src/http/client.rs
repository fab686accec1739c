//! A request's client of the core: a `ClientConnection` connected as an MQTT 5 client would be,
//! through `Broker::check_connect` and `ClientConnection::accept`, as the caller: a bearer token
//! is the user it stands for; Basic credentials and anonymous callers are judged by the
//! listener's authenticator, the one its MQTT clients meet.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use midge_broker::ports::access::{Action, Identity};
use midge_broker::ports::auth::Verdict;
use midge_broker::{ClientConnection, CloseKind, Congestion, ConnectContext, ConnectOutcome, Flow, ReadBatch};
use midge_codec::{decode_packet, MqttString, Packet, Properties, ProtocolVersion, ReasonCode};

use super::caller::Credentials;
use super::error::ApiError;
use super::Api;
use crate::conn::connect::verdict_by;
use crate::conn::pacing::Pacing;

/// What a request asks of its client's session.
#[derive(Debug)]
pub(super) struct Session {
    /// The client id; `None`: one is made up (`http-` and 16 hex digits).
    pub(super) client_id: Option<String>,
    /// Whether the session starts anew (MQTT 5 Clean Start).
    pub(super) clean_start: bool,
    /// Its Session Expiry Interval, in seconds (0: it ends with the connection).
    pub(super) expiry: u32,
    /// The keep alive the core holds it to, in seconds (0: none).
    pub(super) keep_alive: u16,
}

/// A connected client of the core and who it is.
#[derive(Debug)]
pub(super) struct Connected {
    pub(super) connection: Box<ClientConnection>,
    /// The subscribers over their bound its last packet reached, if any: it is paced for them
    /// ([`Connected::wait_for_room`]).
    congestion: Option<Congestion>,
    pub(super) identity: Identity,
    /// Whether the core had a session for it (a resumed one).
    pub(super) session_present: bool,
}

/// Connects a client of the core for a request with `credentials`; the error is the response.
pub(super) async fn connect(api: &Api, credentials: Credentials, session: Session) -> Result<Connected, ApiError> {
    let context = &api.context;
    let broker = &context.broker;
    let client_id = session.client_id.unwrap_or_else(made_up_client_id);
    let client_id =
        MqttString::new(&client_id).map_err(|error| ApiError::bad_request(format!("client_id: {error}")))?;
    let (username, password) = match &credentials {
        Credentials::Basic { user, password } => (
            Some(MqttString::new(user).map_err(|_| ApiError::unauthorized("the user name is not valid"))?),
            Some(Bytes::from(password.clone().into_bytes())),
        ),
        Credentials::Bearer(_) | Credentials::Anonymous => (None, None),
    };
    let properties =
        Properties { session_expiry_interval: (session.expiry > 0).then_some(session.expiry), ..Properties::default() };
    let packet = midge_codec::Connect {
        protocol: ProtocolVersion::V5,
        clean_start: session.clean_start,
        keep_alive: session.keep_alive,
        client_id,
        will: None,
        username,
        password,
        properties,
        bridge: false,
    };
    let request =
        broker.check_connect(Box::new(packet)).map_err(|refusal| refused(refusal.connack.reason, &refusal.reason))?;
    let verdict = match &credentials {
        Credentials::Bearer(token) => {
            let user = api.http.user_of(token).ok_or_else(|| ApiError::unauthorized("unknown bearer token"))?;
            Verdict::Allow(Identity { username: Some(user), grants: None })
        }
        Credentials::Basic { .. } | Credentials::Anonymous => {
            let peer = api.peer.to_string();
            let decision = context.authenticator.authenticate(&request.credentials(&peer));
            let deadline = tokio::time::Instant::now() + broker.limits().connect_timeout();
            let mut shutdown = context.shutdown.clone();
            verdict_by(decision, deadline, &mut shutdown)
                .await
                .ok_or_else(|| ApiError::unavailable("the server is shutting down"))?
        }
    };
    let identity = match &verdict {
        Verdict::Allow(identity) => identity.clone(),
        // Refused without credentials: the caller must give some (401), whatever the backend's code.
        Verdict::Deny { detail, .. } if credentials == Credentials::Anonymous => {
            return Err(ApiError::unauthorized(format!("credentials needed: {detail}")))
        }
        Verdict::Deny { reason, detail } => return Err(refused(*reason, detail)),
    };
    let connect_context = ConnectContext { peer: api.peer.to_string(), authorizer: context.authorizer.clone() };
    match ClientConnection::accept(broker, request, verdict, &connect_context, Instant::now()) {
        ConnectOutcome::Accepted { connection, connack } => {
            Ok(Connected { connection, congestion: None, identity, session_present: connack.session_present })
        }
        ConnectOutcome::Refused(refusal) => Err(refused(refusal.connack.reason, &refusal.reason)),
    }
}

impl Connected {
    /// Whether the listener's ACL (and the caller's own grants) let it do `action` on `topic`.
    pub(super) fn allows(&self, api: &Api, action: Action, topic: &str) -> bool {
        let client_id = self.connection.client_id();
        let by_acl = api
            .context
            .authorizer
            .as_ref()
            .is_none_or(|authorizer| authorizer.allows(&self.identity, client_id, action, topic));
        let by_grants = self.identity.grants.as_ref().is_none_or(|grants| grants.allows(action, topic));
        by_acl && by_grants
    }

    /// Hands `packet` to the core as one read and returns its answers once the store has
    /// committed what they promise (as the MQTT-SN gateway's clients do).
    pub(super) async fn core(&mut self, api: &Api, packet: Packet) -> Result<Vec<Packet>, ApiError> {
        let mut batch = ReadBatch::new();
        let mut out = BytesMut::new();
        let handled = self.connection.handle(packet, Instant::now(), &mut batch, &mut out);
        self.connection.broker().end_batch(&mut batch);
        let congestion = batch.take_congestion();
        if !congestion.is_empty() {
            self.congestion = Some(congestion);
        }
        let hold = self.connection.take_hold();
        match handled {
            Ok(Flow::Continue) => {}
            Ok(Flow::Disconnect { .. }) => return Err(ApiError::bad_request("the request ended its connection")),
            Err(violation) => return Err(ApiError::bad_request(violation.to_string())),
        }
        if let (Some(ticket), Some(writer)) = (hold, api.context.store.as_ref()) {
            writer
                .durable(midge_store::Ticket(ticket.0))
                .await
                .map_err(|error| ApiError::unavailable(format!("the store failed: {error}")))?;
        }
        let mut answers = Vec::new();
        while let Ok(Some(answer)) = decode_packet(&mut out, ProtocolVersion::V5, usize::MAX) {
            answers.push(answer);
        }
        Ok(answers)
    }

    /// Waits while subscribers its last packet reached are over their queue bound, as an MQTT
    /// publisher is not read meanwhile (`conn/pacing.rs`): until they have room, or the
    /// slow-consumer policy has dealt with those that take nothing for
    /// `slow_consumer_timeout_ms`. A caller that publishes request after request is paced as an
    /// MQTT publisher is.
    pub(super) async fn wait_for_room(&mut self) {
        let Some(congestion) = self.congestion.take() else { return };
        let mut held_up = None;
        let Some(mut pacing) = Pacing::start(&self.connection, congestion, &mut held_up) else { return };
        let client_id = Arc::clone(self.connection.client_id());
        loop {
            pacing.arm();
            std::future::poll_fn(|cx| pacing.poll_room(cx)).await;
            if !pacing.recheck(&client_id) {
                return;
            }
        }
    }

    /// Ends the connection as a client's DISCONNECT does (no will: it has none).
    pub(super) fn close(self) {
        self.connection.close(CloseKind::Normal, Instant::now());
    }
}

/// The error for a reason code the core refused something with.
pub(super) fn refused(reason: ReasonCode, detail: &dyn std::fmt::Display) -> ApiError {
    let text = format!("{reason}: {detail}");
    match reason {
        ReasonCode::BAD_USER_NAME_OR_PASSWORD => ApiError::unauthorized(text),
        ReasonCode::NOT_AUTHORIZED | ReasonCode::BANNED => ApiError::forbidden(text),
        ReasonCode::QUOTA_EXCEEDED | ReasonCode::SERVER_UNAVAILABLE | ReasonCode::SERVER_BUSY => {
            ApiError::unavailable(text)
        }
        ReasonCode::PACKET_TOO_LARGE => ApiError::too_large(text),
        _ => ApiError::bad_request(text),
    }
}

/// A client id for a request that names none: `http-` and 64 random bits in hex.
fn made_up_client_id() -> String {
    let mut bytes = [0u8; 8];
    // Without the OS's randomness a clock's nanoseconds do: the id needs to be unique, not secret.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        bytes = (nanos.as_nanos() as u64).to_be_bytes();
    }
    format!("http-{:016x}", u64::from_be_bytes(bytes))
}
