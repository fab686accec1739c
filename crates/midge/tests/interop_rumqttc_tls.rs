//! rumqttc 0.24 with rustls (its own rustls 0.22, nobody on the team wrote it) to a midge TLS
//! listener: a QoS 1 round trip over MQTT 3.1.1 with the test CA trusted, and a refusal when
//! rumqttc trusts another CA.

mod support;
mod tls_common;

use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS, Transport};
use support::TestBroker;
use tls_common::Pki;

const WAIT: Duration = Duration::from_secs(10);

fn options(broker: &TestBroker, pki: &Pki, ca: &str, id: &str) -> MqttOptions {
    let mut options = MqttOptions::new(id, "127.0.0.1", broker.port());
    let ca = std::fs::read(pki.path(ca)).expect("CA file");
    options.set_transport(Transport::tls(ca, None, None));
    options
}

#[tokio::test]
async fn rumqttc_round_trip_over_tls() {
    let pki = Pki::new(&["127.0.0.1", "localhost"]);
    let broker = TestBroker::start_midge_listener_with(&pki.midge_listener(), "");
    let (client, mut events) = AsyncClient::new(options(&broker, &pki, "ca.pem", "rumqttc-tls"), 10);
    client.subscribe("tls/rumqttc", QoS::AtLeastOnce).await.expect("subscribe");
    let received = tokio::time::timeout(WAIT, async {
        loop {
            match events.poll().await.expect("the TLS connection works") {
                Event::Incoming(Incoming::SubAck(_)) => {
                    client.publish("tls/rumqttc", QoS::AtLeastOnce, false, "over tls").await.expect("publish");
                }
                Event::Incoming(Incoming::Publish(publish)) => return publish,
                _ => {}
            }
        }
    })
    .await
    .expect("the message came back in time");
    assert_eq!((received.topic.as_str(), &received.payload[..]), ("tls/rumqttc", &b"over tls"[..]));
}

#[tokio::test]
async fn rumqttc_refuses_a_broker_its_ca_did_not_sign() {
    let pki = Pki::new(&["127.0.0.1", "localhost"]);
    let broker = TestBroker::start_midge_listener_with(&pki.midge_listener(), "");
    let (_client, mut events) = AsyncClient::new(options(&broker, &pki, "other-ca.pem", "rumqttc-untrusting"), 10);
    let outcome = tokio::time::timeout(WAIT, events.poll()).await.expect("an answer in time");
    assert!(outcome.is_err(), "rumqttc accepted a certificate its CA did not sign: {outcome:?}");
}
