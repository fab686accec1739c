//! The same flags through mosquitto_sub / mosquitto_pub / mosquitto_rr and through `midge sub` /
//! `midge pub`, against one Debian mosquitto broker; the outputs must be identical, byte for
//! byte (a JSON timestamp, which differs by nature, is masked).
//!
//! Subscribers are synchronised on mosquitto's `Sending SUBACK to ID` log line, so nothing is
//! published before both are subscribed, and they end by themselves (`-C`, `--retained-only`).

mod cli_common;
mod support;

use cli_common::{client, run, start_subscriber, Finished, Running};
use support::TestBroker;

/// One subscriber case: extra `mosquitto_sub` flags, then the `mosquitto_pub` runs that feed it.
struct SubCase {
    name: &'static str,
    sub: &'static [&'static str],
    /// Publishes made before the subscribers start (retained messages).
    before: &'static [&'static [&'static str]],
    /// Publishes made once both are subscribed.
    after: &'static [&'static [&'static str]],
}

const SUB_CASES: &[SubCase] = &[
    SubCase {
        name: "verbose, with an empty payload",
        sub: &["-t", "tab/v", "-v", "-C", "3"],
        before: &[],
        after: &[&["-t", "tab/v", "-m", "one two"], &["-t", "tab/v", "-n"], &["-t", "tab/v", "-m", "three"]],
    },
    SubCase {
        name: "plain output skips empty payloads",
        sub: &["-t", "tab/plain", "-C", "3"],
        before: &[],
        after: &[&["-t", "tab/plain", "-m", "a"], &["-t", "tab/plain", "-n"], &["-t", "tab/plain", "-m", "b"]],
    },
    SubCase {
        name: "-N: no newlines",
        sub: &["-t", "tab/n", "-N", "-C", "2", "-v"],
        before: &[],
        after: &[&["-t", "tab/n", "-m", "x"], &["-t", "tab/n", "-m", "y"]],
    },
    SubCase {
        name: "-F fields",
        sub: &["-t", "tab/f/#", "-q", "1", "-C", "2", "-F", "%t|%p|%q|%r|%l|%m|%%|@@|\\t|\\\\"],
        before: &[],
        after: &[&["-t", "tab/f/1", "-m", "hello", "-q", "1"], &["-t", "tab/f/2", "-m", "", "-q", "0"]],
    },
    SubCase {
        name: "-F widths, precision and hex",
        sub: &["-t", "tab/w", "-C", "1", "-F", "[%10t][%-10t][%5.3t][%05l][%-4l][%x][%X][%8x][%-8p][%3p]"],
        before: &[],
        after: &[&["-t", "tab/w", "-m", "hello"]],
    },
    SubCase {
        name: "-F %j and %j --pretty",
        sub: &["-t", "tab/j", "-q", "1", "-C", "2", "-F", "%j"],
        before: &[],
        after: &[&["-t", "tab/j", "-m", "quote\" backslash\\ tab\t", "-q", "1"], &["-t", "tab/j", "-n"]],
    },
    SubCase {
        name: "--pretty JSON",
        sub: &["-t", "tab/jp", "-C", "1", "-F", "%j", "--pretty"],
        before: &[],
        after: &[&["-t", "tab/jp", "-m", "{\"a\": [1, 2]}"]],
    },
    SubCase {
        name: "-R skips retained messages",
        sub: &["-t", "tab/r/#", "-R", "-C", "1", "-v"],
        before: &[&["-t", "tab/r/old", "-m", "stale", "-r"]],
        after: &[&["-t", "tab/r/new", "-m", "fresh"]],
    },
    SubCase {
        name: "--retained-only stops at the first live message",
        sub: &["-t", "tab/ro/#", "--retained-only", "-F", "%t %p %r"],
        before: &[&["-t", "tab/ro/a", "-m", "kept a", "-r"], &["-t", "tab/ro/b", "-m", "kept b", "-r"]],
        after: &[&["-t", "tab/ro/c", "-m", "live"]],
    },
    SubCase {
        name: "-T filters topics out",
        sub: &["-t", "tab/t/#", "-T", "tab/t/skip/#", "-T", "tab/t/+/x", "-C", "1", "-v"],
        before: &[],
        after: &[
            &["-t", "tab/t/skip/deep", "-m", "no"],
            &["-t", "tab/t/y/x", "-m", "no"],
            &["-t", "tab/t/keep", "-m", "yes"],
        ],
    },
    SubCase {
        name: "-D MQTT 5 properties printed by -F",
        sub: &["-V", "mqttv5", "-t", "tab/d", "-C", "1", "-F", "%P|%C|%R|%D|%F|%p"],
        before: &[],
        after: &[&[
            "-V",
            "mqttv5",
            "-t",
            "tab/d",
            "-m",
            "body",
            "-D",
            "publish",
            "user-property",
            "k",
            "v",
            "-D",
            "publish",
            "user-property",
            "k2",
            "v2",
            "-D",
            "publish",
            "content-type",
            "text/plain",
            "-D",
            "publish",
            "response-topic",
            "tab/reply",
            "-D",
            "publish",
            "correlation-data",
            "c-42",
            "-D",
            "publish",
            "payload-format-indicator",
            "1",
        ]],
    },
    SubCase {
        name: "-D subscription identifier, %S",
        sub: &[
            "-V",
            "mqttv5",
            "-t",
            "tab/s",
            "-C",
            "1",
            "-D",
            "subscribe",
            "subscription-identifier",
            "42",
            "-F",
            "%S %p",
        ],
        before: &[],
        after: &[&["-t", "tab/s", "-m", "with id"]],
    },
];

/// Masks the `"tst":"..."` timestamp of JSON output, which differs between any two runs.
fn mask_time(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let mut masked = String::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find("\"tst\":") {
        let value_start = start + rest[start..].find(":").unwrap() + 1;
        let quote = value_start + rest[value_start..].find('"').unwrap();
        let end = quote + 1 + rest[quote + 1..].find('"').unwrap();
        masked.push_str(&rest[..quote]);
        masked.push_str("\"TIME\"");
        rest = &rest[end + 1..];
    }
    masked.push_str(rest);
    masked
}

#[test]
fn sub_flags_print_what_mosquitto_sub_prints() {
    let broker = TestBroker::start_mosquitto("");
    for (index, case) in SUB_CASES.iter().enumerate() {
        for publish in case.before {
            assert_eq!(run(client("mosquitto_pub", &broker, publish)).code(), 0);
        }
        let reference_id = format!("ref-{index}");
        let ours_id = format!("ours-{index}");
        let mut reference_args = vec!["-i", &reference_id];
        reference_args.extend_from_slice(case.sub);
        let mut our_args = vec!["-i", &ours_id];
        our_args.extend_from_slice(case.sub);
        let reference = start_subscriber(&broker, client("mosquitto_sub", &broker, &reference_args), &reference_id);
        let ours = start_subscriber(&broker, client("midge-sub", &broker, &our_args), &ours_id);
        for publish in case.after {
            assert_eq!(run(client("mosquitto_pub", &broker, publish)).code(), 0, "{}: {publish:?}", case.name);
        }
        let (reference, ours) = (reference.finish(), ours.finish());
        assert_eq!(reference.code(), 0, "{}: mosquitto_sub {reference:?}", case.name);
        assert_eq!(ours.code(), 0, "{}: midge sub {ours:?}", case.name);
        assert_eq!(mask_time(&ours.stdout), mask_time(&reference.stdout), "{}", case.name);
        assert!(!reference.stdout.is_empty(), "{}: nothing printed", case.name);
    }
}

/// One publisher case: `mosquitto_pub` flags, stdin, and how many messages they make.
struct PubCase {
    name: &'static str,
    args: &'static [&'static str],
    stdin: Option<&'static str>,
    messages: usize,
}

