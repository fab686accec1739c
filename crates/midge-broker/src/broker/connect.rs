//! The connect pipeline, in two steps around authentication:
//! 1. [`Broker::check_connect`]: the CONNECT against the protocol and the limits (enhanced
//!    authentication, the will, keep alive, the client identifier, session expiry);
//! 2. after an authenticator allowed the client, [`Broker::admit`]: find or create the session,
//!    take it over from the connection that holds it, and build the CONNACK.

use std::borrow::Cow;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use midge_codec::{ConnAck, Connect, MqttString, Properties, ProtocolVersion, QoS, ReasonCode};

use super::state::Broker;
use crate::kick::Kick;
use crate::limits::PROTOCOL_MAX_PACKET_SIZE;
use crate::ports::auth::Credentials;
use crate::session::Session;

/// A CONNECT the broker checked, waiting for an authenticator's verdict.
#[derive(Debug)]
pub struct ConnectRequest {
    pub(crate) connect: Box<Connect>,
    /// The client identifier: the client's, or one the broker assigned.
    pub(crate) client_id: Arc<str>,
    /// Whether the broker assigned it (v5 tells the client in CONNACK).
    pub(crate) assigned: bool,
    /// The keep alive in force, in seconds.
    pub(crate) keep_alive: u16,
    /// The Server Keep Alive to announce, when it differs from the client's.
    pub(crate) server_keep_alive: Option<u16>,
    /// The Session Expiry Interval the client asked for.
    pub(crate) requested_expiry: u32,
    /// The one granted.
    pub(crate) granted_expiry: u32,
    /// Whether a persistent session of this client may be fed through the fabric's durable
    /// path (its connection runs the feed: see [`ConnectRequest::feed_from_fabric`]).
    pub(crate) fabric_feed: bool,
}

impl ConnectRequest {
    /// Lets the session, if persistent, get its QoS 1/2 messages through the fabric's durable
    /// path on a node of a cluster: the caller feeds it while its connection lasts (an MQTT
    /// client's connection does; a gateway's or a bridge's sessions keep the router's path).
    pub fn feed_from_fabric(&mut self) {
        self.fabric_feed = true;
    }

    /// The protocol version.
    pub fn version(&self) -> ProtocolVersion {
        self.connect.protocol
    }

    /// The client identifier (assigned when the client sent none).
    pub fn client_id(&self) -> &Arc<str> {
        &self.client_id
    }

    /// Replaces the client identifier, after authentication and before
    /// [`ClientConnection::accept`](crate::ClientConnection::accept) finds the session by it:
    /// mosquitto's `use_username_as_clientid`, where the id is the authenticated user name, so a
    /// second connection with that name takes the first's session over. The caller checks that
    /// `client_id` is not empty. An id the broker assigned stays reported as assigned (v5's
    /// Assigned Client Identifier then carries the new one, as mosquitto sends it).
    pub fn set_client_id(&mut self, client_id: Arc<str>) {
        self.client_id = client_id;
    }

    /// Whether the client asked for a clean start.
    /// Whether the broker assigned the client identifier.
    pub fn assigned(&self) -> bool {
        self.assigned
    }

    /// Whether the client asked for a clean start (3.1.1: Clean Session).
    pub fn clean_start(&self) -> bool {
        self.connect.clean_start
    }

    /// What an authenticator decides on, for a client connecting from `peer`.
    pub fn credentials<'a>(&'a self, peer: &'a str) -> Credentials<'a> {
        Credentials {
            client_id: &self.client_id,
            username: self.connect.username.as_deref(),
            password: self.connect.password.as_deref(),
            peer,
            certificate_subject: None,
        }
    }
}

/// A refused CONNECT: send the CONNACK and close.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The CONNACK with the failure code (a v5 one with the reason as Reason String).
    pub connack: ConnAck,
    /// Why, for the log.
    pub reason: Cow<'static, str>,
}

