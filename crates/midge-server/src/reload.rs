//! What a reload changes, without I/O: the running config and the one just read become a
//! [`Plan`], a list of steps for the server to carry out ([`crate::server::Reloader`]) and the
//! lines to log, each change once.
//!
//! A listener is known by its protocol and its `bind` as written ([`ListenerKey`]): the same
//! pair in both configs is the same listener, kept with its sockets and its connections; a pair
//! only in the new config is added, one only in the old config removed. Two listeners with the
//! same pair (two `127.0.0.1:0`, say) are told apart by their order.
//!
//! Each setting is either applied live or reported as needing a restart
//! ([`Plan::restart`]), never silently ignored:
//!
//! | setting | on reload |
//! |---|---|
//! | `[[listener]]` added, removed | bound and started; closed with its connections |
//! | a listener's own keys (security, TLS, limits, websocket, proxy, HTTP) | new connections |
//! | a listener's `sn_*` keys | after a restart |
//! | `[log]` | live |
//! | `[sys]`, `[connections]` | live |
//! | `[mqtt]`, `[store]`, `[cluster]` | after a restart |

use std::collections::HashMap;
use std::fmt;

use crate::config::{
    ConnectionsConfig, ListenerConfig, ListenerProtocol, LogConfig, MqttConfig, ServerConfig, StoreConfig, SysConfig,
};

/// For each named field that differs between `$old` and `$new`, pushes "`$table` field old ->
/// new" onto `$out` (or the line `$line` makes of them).
macro_rules! diff {
    ($old:expr, $new:expr, $table:expr, $out:expr, [$($field:ident),* $(,)?]) => {
        diff!($old, $new, $table, $out, change_line, [$($field),*])
    };
    ($old:expr, $new:expr, $table:expr, $out:expr, $line:ident, [$($field:ident),* $(,)?]) => {
        $(
            if $old.$field != $new.$field {
                $out.push($line($table, stringify!($field), &$old.$field, &$new.$field));
            }
        )*
    };
}

/// A listener's identity across reloads: what it speaks, where (its `bind` as written), and
/// which of the listeners with both the same it is (from 0, in config order).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListenerKey {
    /// Its `protocol`.
    pub protocol: ListenerProtocol,
    /// Its `bind`, as written (an MQTT-SN listener's with its default port).
    pub bind: String,
    /// Its place among the listeners with the same protocol and bind, from 0.
    pub nth: usize,
}

impl fmt::Display for ListenerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.bind, self.protocol)?;
        if self.nth > 0 {
            write!(f, " #{}", self.nth + 1)?;
        }
        Ok(())
    }
}

/// The keys of `listeners`, in their order.
pub fn listener_keys(listeners: &[ListenerConfig]) -> Vec<ListenerKey> {
    let mut seen: HashMap<(ListenerProtocol, String), usize> = HashMap::new();
    listeners
        .iter()
        .map(|listener| {
            // The interface is where it listens too: another one is another listener.
            let bind = match &listener.bind_interface {
                Some(interface) => format!("{} on {interface}", listener.bind),
                None => listener.bind.to_string(),
            };
            let nth = seen.entry((listener.protocol, bind.clone())).or_default();
            let key = ListenerKey { protocol: listener.protocol, bind, nth: *nth };
            *nth += 1;
            key
        })
        .collect()
}

/// What to do with one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerStep {
    /// In both configs with the same settings: kept; its files are read again.
    Keep {
        /// Its place in the running (old) listeners, from 0.
        old: usize,
        /// Its place in the new config, from 0.
        new: usize,
    },
    /// In both configs with other settings: kept with its sockets and connections; new
    /// connections get the new settings.
    Change {
        /// Its place in the running (old) listeners, from 0.
        old: usize,
        /// Its place in the new config, from 0.
        new: usize,
        /// What changed, one entry per key (`max_connections 10 -> 20`).
        what: Vec<String>,
    },
    /// Only in the new config: bound and started.
    Add {
        /// Its place in the new config, from 0.
        new: usize,
    },
    /// Only in the old config: closed, and its connections with it.
    Remove {
        /// Its place in the running (old) listeners, from 0.
        old: usize,
    },
}

