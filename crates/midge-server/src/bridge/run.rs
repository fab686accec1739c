//! One bridge's life: its session here made at start (so messages for the remote are kept
//! from the first moment, reached or not), then connect, relay, and after an outage back off
//! and connect again, as its `start_type` says; the link's state published as it changes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use midge_broker::{Broker, CloseKind};
use midge_client::codec::{QoS, Subscription, SubscriptionOptions, TopicName};
use midge_client::Client;
use midge_codec::{Properties, RetainHandling};
use midge_store::WriterHandle;
use tokio::sync::watch;
use tracing::{info, warn};

use super::link::{Link, LinkEnd};
use super::local;
use super::remote::Remote;
use super::topics::TopicMap;
use crate::config::{BridgeConfig, StartType};

/// How often a lazy bridge looks at its queue while it waits for `threshold` messages.
const LAZY_POLL: Duration = Duration::from_secs(1);

/// What every bridge shares.
#[derive(Debug, Clone)]
pub struct BridgeContext {
    /// The broker core.
    pub broker: Arc<Broker>,
    /// The store's writer, whose commits release acknowledgements; `None` without persistence.
    pub store: Option<WriterHandle>,
}

/// The client ids and notification topic of a bridge, its config's or mosquitto's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Names {
    pub(crate) remote_clientid: String,
    pub(crate) local_clientid: String,
    pub(crate) notification_topic: String,
}

impl Names {
    pub(crate) fn of(config: &BridgeConfig) -> Self {
        let remote_clientid =
            config.remote_clientid.clone().unwrap_or_else(|| format!("{}.{}", crate::config::hostname(), config.name));
        let local_clientid = config.local_clientid.clone().unwrap_or_else(|| format!("local.{remote_clientid}"));
        let notification_topic = config
            .notification_topic
            .clone()
            .unwrap_or_else(|| format!("$SYS/broker/connection/{}/state", config.name));
        Self { remote_clientid, local_clientid, notification_topic }
    }
}