impl Refusal {
    /// A refusal of a client speaking `version` with `code`, because of `why`.
    pub fn new(version: ProtocolVersion, code: ReasonCode, why: impl Into<Cow<'static, str>>) -> Self {
        let why = why.into();
        let mut properties = Properties::default();
        if version.is_v5() {
            properties.reason_string = MqttString::new(&why).ok();
        }
        Self { connack: ConnAck { session_present: false, reason: code, properties }, reason: why }
    }
}

/// A session the new connection is attached to.
#[derive(Debug)]
pub(crate) struct Admitted {
    pub(crate) session: Arc<Session>,
    pub(crate) conn_id: u64,
    pub(crate) kick: Arc<Kick>,
    pub(crate) connack: ConnAck,
}

impl Broker {
    /// Step 1 of a CONNECT: checks it against the protocol and the limits, assigning a client
    /// identifier when the client sent none.
    pub fn check_connect(&self, connect: Box<Connect>) -> Result<ConnectRequest, Box<Refusal>> {
        self.check_connect_of(connect, false)
    }

    /// [`Broker::check_connect`] for a session of the broker's own configuration, not a
    /// client's: a bridge's local session, whose queue for the remote must outlast any outage.
    /// The same checks, but a request never to expire is not capped by
    /// `persistent_client_expiration` (which is for clients that never come back).
    pub fn check_own_connect(&self, connect: Box<Connect>) -> Result<ConnectRequest, Box<Refusal>> {
        self.check_connect_of(connect, true)
    }

    /// Step 1, for the broker's `own` session or a client's.
    fn check_connect_of(&self, connect: Box<Connect>, own: bool) -> Result<ConnectRequest, Box<Refusal>> {
        let version = connect.protocol;
        let refuse = |code, why: &'static str| Err(Box::new(Refusal::new(version, code, why)));
        let limits = &self.limits;

        if connect.properties.authentication_method.is_some() {
            // Enhanced authentication is not offered (MQTT 5.0 section 4.12).
            return refuse(ReasonCode::BAD_AUTHENTICATION_METHOD, "enhanced authentication is not supported");
        }
        if let Some(will) = &connect.will {
            if let Err((code, why)) = self.check_will(will, &connect.client_id, Instant::now()) {
                return refuse(code, why);
            }
        }

        // Keep alive (mosquitto's max_keepalive semantics, see Limits::max_keepalive).
        let mut keep_alive = connect.keep_alive;
        let mut server_keep_alive = None;
        let limited = limits.max_keepalive < u16::MAX;
        if limited && (keep_alive > limits.max_keepalive || keep_alive == 0) {
            if version.is_v5() {
                keep_alive = limits.max_keepalive;
                server_keep_alive = Some(keep_alive);
            } else {
                return refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, "keep alive above max_keepalive");
            }
        }

