//! The client thread: owns the connection on a current-thread runtime, runs the commands the
//! main thread sends, and prints incoming messages as they arrive.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use bytes::Bytes;
use midge_client::codec::{PacketId, Properties, QoS, Subscription, TopicFilter, TopicName};
use midge_client::{Client, Error, Event};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client::{describe, Tool};

/// A command for the client thread, with where to send its answer.
pub(super) struct Request {
    pub(super) command: Command,
    pub(super) answer: std_mpsc::Sender<String>,
}

/// What the client thread does.
pub(super) enum Command {
    Connect(Box<crate::client::Connection>),
    Disconnect,
    Publish { topic: TopicName, payload: Bytes, qos: QoS, retain: bool },
    Subscribe { subscriptions: Vec<Subscription> },
    Unsubscribe { filters: Vec<TopicFilter> },
    Subscriptions,
    Status,
    Wait { count: u64, timeout: Duration },
    Quit,
}

/// What the client thread keeps.
pub(super) struct Worker {
    client: Option<Client>,
    /// Where the current connection goes, for `status`.
    broker: String,
    /// Filter → granted code, for `subscriptions`.
    subscriptions: BTreeMap<String, u8>,
    /// Commands waiting for an acknowledgement, by packet id.
    waiting: HashMap<PacketId, (std_mpsc::Sender<String>, Vec<String>)>,
    /// A `wait` in progress: messages still expected, when to give up, whom to answer.
    wait: Option<(u64, Instant, std_mpsc::Sender<String>)>,
    /// Messages received since start.
    received: u64,
    /// Messages received that no `wait` has counted yet.
    unwaited: u64,
    /// Prints incoming messages and connection news.
    print: Box<dyn FnMut(String) + Send>,
}

pub(super) async fn client_loop(mut requests: mpsc::UnboundedReceiver<Request>, print: Box<dyn FnMut(String) + Send>) {
    let mut worker = Worker {
        client: None,
        broker: String::new(),
        subscriptions: BTreeMap::new(),
        waiting: HashMap::new(),
        wait: None,
        received: 0,
        unwaited: 0,
        print,
    };
    loop {
        let deadline = worker.wait.as_ref().map(|(_, deadline, _)| *deadline);
        tokio::select! {
            request = requests.recv() => {
                let Some(request) = request else { break };
                if !worker.handle(request).await {
                    break;
                }
            }
            event = next_event(&mut worker.client) => worker.event(event),
            () = sleep_until(deadline) => {
                if let Some((left, _, answer)) = worker.wait.take() {
                    let _ = answer.send(format!("Timed out waiting: {left} message(s) did not arrive."));
                }
            }
        }
    }
}

pub(super) async fn next_event(client: &mut Option<Client>) -> Result<Event, Error> {
    match client {
        Some(client) => client.poll().await,
        None => std::future::pending().await,
    }
}

pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl Worker {
    /// Runs a command; false after `quit`.
    async fn handle(&mut self, request: Request) -> bool {
        let Request { command, answer } = request;
        let reply = |text: String| {
            let _ = answer.send(text);
        };
        match command {
            Command::Connect(connection) => {
                if self.client.as_ref().is_some_and(Client::is_connected) {
                    reply("Already connected; `disconnect` first.".into());
                    return true;
                }
                let options = connection.options;
                let broker = format!("{}:{}", options.server.host, options.server.port);
                match Client::connect(options).await {
                    Ok(client) => {
                        let connack = client.connack();
                        let id = connack
                            .properties
                            .assigned_client_identifier
                            .as_ref()
                            .map(|id| id.to_string())
                            .unwrap_or_else(|| client.options().client_id.clone());
                        reply(format!(
                            "Connected to {broker} (client id '{id}', session present: {}).",
                            connack.session_present
                        ));
                        if !connack.session_present {
                            self.subscriptions.clear();
                        }
                        self.broker = broker;
                        self.client = Some(client);
                    }
                    Err(error) => reply(describe(&error, Tool::Sub).0),
                }
            }
            Command::Disconnect => match self.client.take() {
                Some(mut client) => {
                    let _ = client.disconnect().await;
                    self.fail_waiting("disconnected");
                    reply("Disconnected.".into());
                }
                None => reply("Not connected.".into()),
            },
            Command::Publish { topic, payload, qos, retain } => {
                let Some(client) = self.connected(&answer) else { return true };
                match client.publish(&topic, payload, qos, retain) {
                    Ok(Some(packet_id)) => {
                        self.waiting.insert(packet_id, (answer, Vec::new()));
                    }
                    Ok(None) => match client.flush().await {
                        Ok(()) => reply("Published.".into()),
                        Err(error) => reply(describe(&error, Tool::Pub).0),
                    },
                    Err(error) => reply(format!("Error: {error}.")),
                }
            }
            Command::Subscribe { subscriptions } => {
                let Some(client) = self.connected(&answer) else { return true };
                let filters = subscriptions.iter().map(|s| s.filter.to_string()).collect();
                match client.subscribe(subscriptions, Properties::default()) {
                    Ok(packet_id) => {
                        self.waiting.insert(packet_id, (answer, filters));
                    }
                    Err(error) => reply(format!("Error: {error}.")),
                }
            }
            Command::Unsubscribe { filters } => {
                let Some(client) = self.connected(&answer) else { return true };
                let names = filters.iter().map(|f| f.to_string()).collect();
                match client.unsubscribe(filters, Properties::default()) {
                    Ok(packet_id) => {
                        self.waiting.insert(packet_id, (answer, names));
                    }
                    Err(error) => reply(format!("Error: {error}.")),
                }
            }
            Command::Subscriptions => {
                if self.subscriptions.is_empty() {
                    reply("No subscriptions.".into());
                } else {
                    let lines: Vec<String> =
                        self.subscriptions.iter().map(|(filter, qos)| format!("{filter} (QoS {qos})")).collect();
                    reply(lines.join("\n"));
                }
            }
            Command::Status => reply(self.status()),
            Command::Wait { count, timeout } => {
                if self.unwaited >= count {
                    self.unwaited -= count;
                    reply("Received.".into());
                } else {
                    self.wait = Some((count - self.unwaited, Instant::now() + timeout, answer));
                    self.unwaited = 0;
                }
            }
            Command::Quit => {
                if let Some(mut client) = self.client.take() {
                    let _ = client.disconnect().await;
                }
                reply(String::new());
                return false;
            }
        }
        true
    }

    fn connected(&mut self, answer: &std_mpsc::Sender<String>) -> Option<&mut Client> {
        if self.client.is_none() {
            let _ = answer.send("Not connected; use `connect` first.".into());
        }
        self.client.as_mut()
    }

    fn status(&self) -> String {
        let Some(client) = &self.client else {
            return format!("Not connected. {} message(s) received.", self.received);
        };
        let options = client.options();
        let version = match options.version {
            midge_client::codec::ProtocolVersion::V31 => "3.1",
            midge_client::codec::ProtocolVersion::V311 => "3.1.1",
            midge_client::codec::ProtocolVersion::V5 => "5.0",
        };
        format!(
            "Connected to {} with MQTT {version}, client id '{}', keep alive {} s, {} session.\n\
             {} subscription(s), {} message(s) received, {} unacknowledged.",
            self.broker,
            options.client_id,
            options.keep_alive,
            if options.clean_start { "clean" } else { "persistent" },
            self.subscriptions.len(),
            self.received,
            client.unacknowledged()
        )
    }

    fn event(&mut self, event: Result<Event, Error>) {
        match event {
            Ok(Event::Message(message)) => {
                self.received += 1;
                let payload = String::from_utf8_lossy(&message.payload);
                let flags = match (message.qos, message.retain) {
                    (QoS::AtMostOnce, false) => String::new(),
                    (qos, retain) => format!(" [qos {}{}]", qos.as_u8(), if retain { ", retained" } else { "" }),
                };
                (self.print)(format!("{} {payload}{flags}", message.topic));
                match self.wait.take() {
                    Some((left, deadline, answer)) if left > 1 => self.wait = Some((left - 1, deadline, answer)),
                    Some((_, _, answer)) => {
                        let _ = answer.send("Received.".into());
                    }
                    None => self.unwaited += 1,
                }
            }
            Ok(Event::Published { packet_id, reason, .. }) => {
                if let Some((answer, _)) = self.waiting.remove(&packet_id) {
                    let text = if reason.is_error() {
                        format!("Publish {packet_id} failed: {reason}.")
                    } else {
                        format!("Published (mid {packet_id}).")
                    };
                    let _ = answer.send(text);
                }
            }
            Ok(Event::Subscribed(suback)) => {
                if let Some((answer, filters)) = self.waiting.remove(&suback.packet_id) {
                    let mut parts = Vec::new();
                    for (filter, code) in filters.into_iter().zip(&suback.reasons) {
                        if code.is_error() {
                            parts.push(format!("{filter} refused ({code})"));
                        } else {
                            parts.push(format!("{filter} (QoS {})", code.0));
                            self.subscriptions.insert(filter, code.0);
                        }
                    }
                    let _ = answer.send(format!("Subscribed: {}.", parts.join(", ")));
                }
            }
            Ok(Event::Unsubscribed(unsuback)) => {
                if let Some((answer, filters)) = self.waiting.remove(&unsuback.packet_id) {
                    for filter in &filters {
                        self.subscriptions.remove(filter);
                    }
                    let _ = answer.send(format!("Unsubscribed: {}.", filters.join(", ")));
                }
            }
            // Relay mode is off: never given.
            Ok(Event::Relayed(_)) => {}
            Ok(Event::Reconnected { .. }) => {}
            Err(error) => {
                self.client = None;
                (self.print)(describe(&error, Tool::Sub).0);
                self.fail_waiting("the connection was lost");
            }
        }
    }

    /// Answers every command still waiting for the broker.
    fn fail_waiting(&mut self, why: &str) {
        for (_, (answer, _)) in self.waiting.drain() {
            let _ = answer.send(format!("Error: {why} before the broker answered."));
        }
        if let Some((_, _, answer)) = self.wait.take() {
            let _ = answer.send(format!("Error: {why}."));
        }
    }
}
