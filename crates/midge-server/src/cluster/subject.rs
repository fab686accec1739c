//! MQTT topics as NATS subjects, for a cluster on NATS (issue 17; decision 0010), without I/O.
//!
//! One MQTT level is one NATS token, after a prefix of the cluster's own (`midge.t`, say), so
//! NATS's interest propagation sees the topic's structure: `+` becomes `*` and `#` becomes `>`.
//! The tokens are nats-server's own MQTT mapping (its `mqttTopicToNATSPubSubject`), so ordinary
//! topics read the same in both, extended so that every legal MQTT topic round-trips:
//!
//! | in a level | token | why |
//! |---|---|---|
//! | nothing (an empty level) | `/` | NATS has no empty tokens |
//! | `.` | `//` | the token separator |
//! | `*`, `>`, whitespace, control characters | `/u` hex `;` (`*` is `/u2a;`) | NATS wildcards, and what a subject may not hold; nats-server instead turns `*` and `>` into wildcards and refuses spaces |
//! | anything else | itself | |
//!
//! A level never holds `/` (it separates levels), so `/` is free to start an escape, and the
//! decoding is unambiguous read left to right: `//` is a dot, `/u…;` a character, and a token
//! that is `/` alone an empty level.
//!
//! What this does not decide: which subscriber a message reaches. A node subscribes with
//! [`filter_subjects`] to learn of messages its sessions may want; its own router then applies
//! every MQTT rule (`$` topics against leading wildcards, MQTT-4.7.2-1; No Local; shared
//! subscriptions), so the subjects may match a little more than the filter, never less.

use std::fmt::Write as _;

/// Why a subject is not one [`topic_subject`] made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("subject {subject:?} is not an MQTT topic's: {problem}")]
pub struct NotATopicSubject {
    /// The subject.
    pub subject: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

/// The subject of `topic` (a valid MQTT topic name: no wildcards) under `prefix` (a NATS
/// subject of literal tokens, without a trailing dot).
pub fn topic_subject(prefix: &str, topic: &str) -> String {
    let mut subject = String::with_capacity(prefix.len() + topic.len() + 8);
    subject.push_str(prefix);
    for level in topic.split('/') {
        subject.push('.');
        push_level(&mut subject, level);
    }
    subject
}

/// The subjects a node subscribes to for MQTT `filter`: `+` as `*`, a trailing `#` as `>`, and
/// for `a/#` also `a` itself, since `#` matches its parent level too (MQTT-4.7.1-2).
pub fn filter_subjects(prefix: &str, filter: &str) -> Vec<String> {
    let levels: Vec<&str> = filter.split('/').collect();
    let mut subject = String::with_capacity(prefix.len() + filter.len() + 8);
    subject.push_str(prefix);
    let mut parent = None;
    for (index, level) in levels.iter().enumerate() {
        match *level {
            "#" if index == levels.len() - 1 => {
                if index > 0 {
                    parent = Some(subject.clone());
                }
                subject.push_str(".>");
            }
            "+" => subject.push_str(".*"),
            level => {
                subject.push('.');
                push_level(&mut subject, level);
            }
        }
    }
    let mut subjects = vec![subject];
    subjects.extend(parent);
    subjects
}

/// The MQTT topic of `subject`, one [`topic_subject`] made under `prefix`.
pub fn subject_topic(prefix: &str, subject: &str) -> Result<String, NotATopicSubject> {
    let fail = |problem| NotATopicSubject { subject: subject.to_owned(), problem };
    let rest = subject
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('.'))
        .ok_or_else(|| fail("not under the cluster's prefix"))?;
    let mut topic = String::with_capacity(rest.len());
    for (index, token) in rest.split('.').enumerate() {
        if index > 0 {
            topic.push('/');
        }
        decode_token(token, &mut topic).map_err(fail)?;
    }
    Ok(topic)
}

/// Appends the token of one MQTT level.
fn push_level(subject: &mut String, level: &str) {
    if level.is_empty() {
        subject.push('/');
        return;
    }
    for c in level.chars() {
        match c {
            '.' => subject.push_str("//"),
            '*' | '>' => escape(subject, c),
            c if c.is_whitespace() || c.is_control() => escape(subject, c),
            c => subject.push(c),
        }
    }
}