const PUB_CASES: &[PubCase] = &[
    PubCase { name: "-m at QoS 1, retained", args: &["-m", "hello", "-q", "1", "-r"], stdin: None, messages: 1 },
    PubCase { name: "-n at QoS 2", args: &["-n", "-q", "2"], stdin: None, messages: 1 },
    PubCase { name: "-l: one message per line", args: &["-l", "-q", "1"], stdin: Some("a\n\nlast"), messages: 3 },
    PubCase { name: "-s: stdin as one message", args: &["-s"], stdin: Some("line 1\nline 2\n"), messages: 1 },
    PubCase {
        name: "-D publish properties (MQTT 5)",
        args: &[
            "-V",
            "mqttv5",
            "-m",
            "{}",
            "-D",
            "publish",
            "content-type",
            "application/json",
            "-D",
            "publish",
            "user-property",
            "a",
            "b",
            "-D",
            "publish",
            "message-expiry-interval",
            "3600",
        ],
        stdin: None,
        messages: 1,
    },
    PubCase {
        name: "-x with -c (MQTT 5 session)",
        args: &["-V", "mqttv5", "-c", "-x", "60", "-m", "s"],
        stdin: None,
        messages: 1,
    },
];

#[test]
fn pub_flags_send_what_mosquitto_pub_sends() {
    let broker = TestBroker::start_mosquitto("");
    let format = "%t|%q|%r|%l|%p|%P|%C";
    for (index, case) in PUB_CASES.iter().enumerate() {
        let mut outputs = Vec::new();
        for program in ["mosquitto_pub", "midge-pub"] {
            let topic = format!("tabpub/{index}");
            let watcher_id = format!("watch-{index}-{program}");
            let count = case.messages.to_string();
            let watcher_args = ["-V", "mqttv5", "-i", &watcher_id, "-t", &topic, "-q", "2", "-C", &count, "-F", format];
            let watcher = start_subscriber(&broker, client("mosquitto_sub", &broker, &watcher_args), &watcher_id);
            let id = format!("pub-{index}-{program}");
            let mut args = vec!["-i", &id, "-t", &topic];
            args.extend_from_slice(case.args);
            let publisher = Running::start(client(program, &broker, &args), case.stdin.map(|s| s.as_bytes().to_vec()));
            let published = publisher.finish();
            assert_eq!(published.code(), 0, "{}: {program} {published:?}", case.name);
            let watched: Finished = watcher.finish();
            outputs.push(watched.text());
            // Clear what -r left, so the next program's watcher starts from nothing.
            run(client("mosquitto_pub", &broker, &["-t", &topic, "-r", "-n"]));
        }
        assert_eq!(outputs[1], outputs[0], "{}", case.name);
    }
}

