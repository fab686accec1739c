//! A bridge's topic lines as mosquitto reads them, without I/O: which filters the bridge
//! subscribes to on each side, and how a topic is renamed as it crosses.
//!
//! A line `topic PATTERN DIRECTION QOS LOCAL_PREFIX REMOTE_PREFIX` stands for the filter
//! `LOCAL_PREFIX + PATTERN` here and `REMOTE_PREFIX + PATTERN` there; a message crossing has
//! the one prefix replaced by the other. When several lines match a topic, the first one
//! written decides, as in mosquitto.

use midge_broker::filters::matches;
use midge_codec::{QoS, TopicFilter, TopicName};

use crate::config::{BridgeTopic, Direction};

/// One topic line, its filters built.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    direction: Direction,
    qos: QoS,
    local_prefix: String,
    remote_prefix: String,
    /// `local_prefix + pattern`.
    local_filter: String,
    /// `remote_prefix + pattern`.
    remote_filter: String,
}

/// A bridge's topic lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicMap {
    lines: Vec<Line>,
}

impl TopicMap {
    /// The map of `topics`, which `BridgeConfig::check` has accepted.
    pub(crate) fn new(topics: &[BridgeTopic]) -> Self {
        let lines = topics
            .iter()
            .map(|topic| Line {
                direction: topic.direction,
                qos: QoS::from_u8(topic.qos).unwrap_or(QoS::AtMostOnce),
                local_prefix: topic.local_prefix.clone(),
                remote_prefix: topic.remote_prefix.clone(),
                local_filter: format!("{}{}", topic.local_prefix, topic.pattern),
                remote_filter: format!("{}{}", topic.remote_prefix, topic.pattern),
            })
            .collect();
        Self { lines }
    }

    /// The filters to subscribe to here, for messages going out, with their QoS; a filter
    /// named twice once, at the higher QoS.
    pub(crate) fn local_subscriptions(&self) -> Vec<(TopicFilter, QoS)> {
        subscriptions(self.lines.iter().filter(|line| line.direction.outbound()).map(|l| (&l.local_filter, l.qos)))
    }

    /// The filters to subscribe to at the remote, for messages coming in, with their QoS.
    pub(crate) fn remote_subscriptions(&self) -> Vec<(TopicFilter, QoS)> {
        subscriptions(self.lines.iter().filter(|line| line.direction.inbound()).map(|l| (&l.remote_filter, l.qos)))
    }

    /// The remote topic for a local message on `topic`; `None` if no outbound line matches
    /// (a subscription left from an earlier config), or the renamed topic is not valid.
    pub(crate) fn to_remote(&self, topic: &str) -> Option<TopicName> {
        let line = self.lines.iter().find(|line| line.direction.outbound() && matches(&line.local_filter, topic))?;
        rename(topic, &line.local_prefix, &line.remote_prefix)
    }

    /// The local topic for a message from the remote on `topic`; `None` if no inbound line
    /// matches.
    pub(crate) fn to_local(&self, topic: &str) -> Option<TopicName> {
        let line = self.lines.iter().find(|line| line.direction.inbound() && matches(&line.remote_filter, topic))?;
        rename(topic, &line.remote_prefix, &line.local_prefix)
    }
}

/// `topic` with `from` (which it starts with, as its filter matched) replaced by `to`.
fn rename(topic: &str, from: &str, to: &str) -> Option<TopicName> {
    let rest = topic.strip_prefix(from)?;
    TopicName::new(&format!("{to}{rest}")).ok()
}

/// Each filter once, at the highest QoS asked for it, in the order first named.
fn subscriptions<'a>(lines: impl Iterator<Item = (&'a String, QoS)>) -> Vec<(TopicFilter, QoS)> {
    let mut out: Vec<(TopicFilter, QoS)> = Vec::new();
    for (filter, qos) in lines {
        match out.iter_mut().find(|(known, _)| known.as_str() == filter) {
            Some((_, known_qos)) => *known_qos = (*known_qos).max(qos),
            None => {
                if let Ok(filter) = TopicFilter::new(filter.as_str()) {
                    out.push((filter, qos));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(pattern: &str, direction: Direction, qos: u8, local: &str, remote: &str) -> BridgeTopic {
        BridgeTopic {
            pattern: pattern.into(),
            direction,
            qos,
            local_prefix: local.into(),
            remote_prefix: remote.into(),
        }
    }

    fn names(subscriptions: Vec<(TopicFilter, QoS)>) -> Vec<(String, u8)> {
        subscriptions.into_iter().map(|(filter, qos)| (filter.to_string(), qos.as_u8())).collect()
    }

    #[test]
    fn each_side_subscribes_to_its_prefixed_filters() {
        let map = TopicMap::new(&[
            line("sensors/#", Direction::Out, 1, "site/", "plant1/"),
            line("cmd/#", Direction::In, 2, "", "plant1/"),
            line("both/+", Direction::Both, 0, "", ""),
            line("sensors/#", Direction::Out, 2, "site/", "other/"),
        ]);
        assert_eq!(names(map.local_subscriptions()), vec![("site/sensors/#".into(), 2), ("both/+".into(), 0)]);
        assert_eq!(names(map.remote_subscriptions()), vec![("plant1/cmd/#".into(), 2), ("both/+".into(), 0)]);
    }

    #[test]
    fn topics_are_renamed_by_the_first_matching_line() {
        let map = TopicMap::new(&[
            line("sensors/#", Direction::Out, 1, "site/", "plant1/"),
            line("#", Direction::Out, 0, "site/", "all/"),
            line("cmd/#", Direction::In, 2, "local/", "plant1/"),
        ]);
        assert_eq!(map.to_remote("site/sensors/t1").unwrap().as_str(), "plant1/sensors/t1");
        assert_eq!(map.to_remote("site/other").unwrap().as_str(), "all/other");
        assert_eq!(map.to_remote("elsewhere"), None);
        assert_eq!(map.to_local("plant1/cmd/stop").unwrap().as_str(), "local/cmd/stop");
        // An outbound line does not bring messages in.
        assert_eq!(map.to_local("plant1/sensors/t1"), None);
    }

    #[test]
    fn an_empty_pattern_maps_the_prefix_alone() {
        // mosquitto: `topic "" out 0 local/topic remote/topic` bridges exactly that topic.
        let map = TopicMap::new(&[line("", Direction::Both, 1, "here/state", "there/state")]);
        assert_eq!(names(map.local_subscriptions()), vec![("here/state".into(), 1)]);
        assert_eq!(map.to_remote("here/state").unwrap().as_str(), "there/state");
        assert_eq!(map.to_local("there/state").unwrap().as_str(), "here/state");
    }
}