/// Runs the bridge `config` until `stop` says so.
pub(super) async fn run(config: BridgeConfig, context: BridgeContext, mut stop: watch::Receiver<bool>) {
    let name = config.name.clone();
    let names = Names::of(&config);
    let map = TopicMap::new(&config.topic);
    let mut remote = match Remote::new(&config, &names.remote_clientid, &names.notification_topic) {
        Ok(remote) => remote,
        Err(error) => return tracing::error!(bridge = %name, %error, "bridge not started"),
    };
    let bridge = Bridge { config: &config, context: &context, names: &names, map: &map };
    // The session and its subscriptions exist from the start: what is published for the
    // remote before it was ever reached is kept too.
    if let Err(error) = bridge.prepare_session().await {
        return tracing::error!(bridge = %name, %error, "bridge not started: its local session cannot be made");
    }
    bridge.notify_local(false);
    let mut backoff = Backoff::new(&config.restart_timeout);
    loop {
        if config.start_type == StartType::Lazy && !bridge.wait_for_threshold(&mut stop).await {
            return;
        }
        let connected = tokio::select! {
            connected = remote.connect() => connected,
            _ = stop.changed() => return,
        };
        let end = match connected {
            Ok(connected) => {
                info!(bridge = %name, address = %connected.address, "bridge connected");
                backoff.reset();
                let end = bridge.serve(connected.client, &mut stop).await;
                bridge.notify_local(false);
                end
            }
            Err(error) => LinkEnd::Lost(format!("cannot connect: {error}")),
        };
        match end {
            LinkEnd::Stopped => return info!(bridge = %name, "bridge stopped"),
            LinkEnd::Idle => {
                info!(bridge = %name, "bridge idle: disconnected until messages wait again (start_type lazy)");
                continue;
            }
            LinkEnd::Lost(why) | LinkEnd::Local(why) => {
                if config.start_type == StartType::Once {
                    return warn!(bridge = %name, %why, "bridge down; not restarted (start_type once)");
                }
                let delay = backoff.next();
                warn!(bridge = %name, %why, retry_in_ms = delay.as_millis() as u64, "bridge down");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

/// One bridge's settings, borrowed for its life.
struct Bridge<'a> {
    config: &'a BridgeConfig,
    context: &'a BridgeContext,
    names: &'a Names,
    map: &'a TopicMap,
}

impl Bridge<'_> {
    /// Attaches the local session, makes its subscriptions durable, and detaches it.
    async fn prepare_session(&self) -> Result<(), String> {
        let mut connection =
            local::attach(&self.context.broker, &self.names.local_clientid, &self.config.name, u16::MAX)?;
        let subscribed = local::subscribe(&mut connection, self.map);
        connection.close(CloseKind::Normal, Instant::now());
        local::durable(self.context.store.as_ref(), subscribed?).await
    }

    /// A lazy bridge's wait until `threshold` messages wait for the remote; false: stopped.
    async fn wait_for_threshold(&self, stop: &mut watch::Receiver<bool>) -> bool {
        let threshold = self.config.threshold as usize;
        loop {
            let queued = self.context.broker.session(&self.names.local_clientid).map_or(0, |view| view.queued);
            if queued >= threshold {
                return true;
            }
            tokio::select! {
                () = tokio::time::sleep(LAZY_POLL) => {}
                _ = stop.changed() => return false,
            }
        }
    }

    /// A connected link: subscriptions at the remote, the session attached, then the relay.
    async fn serve(&self, mut client: Client, stop: &mut watch::Receiver<bool>) -> LinkEnd {
        let subscriptions = self.map.remote_subscriptions();
        if !subscriptions.is_empty() {
            let v5 = client.options().version.is_v5();
            let subscriptions = subscriptions
                .into_iter()
                .map(|(filter, qos)| Subscription {
                    filter,
                    options: SubscriptionOptions {
                        qos,
                        // What the bridge publishes there does not come back (v5; 3.1.1
                        // remotes have try_private's bridge level for it).
                        no_local: v5,
                        retain_as_published: v5,
                        retain_handling: RetainHandling::SendIfNew,
                    },
                })
                .collect();
            if let Err(error) = client.subscribe(subscriptions, Properties::default()) {
                return LinkEnd::Lost(format!("cannot subscribe at the remote: {error}"));
            }
        }
        // As many in flight to the remote as it takes (v5 Receive Maximum) and the core allows.
        let window = client.connack().properties.receive_maximum.unwrap_or(u16::MAX);
        let mut connection =
            match local::attach(&self.context.broker, &self.names.local_clientid, &self.config.name, window) {
                Ok(connection) => connection,
                Err(error) => return LinkEnd::Local(format!("the local session cannot be attached: {error}")),
            };
        let subscribed = local::subscribe(&mut connection, self.map);
        let subscribed = match subscribed {
            Ok(ticket) => local::durable(self.context.store.as_ref(), ticket).await,
            Err(error) => Err(error),
        };
        if let Err(error) = subscribed {
            connection.close(CloseKind::Normal, Instant::now());
            return LinkEnd::Local(error);
        }
        if self.config.notifications {
            self.notify_remote(&mut client, true);
        }
        self.notify_local(true);
        let mut link = Link::new(client, connection, self.map, self.context.store.clone());
        let idle = (self.config.start_type == StartType::Lazy).then(|| Duration::from_secs(self.config.idle_timeout));
        let end = link.run(stop, idle).await;
        let (mut client, connection) = link.into_parts();
        // The session stays, with what is in flight and queued: resent on the next link.
        connection.close(CloseKind::Normal, Instant::now());
        if matches!(end, LinkEnd::Stopped | LinkEnd::Idle) && client.is_connected() {
            // A clean end discards the will: the state is said in its place.
            if self.config.notifications {
                self.notify_remote(&mut client, false);
            }
            let _ = tokio::time::timeout(Duration::from_secs(2), client.disconnect()).await;
        }
        end
    }

    /// The link's state, retained, on the notification topic here.
    fn notify_local(&self, up: bool) {
        if !self.config.notifications {
            return;
        }
        let Ok(topic) = TopicName::new(self.names.notification_topic.as_str()) else { return };
        let payload = local::state_payload(up);
        if let Err(error) =
            self.context.broker.publish_own(topic, payload, local::NOTIFICATION_QOS, true, Instant::now())
        {
            tracing::debug!(bridge = %self.config.name, error, "bridge: the state notification was not published");
        }
    }

    /// The link's state, retained, on the notification topic at the remote (its will says `0`
    /// if the link drops).
    fn notify_remote(&self, client: &mut Client, up: bool) {
        let Ok(topic) = TopicName::new(self.names.notification_topic.as_str()) else { return };
        // QoS 0: in relay mode the client keeps no state for its own messages.
        let _ = client.publish(&topic, local::state_payload(up), QoS::AtMostOnce, true);
    }
}

/// `restart_timeout`: a constant delay, or backoff from `base` to `cap` with jitter
/// ("decorrelated jitter": each delay drawn between `base` and three times the last, capped),
/// so bridges of many brokers that lost the same remote do not come back in step.
#[derive(Debug)]
struct Backoff {
    base: Duration,
    cap: Duration,
    last: Duration,
}

impl Backoff {
    fn new(restart_timeout: &[u64]) -> Self {
        let (base, cap) = match restart_timeout {
            [base, cap, ..] => (*base, *cap),
            [seconds] => (*seconds, *seconds),
            [] => (5, 30),
        };
        let base = Duration::from_secs(base);
        Self { base, cap: Duration::from_secs(cap), last: base }
    }

    fn reset(&mut self) {
        self.last = self.base;
    }

    fn next(&mut self) -> Duration {
        if self.base == self.cap {
            return self.base;
        }
        let high = (self.last * 3).min(self.cap).max(self.base);
        let span = (high - self.base).as_millis() as u64;
        let mut bytes = [0u8; 8];
        let random = if getrandom::fill(&mut bytes).is_ok() { u64::from_le_bytes(bytes) } else { 0 };
        let delay = self.base + Duration::from_millis(if span == 0 { 0 } else { random % (span + 1) });
        self.last = delay;
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_between_base_and_cap() {
        let mut backoff = Backoff::new(&[1, 8]);
        for _ in 0..100 {
            let delay = backoff.next();
            assert!(delay >= Duration::from_secs(1) && delay <= Duration::from_secs(8), "{delay:?}");
        }
        let mut constant = Backoff::new(&[3]);
        assert_eq!(constant.next(), Duration::from_secs(3));
        assert_eq!(constant.next(), Duration::from_secs(3));
    }

    #[test]
    fn names_default_as_mosquittos() {
        let mut config = BridgeConfig::new("cloud");
        let names = Names::of(&config);
        assert!(names.remote_clientid.ends_with(".cloud"), "{names:?}");
        assert_eq!(names.local_clientid, format!("local.{}", names.remote_clientid));
        assert_eq!(names.notification_topic, "$SYS/broker/connection/cloud/state");
        config.remote_clientid = Some("edge-7".into());
        config.notification_topic = Some("bridges/cloud".into());
        let names = Names::of(&config);
        assert_eq!(
            (names.local_clientid.as_str(), names.notification_topic.as_str()),
            ("local.edge-7", "bridges/cloud")
        );
    }
}