/// `midge pub -e` does what mosquitto_rr does: publish with a Response Topic, print the reply.
#[test]
fn response_topic_matches_mosquitto_rr() {
    let broker = TestBroker::start_mosquitto("");
    let mut outputs = Vec::new();
    for (program, first) in [("mosquitto_rr", "rr"), ("midge-pub", "ours")] {
        let request = format!("rr/{first}/request");
        let responder_id = format!("responder-{first}");
        let responder_args = ["-V", "mqttv5", "-i", &responder_id, "-t", &request, "-C", "1", "-F", "%R"];
        let responder = start_subscriber(&broker, client("mosquitto_sub", &broker, &responder_args), &responder_id);
        let reply_topic = format!("rr/{first}/reply");
        let requester_id = format!("requester-{first}");
        let requester = Running::start(
            client(
                program,
                &broker,
                &[
                    "-V",
                    "mqttv5",
                    "-i",
                    &requester_id,
                    "-t",
                    &request,
                    "-e",
                    &reply_topic,
                    "-m",
                    "ping",
                    "-v",
                    "-W",
                    "10",
                ],
            ),
            None,
        );
        let asked = responder.finish();
        assert_eq!(asked.text(), format!("{reply_topic}\n"), "{program} set the response topic");
        // The requester subscribed before publishing, so the reply finds it.
        assert_eq!(
            run(client("mosquitto_pub", &broker, &["-V", "mqttv5", "-t", &reply_topic, "-m", "pong"])).code(),
            0
        );
        let answered = requester.finish();
        assert_eq!(answered.code(), 0, "{program}: {answered:?}");
        outputs.push(answered.text());
    }
    assert_eq!(outputs[0], "rr/rr/reply pong\n");
    assert_eq!(outputs[1], "rr/ours/reply pong\n");
}