/// What a reload changes, from [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Every listener of either config, once: removed ones first, then the new config's in
    /// order.
    pub listeners: Vec<ListenerStep>,
    /// The new `[log]`, when it changed (each change is in [`Plan::changes`]).
    pub log: Option<LogConfig>,
    /// The new `[sys]`, when it changed.
    pub sys: Option<SysConfig>,
    /// The new `[connections]`, when it changed.
    pub connections: Option<ConnectionsConfig>,
    /// What is applied live, one line per change, to log at info level: `[log] level info ->
    /// debug`. Listeners' lines are made by the server, which knows their numbers.
    pub changes: Vec<String>,
    /// What changed but takes effect only after a restart, one line per setting ("`[mqtt]
    /// max_qos changed (2 -> 1)`"), to log with ": takes effect after a restart".
    pub restart: Vec<String>,
}

impl Plan {
    /// Whether nothing changed (the listeners' files are read again all the same).
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
            && self.restart.is_empty()
            && self.listeners.iter().all(|step| matches!(step, ListenerStep::Keep { .. }))
    }
}

/// What it takes to go from `old`, the running config, to `new`, a config already checked.
/// `old_listeners` are the running listeners' configs in their order (the effective ones: the
/// default listener when the file has none).
pub fn plan(old: &ServerConfig, old_listeners: &[ListenerConfig], new: &ServerConfig) -> Plan {
    let new_listeners = new.effective_listeners();
    let mut changes = Vec::new();
    let mut restart = Vec::new();

    let listeners = plan_listeners(old_listeners, &new_listeners, &mut restart);

    let log = (old.log != new.log).then(|| {
        log_changes(&old.log, &new.log, &mut changes);
        new.log.clone()
    });
    let sys = (old.sys != new.sys).then(|| {
        diff!(old.sys, new.sys, "[sys]", changes, [interval, events]);
        new.sys
    });

    if old.mqtt != new.mqtt {
        let before = restart.len();
        diff!(
            old.mqtt,
            new.mqtt,
            "[mqtt]",
            restart,
            restart_line,
            [
                max_qos,
                retain_available,
                max_packet_size,
                topic_alias_maximum,
                receive_maximum,
                max_keepalive,
                wildcard_subscription_available,
                shared_subscription_available,
                subscription_identifier_available,
                max_inflight_messages,
                max_queued_messages,
                max_queued_bytes,
                max_offline_messages,
                max_offline_bytes,
                slow_consumer_timeout_ms,
                slow_consumer_policy,
                connect_timeout_ms,
                max_session_expiry_interval,
                persistent_client_expiration,
                allow_zero_length_clientid,
                max_subscriptions_per_client,
                max_topic_levels,
                max_topic_length,
                max_sessions,
                max_retained_messages,
                max_retained_bytes,
                max_inbound_messages_per_second,
                max_inbound_bytes_per_second
            ]
        );
        if restart.len() == before {
            // A key this list does not name yet: still reported, never ignored.
            restart.push("[mqtt] changed".to_owned());
        }
    }
    if old.store != new.store {
        let before = restart.len();
        diff!(old.store, new.store, "[store]", restart, restart_line, [persistence, data_dir, sync, max_size_mb]);
        if restart.len() == before {
            restart.push("[store] changed".to_owned());
        }
    }
    if old.cluster != new.cluster {
        // The node's name, its NATS servers and credentials: it leaves and joins only at start.
        restart.push("[cluster] changed".to_owned());
    }
    let connections = (old.connections != new.connections).then(|| {
        let (old, new) = (old.connections, new.connections);
        if old.max_connections != new.max_connections {
            let shown = |max: Option<crate::config::MaxConnections>| match max {
                Some(max) => max.to_string(),
                None => "the open-file limit".to_owned(),
            };
            changes.push(format!(
                "[connections] max_connections {} -> {}",
                shown(old.max_connections),
                shown(new.max_connections)
            ));
        }
        diff!(old, new, "[connections]", changes, [max_connection_rate]);
        new
    });
    // Any other section (one added to `ServerConfig` after this plan was written): reported as
    // waiting for a restart, never ignored in silence. Every field is named today, so the
    // update takes nothing yet. Bridges are applied by the reloader (`Bridges::apply`).
    #[allow(clippy::needless_update)]
    let rest = |config: &ServerConfig| ServerConfig {
        listener: Vec::new(),
        log: LogConfig::default(),
        mqtt: MqttConfig::default(),
        store: StoreConfig::default(),
        connections: ConnectionsConfig::default(),
        sys: SysConfig::default(),
        bridge: Vec::new(),
        cluster: None,
        ..config.clone()
    };
    if rest(old) != rest(new) {
        restart.push("a section a reload does not apply yet changed".to_owned());
    }

    Plan { listeners, log, sys, connections, changes, restart }
}

