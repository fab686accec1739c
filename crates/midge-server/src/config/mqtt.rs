//! The `[mqtt]` table: the broker core's capabilities and bounds as the config file names them,
//! turned into the core's [`Limits`] (whose documentation gives each setting's reason and
//! default; docs/configuration.md gives them to users).

use midge_broker::{LimitError, Limits, SlowConsumerPolicy};
use serde::Deserialize;

/// The `[mqtt]` table. Every key defaults to [`Limits::default`]'s value.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// [`Limits::max_qos`].
    pub max_qos: u8,
    /// [`Limits::retain_available`].
    pub retain_available: bool,
    /// [`Limits::max_packet_size`].
    pub max_packet_size: u32,
    /// [`Limits::topic_alias_maximum`].
    pub topic_alias_maximum: u16,
    /// [`Limits::receive_maximum`].
    pub receive_maximum: u16,
    /// [`Limits::max_keepalive`].
    pub max_keepalive: u16,
    /// [`Limits::wildcard_subscription_available`].
    pub wildcard_subscription_available: bool,
    /// [`Limits::shared_subscription_available`].
    pub shared_subscription_available: bool,
    /// [`Limits::subscription_identifier_available`].
    pub subscription_identifier_available: bool,
    /// [`Limits::max_inflight_messages`].
    pub max_inflight_messages: u16,
    /// [`Limits::max_queued_messages`]. Given alone, it bounds offline queues too, as in
    /// mosquitto (see `offline_limits`).
    pub max_queued_messages: Option<usize>,
    /// [`Limits::max_queued_bytes`]; given alone, it bounds offline queues too.
    pub max_queued_bytes: Option<usize>,
    /// [`Limits::max_offline_messages`].
    pub max_offline_messages: Option<usize>,
    /// [`Limits::max_offline_bytes`].
    pub max_offline_bytes: Option<usize>,
    /// [`Limits::queue_qos0_messages`].
    pub queue_qos0_messages: bool,
    /// [`Limits::pace_qos0`].
    pub pace_qos0: bool,
    /// [`Limits::slow_consumer_timeout_ms`].
    pub slow_consumer_timeout_ms: u64,
    /// [`Limits::slow_consumer_policy`]: `"drop"` or `"disconnect"`.
    pub slow_consumer_policy: SlowConsumerSetting,
    /// [`Limits::connect_timeout_ms`].
    pub connect_timeout_ms: u64,
    /// [`Limits::max_session_expiry_interval`].
    pub max_session_expiry_interval: u32,
    /// [`Limits::persistent_client_expiration`]: seconds, 0 never.
    pub persistent_client_expiration: u32,
    /// [`Limits::allow_zero_length_clientid`].
    pub allow_zero_length_clientid: bool,
    /// [`Limits::max_subscriptions_per_client`].
    pub max_subscriptions_per_client: usize,
    /// [`Limits::max_topic_levels`].
    pub max_topic_levels: usize,
    /// [`Limits::max_topic_length`].
    pub max_topic_length: usize,
    /// [`Limits::max_sessions`].
    pub max_sessions: usize,
    /// [`Limits::max_retained_messages`].
    pub max_retained_messages: usize,
    /// [`Limits::max_retained_bytes`].
    pub max_retained_bytes: usize,
    /// [`Limits::max_inbound_messages_per_second`].
    pub max_inbound_messages_per_second: u32,
    /// [`Limits::max_inbound_bytes_per_second`].
    pub max_inbound_bytes_per_second: u64,
}

/// `slow_consumer_policy` as the config file spells it.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SlowConsumerSetting {
    /// [`SlowConsumerPolicy::Drop`].
    Drop,
    /// [`SlowConsumerPolicy::Disconnect`].
    Disconnect,
}

impl Default for MqttConfig {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            max_qos: limits.max_qos,
            retain_available: limits.retain_available,
            max_packet_size: limits.max_packet_size,
            topic_alias_maximum: limits.topic_alias_maximum,
            receive_maximum: limits.receive_maximum,
            max_keepalive: limits.max_keepalive,
            wildcard_subscription_available: limits.wildcard_subscription_available,
            shared_subscription_available: limits.shared_subscription_available,
            subscription_identifier_available: limits.subscription_identifier_available,
            max_inflight_messages: limits.max_inflight_messages,
            max_queued_messages: None,
            max_queued_bytes: None,
            max_offline_messages: None,
            max_offline_bytes: None,
            queue_qos0_messages: limits.queue_qos0_messages,
            pace_qos0: limits.pace_qos0,
            slow_consumer_timeout_ms: limits.slow_consumer_timeout_ms,
            slow_consumer_policy: match limits.slow_consumer_policy {
                SlowConsumerPolicy::Drop => SlowConsumerSetting::Drop,
                SlowConsumerPolicy::Disconnect => SlowConsumerSetting::Disconnect,
            },
            connect_timeout_ms: limits.connect_timeout_ms,
            max_session_expiry_interval: limits.max_session_expiry_interval,
            persistent_client_expiration: limits.persistent_client_expiration,
            allow_zero_length_clientid: limits.allow_zero_length_clientid,
            max_subscriptions_per_client: limits.max_subscriptions_per_client,
            max_topic_levels: limits.max_topic_levels,
            max_topic_length: limits.max_topic_length,
            max_sessions: limits.max_sessions,
            max_retained_messages: limits.max_retained_messages,
            max_retained_bytes: limits.max_retained_bytes,
            max_inbound_messages_per_second: limits.max_inbound_messages_per_second,
            max_inbound_bytes_per_second: limits.max_inbound_bytes_per_second,
        }
    }
}