fn escape(subject: &mut String, c: char) {
    // Writing to a String cannot fail.
    let _ = write!(subject, "/u{:x};", u32::from(c));
}

/// Appends the MQTT level of `token`.
fn decode_token(token: &str, topic: &mut String) -> Result<(), &'static str> {
    if token == "/" {
        return Ok(()); // an empty level
    }
    if token.is_empty() {
        return Err("an empty token");
    }
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c != '/' {
            if matches!(c, '*' | '>') || c.is_whitespace() {
                return Err("a wildcard or whitespace in a token");
            }
            topic.push(c);
            continue;
        }
        match chars.next() {
            Some('/') => topic.push('.'),
            Some('u') => {
                let mut hex = String::new();
                loop {
                    match chars.next() {
                        Some(';') => break,
                        Some(digit) if digit.is_ascii_hexdigit() && hex.len() < 6 => hex.push(digit),
                        _ => return Err("an unterminated or malformed /u escape"),
                    }
                }
                let code = u32::from_str_radix(&hex, 16).map_err(|_| "a malformed /u escape")?;
                topic.push(char::from_u32(code).ok_or("an escape that is no character")?);
            }
            _ => return Err("a / that starts no escape"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// nats-server's own fixtures (server/mqtt_test.go, `TestMQTTTopicAndSubjectConversion`):
    /// MQTT topic and the subject it maps to, without a prefix. Ours, under a prefix, must give
    /// the same tokens.
    const NATS_SERVER_TOPICS: &[(&str, &str)] = &[
        ("/", "/./"),
        ("//", "/././"),
        ("///", "/./././"),
        ("foo", "foo"),
        ("/foo", "/.foo"),
        ("//foo", "/./.foo"),
        ("///foo/", "/././.foo./"),
        ("///foo///", "/././.foo./././"),
        ("//.foo.//", "/././/foo//././"),
        ("foo/bar", "foo.bar"),
        ("/foo/bar/", "/.foo.bar./"),
        ("foo/bar/baz", "foo.bar.baz"),
        ("bar/", "bar./"),
        ("bar//", "bar././"),
        (".", "//"),
        ("..", "////"),
        ("...", "//////"),
        ("./", "//./"),
        (".//.", "//././/"),
        ("././.", "//.//.//"),
        (".foo", "//foo"),
        ("foo.", "foo//"),
        (".foo.", "//foo//"),
        ("foo../bar/", "foo////.bar./"),
        ("foo../bar/.", "foo////.bar.//"),
        ("./foo/.", "//.foo.//"),
        ("foo.bar/baz", "foo//bar.baz"),
    ];

    /// Its filter fixtures (`TestMQTTFilterConversion`): the first subject for each filter.
    const NATS_SERVER_FILTERS: &[(&str, &str)] = &[
        ("+", "*"),
        ("/+", "/.*"),
        ("+/", "*./"),
        ("foo/+/bar", "foo.*.bar"),
        ("foo//+//bar", "foo./.*./.bar"),
        ("foo.bar///+///baz", "foo//bar././.*././.baz"),
        ("#", ">"),
        ("/#", "/.>"),
        ("foo/#", "foo.>"),
        ("foo//#", "foo./.>"),
        ("foo/bar.baz/#", "foo.bar//baz.>"),
    ];

    const PREFIX: &str = "midge.t";

    #[test]
    fn topics_map_as_nats_servers_mqtt_and_round_trip() {
        for (topic, tokens) in NATS_SERVER_TOPICS {
            let subject = topic_subject(PREFIX, topic);
            assert_eq!(subject, format!("{PREFIX}.{tokens}"), "{topic:?}");
            assert_eq!(subject_topic(PREFIX, &subject).unwrap(), *topic);
        }
        for (filter, tokens) in NATS_SERVER_FILTERS {
            assert_eq!(filter_subjects(PREFIX, filter)[0], format!("{PREFIX}.{tokens}"), "{filter:?}");
        }
    }

    #[test]
    fn wildcards_and_whitespace_inside_levels_are_escaped_not_wildcards() {
        // nats-server would publish `a*b` as a wildcard subject and refuse `a b`.
        let subject = topic_subject(PREFIX, "a*b/>/sp ace/tab\t/$SYS/ünï");
        assert_eq!(subject, "midge.t.a/u2a;b./u3e;.sp/u20;ace.tab/u9;.$SYS.ünï");
        assert_eq!(subject_topic(PREFIX, &subject).unwrap(), "a*b/>/sp ace/tab\t/$SYS/ünï");
        assert_eq!(filter_subjects(PREFIX, "a/*/#"), ["midge.t.a./u2a;.>", "midge.t.a./u2a;"]);
    }

    #[test]
    fn a_multi_level_wildcard_also_subscribes_to_its_parent() {
        assert_eq!(filter_subjects(PREFIX, "a/b/#"), ["midge.t.a.b.>", "midge.t.a.b"]);
        assert_eq!(filter_subjects(PREFIX, "#"), ["midge.t.>"]);
        assert_eq!(filter_subjects(PREFIX, "+/#"), ["midge.t.*.>", "midge.t.*"]);
        assert_eq!(filter_subjects(PREFIX, "a/+"), ["midge.t.a.*"]);
    }

    #[test]
    fn subjects_that_no_topic_makes_are_refused() {
        for subject in
            ["other.a", "midge.t", "midge.t.a..b", "midge.t.a/x", "midge.t./u2a", "midge.t./u110000;", "midge.t.*"]
        {
            assert!(subject_topic(PREFIX, subject).is_err(), "{subject:?}");
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;
        use super::PREFIX;

        /// Levels from an alphabet rich in what the mapping must escape.
        fn level() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop_oneof![
                    Just('.'),
                    Just('*'),
                    Just('>'),
                    Just(' '),
                    Just('\t'),
                    Just('$'),
                    Just('u'),
                    Just(';'),
                    Just('a'),
                    Just('é'),
                    Just('\u{a0}')
                ],
                0..5,
            )
            .prop_map(|chars| chars.into_iter().collect())
        }

        fn topic() -> impl Strategy<Value = String> {
            proptest::collection::vec(level(), 1..5).prop_map(|levels| levels.join("/"))
        }

        /// NATS's matching of a literal subject by a subscription subject.
        fn nats_matches(subscription: &str, subject: &str) -> bool {
            let mut wanted = subscription.split('.');
            let mut tokens = subject.split('.');
            loop {
                match (wanted.next(), tokens.next()) {
                    (Some(">"), Some(_)) => return true,
                    (Some("*"), Some(_)) => {}
                    (Some(a), Some(b)) if a == b => {}
                    (None, None) => return true,
                    _ => return false,
                }
            }
        }

        proptest! {
            /// Every topic round-trips, and its subject is a literal NATS subject: no empty
            /// token, no whitespace, no wildcard character.
            #[test]
            fn every_topic_round_trips(topic in topic()) {
                let subject = topic_subject(PREFIX, &topic);
                prop_assert!(!subject.split('.').any(str::is_empty), "{subject:?}");
                prop_assert!(!subject.contains(|c: char| c.is_whitespace() || c == '*' || c == '>'), "{subject:?}");
                prop_assert_eq!(subject_topic(PREFIX, &subject).unwrap(), topic);
            }

            /// A filter's subjects match a topic's subject exactly when the MQTT filter matches
            /// the topic (leaving aside the `$` rule, which the receiving node's router applies).
            #[test]
            fn filter_subjects_match_as_the_filter(
                topic in topic(),
                pattern in proptest::collection::vec(prop_oneof![level().boxed(), Just("+".to_owned()).boxed()], 0..4),
                hash in any::<bool>(),
            ) {
                let mut levels = pattern;
                if hash || levels.is_empty() {
                    levels.push("#".to_owned());
                }
                let filter = levels.join("/");
                let subject = topic_subject(PREFIX, &topic);
                let nats = filter_subjects(PREFIX, &filter).iter().any(|wanted| nats_matches(wanted, &subject));
                let dollar_free = topic.replace('$', "d");
                let mqtt = midge_broker::filters::matches(&filter.replace('$', "d"), &dollar_free);
                prop_assert_eq!(nats, mqtt, "filter {:?} topic {:?}", filter, topic);
            }
        }
    }
}