        // Client identifier rules.
        let mut assigned = false;
        let client_id: Arc<str> = if connect.client_id.is_empty() {
            match version {
                // MQTT 3.1 requires 1 to 23 characters.
                ProtocolVersion::V31 => return refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, "empty client id"),
                // MQTT-3.1.3-8: empty id with clean session 0 is refused with 0x02.
                ProtocolVersion::V311 if !connect.clean_start => {
                    return refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, "empty client id without clean session")
                }
                _ if !limits.allow_zero_length_clientid => {
                    return refuse(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, "empty client ids are not allowed")
                }
                _ => {
                    assigned = version.is_v5();
                    self.assign_client_id().into()
                }
            }
        } else {
            Arc::from(connect.client_id.as_str())
        };

        let requested_expiry = match version {
            ProtocolVersion::V5 => connect.properties.session_expiry_interval.unwrap_or(0),
            _ if connect.clean_start => 0,
            _ => u32::MAX,
        };
        let granted_expiry = limits.granted_expiry(requested_expiry, own);
        Ok(ConnectRequest {
            connect,
            client_id,
            assigned,
            keep_alive,
            server_keep_alive,
            requested_expiry,
            granted_expiry,
            fabric_feed: false,
        })
    }

    /// Checks a will against the limits, as at CONNECT (and at an MQTT-SN will update): the
    /// reason code and why when it is refused.
    pub(crate) fn check_will(
        &self,
        will: &midge_codec::Will,
        client_id: &str,
        now: Instant,
    ) -> Result<(), (ReasonCode, &'static str)> {
        if will.qos.as_u8() > self.limits.max_qos {
            // MQTT-3.2.2-12: a will QoS above Maximum QoS is refused with 0x9B.
            return Err((ReasonCode::QOS_NOT_SUPPORTED, "will QoS above the server's maximum"));
        }
        if will.retain && !self.limits.retain_available {
            // MQTT-3.2.2-13.
            return Err((ReasonCode::RETAIN_NOT_SUPPORTED, "retained will while retain is unavailable"));
        }
        self.check_topic(&will.topic, client_id, now).map_err(|why| (ReasonCode::TOPIC_NAME_INVALID, why))
    }

    /// Step 2 of a CONNECT, once the client is authenticated: finds or creates the session,
    /// takes it over from a connection that holds it (MQTT-3.1.4-2), and builds the CONNACK.
    ///
    /// Refused (Quota exceeded) only when it would create a session beyond `max_sessions`.
    pub(crate) fn admit(&self, request: &ConnectRequest, now: Instant) -> Result<Admitted, Box<Refusal>> {
        let connect = &request.connect;
        let version = connect.protocol;
        let client_id = &request.client_id;
        let granted_expiry = request.granted_expiry;
        let window = self.limits.outbound_window(connect.properties.receive_maximum.unwrap_or(u16::MAX));

        // Find or create the session.
        let (session, session_present, ended) = {
            let mut sessions = self.sessions.lock();
            match sessions.get(client_id).cloned() {
                Some(existing) if !connect.clean_start && !existing.lock().ended => (existing, true, None),
                None if sessions.len() >= self.limits.max_sessions => {
                    drop(sessions);
                    self.limit_hit(&self.stats.limits.max_sessions, "max_sessions", client_id, now);
                    return Err(Box::new(Refusal::new(
                        version,
                        ReasonCode::QUOTA_EXCEEDED,
                        "the broker holds max_sessions sessions",
                    )));
                }
                existing => {
                    let session = Arc::new(Session::new(self.next_id(), client_id.clone(), version, granted_expiry));
                    sessions.insert(client_id.clone(), Arc::clone(&session));
                    (session, false, existing)
                }
            }
        };
        let conn_id = self.next_id();
        let kick = Arc::new(Kick::with_keep_alive(request.keep_alive));
        self.watch_keep_alive(Arc::clone(&kick), now);
        if let Some(old) = ended {
            // Clean start: the old session ends now (MQTT-3.1.2-4); its holder is told.
            self.finish_session(&old);
        }
        let (expires_at, will_due, was_persistent) = {
            let state = session.lock();
            (state.expires_at, state.delayed_will.as_ref().map(|will| will.0), state.persistent())
        };
        // Once fed through the fabric, a session stays so while its clients can be fed: what
        // the fabric keeps for it comes only that way.
        let fed = request.fabric_feed && (self.fabric_feeds(granted_expiry) || session.is_fabric_fed());
        session.set_fabric_fed(fed);
        if let Some(previous) = session.attach(conn_id, Arc::clone(&kick), window, version, granted_expiry) {
            // MQTT-3.1.4-2: the connection that held the session is closed (v5: 0x8E).
            previous.kick(ReasonCode::SESSION_TAKEN_OVER);
        }
        if session.lock().ended {
            // A clean start by the same client id ended this session between finding it and
            // attaching to it: this connection was taken over before it began (MQTT-3.1.4-3).
            kick.kick(ReasonCode::SESSION_TAKEN_OVER);
        }
        // Attached, then checked: a shutdown that started meanwhile either found this attachment
        // or set the flag before it (both take the session's lock), so no connection is missed.
        if self.shutting_down.load(Ordering::SeqCst) {
            kick.kick(ReasonCode::SERVER_SHUTTING_DOWN);
        }
        // MQTT-3.1.3-9: a new connection to the session before the will delay ran out cancels it.
        session.lock().delayed_will = None;
        // Attached, the session has no deadline: a client that reconnects over and over leaves
        // no entries behind.
        self.deadlines.cancel(expires_at, session.id());
        self.deadlines.cancel(will_due, session.id());
        if granted_expiry > 0 {
            if session_present && !was_persistent {
                // Resumed as persistent: what it made while it was not must be stored too.
                if let Some(journal) = &self.journal {
                    session.write_whole(journal);
                }
            }
            self.save_session(&session);
        } else if was_persistent {
            // Resumed to end with this connection: what the store kept of it goes now.
            if let Some(journal) = &self.journal {
                session.forget_stored(journal);
            }
        }
        self.stats.connections_accepted.add(1);
        let properties = if version.is_v5() { self.connack_properties(request) } else { Properties::default() };
        let connack = ConnAck { session_present, reason: ReasonCode::SUCCESS, properties };
        Ok(Admitted { session, conn_id, kick, connack })
    }

    /// The v5 CONNACK properties: what was assigned or changed, and every capability that
    /// differs from the protocol's default.
    fn connack_properties(&self, request: &ConnectRequest) -> Properties {
        let limits = &self.limits;
        let mut properties = Properties::default();
        if request.assigned {
            properties.assigned_client_identifier =
                Some(MqttString::new(&request.client_id).expect("assigned ids are ASCII"));
        }
        properties.server_keep_alive = request.server_keep_alive;
        if request.granted_expiry != request.requested_expiry {
            properties.session_expiry_interval = Some(request.granted_expiry);
        }
        if limits.receive_maximum != u16::MAX {
            properties.receive_maximum = Some(limits.receive_maximum);
        }
        if limits.max_qos < 2 {
            properties.maximum_qos = QoS::from_u8(limits.max_qos);
        }
        if !limits.retain_available {
            properties.retain_available = Some(false);
        }
        if limits.max_packet_size < PROTOCOL_MAX_PACKET_SIZE {
            properties.maximum_packet_size = Some(limits.max_packet_size);
        }
        if limits.topic_alias_maximum > 0 {
            properties.topic_alias_maximum = Some(limits.topic_alias_maximum);
        }
        if !limits.wildcard_subscription_available {
            properties.wildcard_subscription_available = Some(false);
        }
        if !limits.subscription_identifier_available {
            properties.subscription_identifier_available = Some(false);
        }
        if !limits.shared_subscription_available {
            properties.shared_subscription_available = Some(false);
        }
        properties
    }

    fn assign_client_id(&self) -> String {
        let mut hasher = self.id_seed.build_hasher();
        hasher.write_u64(self.next_id());
        format!("midge-{:016x}", hasher.finish())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use midge_codec::Connect;

    use super::*;
    use crate::ports::auth::{Identity, Verdict};
    use crate::{ClientConnection, CloseKind, ConnectContext, ConnectOutcome, Limits};

    fn connect(client_id: &str, clean_start: bool) -> Box<Connect> {
        Box::new(Connect {
            protocol: ProtocolVersion::V311,
            clean_start,
            keep_alive: 60,
            client_id: MqttString::new(client_id).expect("valid"),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
            bridge: false,
        })
    }

    fn allow() -> Verdict {
        Verdict::Allow(Identity { username: None, grants: None })
    }

    /// `use_username_as_clientid`: the id set after the check is the session's, so a second
    /// connection under it takes the first's persistent session over, whatever id each sent.
    #[test]
    fn a_replaced_client_id_names_the_session_and_takes_it_over() {
        let broker = Broker::new(Limits::default());
        let now = Instant::now();
        let mut request = broker.check_connect(connect("sent-by-a", false)).expect("checked");
        request.set_client_id(Arc::from("alice"));
        assert_eq!(&**request.client_id(), "alice");
        let ConnectOutcome::Accepted { connection: first, connack } =
            ClientConnection::accept(&broker, request, allow(), &ConnectContext::default(), now)
        else {
            panic!("accepted");
        };
        assert_eq!(&**first.client_id(), "alice");
        assert!(!connack.session_present);
        assert!(broker.sessions.lock().get("sent-by-a").is_none());

        let mut request = broker.check_connect(connect("sent-by-b", false)).expect("checked");
        request.set_client_id(Arc::from("alice"));
        let ConnectOutcome::Accepted { connection: second, connack } =
            ClientConnection::accept(&broker, request, allow(), &ConnectContext::default(), now)
        else {
            panic!("accepted");
        };
        assert!(connack.session_present, "the same session, taken over");
        assert_eq!(&**second.client_id(), "alice");
        assert_eq!(broker.sessions.lock().len(), 1);
    }

    /// Connects `connect` (as the broker's `own` session or a client's) and closes the
    /// connection without DISCONNECT at `now`; returns the CONNACK's Session Expiry Interval.
    fn connect_and_drop(broker: &Arc<Broker>, connect: Box<Connect>, own: bool, now: Instant) -> Option<u32> {
        let request = if own { broker.check_own_connect(connect) } else { broker.check_connect(connect) };
        let ConnectOutcome::Accepted { connection, connack } =
            ClientConnection::accept(broker, request.expect("checked"), allow(), &ConnectContext::default(), now)
        else {
            panic!("accepted");
        };
        connection.close(CloseKind::Abnormal, now);
        connack.properties.session_expiry_interval
    }

    fn v5(client_id: &str, expiry: u32) -> Box<Connect> {
        let mut connect = connect(client_id, false);
        connect.protocol = ProtocolVersion::V5;
        connect.properties.session_expiry_interval = Some(expiry);
        connect
    }

    /// `persistent_client_expiration`: a 3.1.1 persistent session (and a v5 one that asked for
    /// 0xFFFFFFFF) whose client stays away longer is removed at the broker's tick; a v5 session
    /// with an expiry of its own keeps it, and the broker's own session is never capped.
    #[test]
    fn persistent_client_expiration_removes_sessions_that_asked_never_to_expire() {
        let broker = Broker::new(Limits { persistent_client_expiration: 60, ..Limits::default() });
        let start = Instant::now();
        assert_eq!(connect_and_drop(&broker, connect("v311-persistent", false), false, start), None);
        assert_eq!(connect_and_drop(&broker, v5("v5-never", u32::MAX), false, start), Some(60), "told in CONNACK");
        assert_eq!(connect_and_drop(&broker, v5("v5-two-minutes", 120), false, start), None);
        assert_eq!(connect_and_drop(&broker, v5("bridge-local", u32::MAX), true, start), None);
        let held = |id: &str| broker.sessions.lock().contains_key(id);

        broker.tick(start + Duration::from_secs(59));
        assert!(held("v311-persistent") && held("v5-never"), "not yet");
        broker.tick(start + Duration::from_secs(61));
        assert!(!held("v311-persistent") && !held("v5-never"), "removed after persistent_client_expiration");
        assert!(held("v5-two-minutes"));
        broker.tick(start + Duration::from_secs(121));
        assert!(!held("v5-two-minutes"), "its own expiry");
        broker.tick(start + Duration::from_secs(365 * 86_400));
        assert!(held("bridge-local"), "the broker's own session never expires");
    }

    /// Without it (the default), a session that asked never to expire is kept.
    #[test]
    fn without_persistent_client_expiration_persistent_sessions_stay() {
        let broker = Broker::new(Limits::default());
        let start = Instant::now();
        connect_and_drop(&broker, connect("v311-persistent", false), false, start);
        broker.tick(start + Duration::from_secs(365 * 86_400));
        assert!(broker.sessions.lock().contains_key("v311-persistent"));
    }
}