impl MqttConfig {
    /// The core's limits, checked.
    pub fn limits(&self) -> Result<Limits, LimitError> {
        let defaults = Limits::default();
        let limits = Limits {
            max_qos: self.max_qos,
            retain_available: self.retain_available,
            max_packet_size: self.max_packet_size,
            topic_alias_maximum: self.topic_alias_maximum,
            receive_maximum: self.receive_maximum,
            max_keepalive: self.max_keepalive,
            wildcard_subscription_available: self.wildcard_subscription_available,
            shared_subscription_available: self.shared_subscription_available,
            subscription_identifier_available: self.subscription_identifier_available,
            max_inflight_messages: self.max_inflight_messages,
            max_queued_messages: self.max_queued_messages.unwrap_or(defaults.max_queued_messages),
            max_queued_bytes: self.max_queued_bytes.unwrap_or(defaults.max_queued_bytes),
            // mosquitto's `max_queued_messages` / `max_queued_bytes` bound a session's queue
            // whether or not its client is connected: a user who sets only them keeps that
            // meaning; the offline bounds default to sizes for an outage otherwise.
            max_offline_messages: self
                .max_offline_messages
                .or(self.max_queued_messages)
                .unwrap_or(defaults.max_offline_messages),
            max_offline_bytes: self.max_offline_bytes.or(self.max_queued_bytes).unwrap_or(defaults.max_offline_bytes),
            queue_qos0_messages: self.queue_qos0_messages,
            pace_qos0: self.pace_qos0,
            slow_consumer_timeout_ms: self.slow_consumer_timeout_ms,
            slow_consumer_policy: match self.slow_consumer_policy {
                SlowConsumerSetting::Drop => SlowConsumerPolicy::Drop,
                SlowConsumerSetting::Disconnect => SlowConsumerPolicy::Disconnect,
            },
            connect_timeout_ms: self.connect_timeout_ms,
            max_session_expiry_interval: self.max_session_expiry_interval,
            persistent_client_expiration: self.persistent_client_expiration,
            allow_zero_length_clientid: self.allow_zero_length_clientid,
            max_subscriptions_per_client: self.max_subscriptions_per_client,
            max_topic_levels: self.max_topic_levels,
            max_topic_length: self.max_topic_length,
            max_sessions: self.max_sessions,
            max_retained_messages: self.max_retained_messages,
            max_retained_bytes: self.max_retained_bytes,
            max_inbound_messages_per_second: self.max_inbound_messages_per_second,
            max_inbound_bytes_per_second: self.max_inbound_bytes_per_second,
        };
        limits.validate()?;
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_cores_and_round_trip() {
        assert_eq!(MqttConfig::default().limits(), Ok(Limits::default()));
    }

    #[test]
    fn every_key_reaches_the_limits() {
        let config: MqttConfig = toml::from_str(
            "max_qos = 1\nmax_queued_messages = 7\nslow_consumer_policy = \"disconnect\"\nmax_topic_levels = 9\n\
             pace_qos0 = false\npersistent_client_expiration = 3600\n",
        )
        .expect("parses");
        let limits = config.limits().expect("valid");
        assert_eq!(limits.max_qos, 1);
        assert_eq!(limits.persistent_client_expiration, 3600);
        assert_eq!(limits.max_queued_messages, 7);
        assert_eq!(limits.slow_consumer_policy, SlowConsumerPolicy::Disconnect);
        assert_eq!(limits.max_topic_levels, 9);
        assert!(!limits.pace_qos0);
        let bad = MqttConfig { max_qos: 3, ..MqttConfig::default() };
        assert_eq!(bad.limits().unwrap_err().key, "max_qos");
    }

    /// mosquitto's `max_queued_messages` and `max_queued_bytes`, given alone, bound a session's
    /// queue offline too; the offline keys, given, win; neither given: sizes for an outage.
    #[test]
    fn max_queued_given_alone_keeps_mosquittos_meaning_offline() {
        let limits =
            |toml_text: &str| toml::from_str::<MqttConfig>(toml_text).expect("parses").limits().expect("valid");
        let defaults = limits("");
        assert_eq!((defaults.max_offline_messages, defaults.max_offline_bytes), (100_000, 64 << 20));
        let mosquitto = limits(
            "max_queued_messages = 500
max_queued_bytes = 4096
",
        );
        assert_eq!((mosquitto.max_offline_messages, mosquitto.max_offline_bytes), (500, 4096));
        assert_eq!((mosquitto.max_queued_messages, mosquitto.max_queued_bytes), (500, 4096));
        let both = limits(
            "max_queued_messages = 500
max_offline_messages = 9000
max_offline_bytes = 0
",
        );
        assert_eq!((both.max_offline_messages, both.max_offline_bytes), (9000, 0));
        let zero = toml::from_str::<MqttConfig>(
            "max_offline_messages = 0
",
        )
        .expect("parses")
        .limits();
        assert_eq!(zero.unwrap_err().key, "max_offline_messages");
    }
}
