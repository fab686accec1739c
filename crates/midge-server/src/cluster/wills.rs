//! Wills a dead node cannot publish: every node keeps the wills of its connected clients in a
//! key-value bucket (`{prefix}-wills`, key `{node}.{client id, base64url}`), armed when a
//! client connects and removed when its connection ends (its node then does what a will
//! needs). When a node dies, the one survivor that wins the node's death key (`lease`)
//! publishes what is left under its name, once, and removes it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::Store;
use base64::Engine as _;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::StreamExt as _;
use midge_broker::Broker;
use midge_codec::TopicName;
use tokio::sync::mpsc;

use super::stats::ClusterStats;
use super::wire::WireMessage;

/// How long the marker of a disarmed will stays in the bucket.
pub(super) const MARKER_TTL: Duration = Duration::from_secs(60);

/// The bucket value of a will: its topic, then the message (expiry in milliseconds from
/// publication).
pub(super) fn encode(topic: &str, message: &WireMessage) -> Bytes {
    let body = message.encode();
    let mut out = BytesMut::with_capacity(4 + topic.len() + body.len());
    out.put_u32(topic.len() as u32);
    out.put_slice(topic.as_bytes());
    out.put_slice(&body);
    out.freeze()
}

fn decode(mut value: Bytes) -> Option<(String, WireMessage)> {
    if value.remaining() < 4 {
        return None;
    }
    let len = value.get_u32() as usize;
    if value.remaining() < len {
        return None;
    }
    let topic = String::from_utf8(value.split_to(len).to_vec()).ok()?;
    Some((topic, WireMessage::decode(value).ok()?))
}

fn key(node: &str, client_id: &str) -> String {
    format!("{node}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(client_id))
}

/// Writes this node's armed and disarmed wills to the bucket, in order; a write the bucket
/// refuses (no leader for a moment: a NATS server restarting) is tried again as the retained
/// bucket's are (`bucket::retry_waits`), the later ones waiting behind it.
pub(super) async fn write(store: Store, node: String, mut updates: mpsc::Receiver<(String, Option<Bytes>)>) {
    while let Some((client_id, value)) = updates.recv().await {
        let key = key(&node, &client_id);
        let mut waits = super::bucket::retry_waits();
        loop {
            let result = match &value {
                Some(value) => store.put(&key, value.clone()).await.map(drop).map_err(|e| e.to_string()),
                None => store.purge_with_ttl(&key, MARKER_TTL).await.map_err(|e| e.to_string()),
            };
            let Err(error) = result else { break };
            match waits.next() {
                Some(wait) => tokio::time::sleep(wait).await,
                None => {
                    tracing::warn!(%client_id, %error, "cluster: a will could not be kept in the bucket; if this node dies it is not published");
                    break;
                }
            }
        }
    }
}

/// Publishes, once, the wills `node` left in the bucket (this node won its death key), and
/// removes them. Returns how many.
pub(super) async fn publish_orphans(store: &Store, node: &str, broker: &Arc<Broker>, stats: &ClusterStats) -> usize {
    let prefix = format!("{node}.");
    let mut keys = match store.keys().await {
        Ok(keys) => keys,
        Err(error) => {
            tracing::error!(%node, %error, "cluster: the wills of a dead node cannot be listed");
            return 0;
        }
    };
    let mut mine = Vec::new();
    while let Some(key) = keys.next().await {
        if let Ok(key) = key {
            if key.starts_with(&prefix) {
                mine.push(key);
            }
        }
    }
    let mut published = 0;
    for key in mine {
        let Ok(Some(value)) = store.get(&key).await else { continue };
        match decode(value).and_then(|(topic, wire)| Some((TopicName::new(&topic).ok()?, wire))) {
            Some((topic, wire)) => {
                let expires_at = wire.expiry_ms.map(|ms| Instant::now() + Duration::from_millis(ms));
                let message =
                    broker.fabric_message(topic, wire.payload, wire.qos, wire.retain, wire.properties, expires_at);
                broker.publish_orphan_will(message);
                published += 1;
                stats.orphan_wills.fetch_add(1, Ordering::Relaxed);
            }
            None => tracing::warn!(%key, "cluster: a will in the bucket cannot be read"),
        }
        let _ = store.purge_with_ttl(&key, MARKER_TTL).await;
    }
    if published > 0 {
        tracing::info!(%node, published, "cluster: the wills of a dead node's clients published");
    }
    published
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use midge_codec::QoS;

    use super::{decode, encode, WireMessage};

    #[test]
    fn a_will_round_trips_and_a_cut_one_is_refused() {
        let wire = WireMessage {
            qos: QoS::AtLeastOnce,
            retain: true,
            origin: 1,
            sequence: 2,
            expiry_ms: Some(30_000),
            expiry_unix: false,
            publisher: None,
            properties: Bytes::new(),
            payload: Bytes::from_static(b"gone"),
        };
        let value = encode("clients/x/status", &wire);
        assert_eq!(decode(value.clone()), Some(("clients/x/status".to_owned(), wire)));
        for cut in 0..value.len() {
            let _ = decode(value.slice(..cut)); // never a panic
        }
        assert_eq!(decode(value.slice(..3)), None);
    }
}