/// The config a kept listener runs with after a reload to `new`: `new`, with the settings that
/// take a restart (its MQTT-SN gateway's) as they run in `old`, so that the next reload reports
/// them again.
pub fn running_after(old: &ListenerConfig, new: ListenerConfig) -> ListenerConfig {
    ListenerConfig {
        sn_gateway_id: old.sn_gateway_id,
        sn_retry_interval_ms: old.sn_retry_interval_ms,
        sn_retry_count: old.sn_retry_count,
        sn_predefined_topics: old.sn_predefined_topics.clone(),
        sn_advertise_address: old.sn_advertise_address.clone(),
        sn_advertise_interval_s: old.sn_advertise_interval_s,
        ..new
    }
}

/// The listeners' steps: removed ones, then the new config's in order.
fn plan_listeners(old: &[ListenerConfig], new: &[ListenerConfig], restart: &mut Vec<String>) -> Vec<ListenerStep> {
    let old_keys = listener_keys(old);
    let new_keys = listener_keys(new);
    let old_by_key: HashMap<&ListenerKey, usize> = old_keys.iter().enumerate().map(|(i, key)| (key, i)).collect();
    let mut steps: Vec<ListenerStep> = old_keys
        .iter()
        .enumerate()
        .filter(|(_, key)| !new_keys.contains(key))
        .map(|(old, _)| ListenerStep::Remove { old })
        .collect();
    for (new_index, key) in new_keys.iter().enumerate() {
        let step = match old_by_key.get(key) {
            None => ListenerStep::Add { new: new_index },
            Some(&old_index) if old[old_index] == new[new_index] => {
                ListenerStep::Keep { old: old_index, new: new_index }
            }
            Some(&old_index) => {
                let (what, after_restart) = listener_changes(&old[old_index], &new[new_index]);
                restart.extend(after_restart.into_iter().map(|what| format!("listener {key}: {what}")));
                ListenerStep::Change { old: old_index, new: new_index, what }
            }
        };
        steps.push(step);
    }
    steps
}

/// What changed between two configs of one listener: what new connections get (first), and
/// what takes a restart (its MQTT-SN gateway's settings, which its clients' tasks share).
fn listener_changes(old: &ListenerConfig, new: &ListenerConfig) -> (Vec<String>, Vec<String>) {
    let mut live = Vec::new();
    if old.max_connections != new.max_connections {
        live.push(format!("max_connections {} -> {}", old.max_connections, new.max_connections));
    }
    diff!(
        old,
        new,
        "",
        live,
        [
            allow_anonymous,
            acl_file,
            password_file,
            certfile,
            keyfile,
            tls_version,
            cafile,
            capath,
            crlfile,
            require_certificate,
            use_identity_as_username,
            use_subject_as_username,
            use_username_as_clientid,
            websocket_path,
            websocket_origins,
            websocket_max_frame_size,
            enable_proxy_protocol,
            websocket_trusted_proxies,
            websocket_forwarded_header,
            metrics_anonymous
        ]
    );
    // Secrets: named, never shown.
    for (key, changed) in [
        ("jwt", old.jwt != new.jwt),
        ("http_auth", old.http_auth != new.http_auth),
        ("http_tokens", old.http_tokens != new.http_tokens),
    ] {
        if changed {
            live.push(format!("{key} changed"));
        }
    }
    let mut after_restart = Vec::new();
    diff!(
        old,
        new,
        "",
        after_restart,
        restart_line,
        [
            sn_gateway_id,
            sn_retry_interval_ms,
            sn_retry_count,
            sn_predefined_topics,
            sn_advertise_address,
            sn_advertise_interval_s
        ]
    );
    if live.is_empty() && after_restart.is_empty() {
        // A key this list does not name yet: the listener is reconfigured all the same.
        live.push("settings changed".to_owned());
    }
    (live, after_restart)
}

/// `[log]`'s changes, one line each.
fn log_changes(old: &LogConfig, new: &LogConfig, changes: &mut Vec<String>) {
    diff!(
        old,
        new,
        "[log]",
        changes,
        [level, destinations, file, syslog_socket, format, timestamps, timestamp_format, connection_messages]
    );
}

