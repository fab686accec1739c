//! The nats-server cluster harness (`nats_common`) itself: a 3-server cluster forms with
//! JetStream ready, and a killed server restarted on its ports and store rejoins it.

mod nats_common;

use std::collections::BTreeSet;

use nats_common::{NatsCluster, FORM_TIMEOUT};

#[test]
fn three_servers_form_a_cluster_with_jetstream_ready() {
    let mut cluster = NatsCluster::start(3);
    assert_eq!(cluster.len(), 3);
    let urls = cluster.urls();
    assert_eq!(urls.len(), 3);
    assert_eq!(urls.iter().collect::<BTreeSet<_>>().len(), 3, "distinct client ports: {urls:?}");
    for i in 0..3 {
        assert!(cluster.is_running(i));
        assert_eq!(cluster.url(i), format!("nats://127.0.0.1:{}", cluster.client_port(i)));
        // A client connection gets the server's INFO, naming it and the cluster.
        let info = nats_info(cluster.client_port(i));
        assert_eq!(info["server_name"], cluster.name(i), "{info}");
        assert_eq!(info["cluster"], nats_common::CLUSTER_NAME, "{info}");
        assert_eq!(info["jetstream"], true, "{info}");
        let peers = cluster.route_peers(i).unwrap();
        assert_eq!(peers.len(), 2, "{} routes to {peers:?}", cluster.name(i));
        let jsz = cluster.monitor(i, "/jsz").unwrap();
        assert_eq!(jsz["meta_cluster"]["cluster_size"], 3, "{jsz}");
        assert!(cluster.log(i).iter().any(|line| line.contains("Starting JetStream cluster")), "{}", cluster.logs());
    }
    let leader = cluster.meta_leader_index();
    for i in 0..3 {
        assert_eq!(cluster.meta_leader(i).unwrap().as_deref(), Some(cluster.name(leader)));
    }
}

#[test]
fn a_killed_server_restarts_and_rejoins_the_cluster() {
    let mut cluster = NatsCluster::start(3);
    // The meta leader, so that the survivors must elect another.
    let victim = cluster.meta_leader_index();
    let victim_name = cluster.name(victim).to_owned();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    cluster.kill(victim);
    assert!(!cluster.is_running(victim));
    cluster.wait_until("the survivors to drop the killed leader and elect another", FORM_TIMEOUT, |cluster| {
        for &i in &survivors {
            let peers = cluster.route_peers(i)?;
            if peers.contains(&victim_name) {
                return Err(format!("{} still routes to {victim_name}", cluster.name(i)));
            }
            match cluster.meta_leader(i)? {
                Some(leader) if leader != victim_name => {}
                leader => return Err(format!("{} has meta leader {leader:?}", cluster.name(i))),
            }
        }
        Ok(true)
    });

    let mark = cluster.log_len(victim);
    cluster.restart(victim);
    assert!(cluster.is_running(victim));
    // Same store: the server recovers the meta state it had rather than starting afresh.
    cluster.wait_for_log_from(victim, mark, "JetStream cluster recovering state", FORM_TIMEOUT);
    for i in 0..3 {
        assert_eq!(cluster.route_peers(i).unwrap().len(), 2, "{}", cluster.logs());
    }
    assert_eq!(nats_info(cluster.client_port(victim))["server_name"], victim_name);
}

/// The INFO a nats-server sends a new client connection, as JSON.
fn nats_info(port: u16) -> serde_json::Value {
    use std::io::BufRead;
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to nats-server");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stream).read_line(&mut line).expect("INFO line");
    let json = line.strip_prefix("INFO ").unwrap_or_else(|| panic!("not INFO: {line}"));
    serde_json::from_str(json.trim_end()).expect("INFO JSON")
}