/// "`[table] key old -> new`", values as written in Debug form with `Some(..)` taken off and
/// `None` shown as `unset`.
fn change_line(table: &str, key: &str, old: &dyn fmt::Debug, new: &dyn fmt::Debug) -> String {
    let prefix = if table.is_empty() { String::new() } else { format!("{table} ") };
    format!("{prefix}{key} {} -> {}", shown(old), shown(new))
}

/// "`[table] key changed (old -> new)`", for what takes a restart: logged with ": takes effect
/// after a restart" after it.
fn restart_line(table: &str, key: &str, old: &dyn fmt::Debug, new: &dyn fmt::Debug) -> String {
    let prefix = if table.is_empty() { String::new() } else { format!("{table} ") };
    format!("{prefix}{key} changed ({} -> {})", shown(old), shown(new))
}

fn shown(value: &dyn fmt::Debug) -> String {
    let text = format!("{value:?}");
    if text == "None" {
        return "unset".to_owned();
    }
    match text.strip_prefix("Some(").and_then(|rest| rest.strip_suffix(')')) {
        Some(inner) => inner.to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(text: &str) -> ServerConfig {
        ServerConfig::parse(text, Path::new("t.toml")).unwrap()
    }

    fn run(old: &str, new: &str) -> Plan {
        let old = config(old);
        plan(&old, &old.effective_listeners(), &config(new))
    }

    const TWO: &str = "[[listener]]\nbind = \"127.0.0.1:1883\"\n\n[[listener]]\nbind = \"127.0.0.1:8883\"\n";

    #[test]
    fn the_same_config_changes_nothing() {
        let plan = run(TWO, TWO);
        assert!(plan.is_empty(), "{plan:?}");
        assert_eq!(plan.listeners, [ListenerStep::Keep { old: 0, new: 0 }, ListenerStep::Keep { old: 1, new: 1 }]);
        assert!(run("", "").is_empty(), "the default listener is kept");
    }

    #[test]
    fn listeners_are_known_by_bind_and_protocol_not_by_place() {
        let new = "[[listener]]\nbind = \"127.0.0.1:1884\"\n\n[[listener]]\nbind = \"127.0.0.1:8883\"\n\n\
                   [[listener]]\nbind = \"127.0.0.1:1883\"\nmax_connections = 20\n";
        let plan = run(TWO, new);
        assert_eq!(
            plan.listeners,
            [
                ListenerStep::Add { new: 0 },
                ListenerStep::Keep { old: 1, new: 1 },
                ListenerStep::Change { old: 0, new: 2, what: vec!["max_connections unlimited -> 20".to_owned()] },
            ]
        );
        let plan = run(TWO, "[[listener]]\nbind = \"127.0.0.1:8883\"\n");
        assert_eq!(plan.listeners, [ListenerStep::Remove { old: 0 }, ListenerStep::Keep { old: 1, new: 0 }]);
    }

    #[test]
    fn another_protocol_on_the_same_bind_is_another_listener() {
        let old = "[[listener]]\nbind = \"127.0.0.1:9001\"\n";
        let new = "[[listener]]\nbind = \"127.0.0.1:9001\"\nprotocol = \"websockets\"\n";
        assert_eq!(run(old, new).listeners, [ListenerStep::Remove { old: 0 }, ListenerStep::Add { new: 0 }]);
    }

    #[test]
    fn listeners_with_the_same_bind_are_told_apart_by_order() {
        let one = "[[listener]]\nbind = \"127.0.0.1:0\"\n";
        let two = format!("{one}\n{one}");
        assert_eq!(run(one, &two).listeners, [ListenerStep::Keep { old: 0, new: 0 }, ListenerStep::Add { new: 1 }]);
        assert_eq!(run(&two, one).listeners, [ListenerStep::Remove { old: 1 }, ListenerStep::Keep { old: 0, new: 0 }]);
        let keys = listener_keys(&config(&two).listener);
        assert_eq!(keys[1].to_string(), "127.0.0.1:0 (mqtt) #2");
    }

    #[test]
    fn a_listeners_changes_are_named_and_secrets_are_not_shown() {
        let old = "[[listener]]\nbind = \"127.0.0.1:8080\"\nprotocol = \"http\"\n\
                   [listener.http_tokens]\nops = \"secret-one\"\n";
        let new = "[[listener]]\nbind = \"127.0.0.1:8080\"\nprotocol = \"http\"\nallow_anonymous = true\n\
                   password_file = \"/etc/p\"\n[listener.http_tokens]\nops = \"secret-two\"\n";
        let plan = run(old, new);
        let ListenerStep::Change { what, .. } = &plan.listeners[0] else { panic!("{plan:?}") };
        assert_eq!(
            what,
            &["allow_anonymous false -> true", "password_file unset -> \"/etc/p\"", "http_tokens changed"]
        );
        assert!(!format!("{plan:?}").contains("secret"), "{plan:?}");
        assert!(plan.restart.is_empty());
    }

    #[test]
    fn mqtt_sn_gateway_settings_take_a_restart() {
        let old = "[[listener]]\nbind = \"127.0.0.1:1885\"\nprotocol = \"mqtt-sn\"\n";
        let new = format!("{old}sn_retry_count = 5\nallow_anonymous = true\n");
        let plan = run(old, &new);
        let ListenerStep::Change { what, .. } = &plan.listeners[0] else { panic!("{plan:?}") };
        assert_eq!(what, &["allow_anonymous false -> true"]);
        assert_eq!(plan.restart, ["listener 127.0.0.1:1885 (mqtt-sn): sn_retry_count changed (unset -> 5)"]);
    }

    #[test]
    fn a_kept_mqtt_sn_listener_runs_its_old_gateway_settings_until_a_restart() {
        let old = config("[[listener]]\nbind = \"127.0.0.1:1885\"\nprotocol = \"mqtt-sn\"\nsn_retry_count = 2\n");
        let new = config(
            "[[listener]]\nbind = \"127.0.0.1:1885\"\nprotocol = \"mqtt-sn\"\nsn_retry_count = 5\n\
             allow_anonymous = true\n",
        );
        let running = running_after(&old.listener[0], new.listener[0].clone());
        assert_eq!((running.sn_retry_count, running.allow_anonymous), (Some(2), true));
        let again = plan(&old, &[running], &new);
        assert_eq!(
            again.restart,
            ["listener 127.0.0.1:1885 (mqtt-sn): sn_retry_count changed (2 -> 5)"],
            "reported again"
        );
    }

    #[test]
    fn log_and_sys_are_live() {
        let plan = run(
            "[log]\nlevel = \"info\"\n",
            "[log]\nlevel = \"debug\"\nconnection_messages = false\n[sys]\ninterval = 0\nevents = true\n",
        );
        assert_eq!(
            plan.changes,
            [
                "[log] level \"info\" -> \"debug\"",
                "[log] connection_messages true -> false",
                "[sys] interval 10 -> 0",
                "[sys] events false -> true"
            ]
        );
        assert_eq!(plan.log.as_ref().map(|log| log.level.as_str()), Some("debug"));
        assert_eq!(plan.sys, Some(SysConfig { interval: 0, events: true }));
        assert!(plan.restart.is_empty());
    }

    #[test]
    fn mqtt_and_store_take_a_restart() {
        let plan = run("", "[mqtt]\nmax_qos = 1\nmax_keepalive = 60\n[store]\npersistence = false\n");
        assert_eq!(
            plan.restart,
            [
                "[mqtt] max_qos changed (2 -> 1)",
                "[mqtt] max_keepalive changed (65535 -> 60)",
                "[store] persistence changed (true -> false)",
            ]
        );
        assert!(plan.changes.is_empty() && plan.log.is_none() && plan.sys.is_none() && plan.connections.is_none());
        assert!(!plan.is_empty());
    }

    #[test]
    fn connections_are_live() {
        let plan = run("", "[connections]\nmax_connections = 100\nmax_connection_rate = 5\n");
        assert_eq!(
            plan.changes,
            ["[connections] max_connections the open-file limit -> 100", "[connections] max_connection_rate 0 -> 5"]
        );
        assert_eq!(plan.connections.map(|connections| connections.max_connection_rate), Some(5));
        assert!(plan.restart.is_empty());
    }

    #[test]
    fn values_read_as_written() {
        assert_eq!(shown(&None::<u8>), "unset");
        assert_eq!(shown(&Some(5)), "5");
        assert_eq!(shown(&true), "true");
    }
}
