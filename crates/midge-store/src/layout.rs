//! How records map to keys and values: the tables, the key encodings and the value encoding.
//!
//! Keys sort the way recovery wants to read them: a client's rows are contiguous (the client id
//! is length-prefixed, so `"ab"`'s rows never interleave with `"abc"`'s) and within a client
//! big-endian numbers sort numerically, so a queue loads in `seq` order.
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | name (`format_version`, `store_id`, `commit_seq`) | raw big-endian integer |
//! | `messages` | message id, u64 BE | [`MessageRecord`] |
//! | `retained` | topic | [`MessageId`] |
//! | `sessions` | client id | [`SessionRecord`] |
//! | `subscriptions` | client, filter | [`SubscriptionRecord`] |
//! | `deliveries` | client, seq u64 BE | [`DeliveryRecord`] |
//! | `inbound_qos2` | client, packet id u16 BE | empty record `()` |
//! | `topic_ids` | client, topic id u16 BE | the topic name, a `String` (format 2) |
//!
//! "client" is the client id's length as u32 BE followed by its bytes. Every value except in
//! `meta` is [`RECORD_VERSION`] followed by the record in postcard.
//!
//! [`MessageRecord`]: crate::MessageRecord
//! [`MessageId`]: crate::MessageId
//! [`SessionRecord`]: crate::SessionRecord
//! [`SubscriptionRecord`]: crate::SubscriptionRecord
//! [`DeliveryRecord`]: crate::DeliveryRecord

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::batch::{Batch, Op};
use crate::error::StoreError;
use crate::records::{SessionRecord, WillRecord};

/// The version byte in front of every record value. Bump it, and keep decoding the old one,
/// when a record's fields change.
///
/// - 1: the first.
/// - 2: a session's delayed will keeps its Message Expiry Interval
///   ([`WillRecord::message_expiry_interval`](crate::WillRecord)); every other record is as in
///   1, so [`decode_value`] reads both, and [`decode_session`] converts a version 1 session.
pub(crate) const RECORD_VERSION: u8 = 2;

/// The first record version (see [`RECORD_VERSION`]).
const RECORD_VERSION_1: u8 = 1;

/// Meta key of the store format version (u32 BE).
pub(crate) const META_FORMAT_VERSION: &[u8] = b"format_version";
/// Meta key of the store identifier (u128 BE), also written in the marker file.
pub(crate) const META_STORE_ID: &[u8] = b"store_id";
/// Meta key of the number of the last commit (u64 BE), checked against the durable watermark.
pub(crate) const META_COMMIT_SEQ: &[u8] = b"commit_seq";

/// One table of the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Table {
    Meta,
    Messages,
    Retained,
    Sessions,
    Subscriptions,
    Deliveries,
    InboundQos2,
    TopicIds,
}

impl Table {
    pub(crate) const ALL: [Table; 8] = [
        Table::Meta,
        Table::Messages,
        Table::Retained,
        Table::Sessions,
        Table::Subscriptions,
        Table::Deliveries,
        Table::InboundQos2,
        Table::TopicIds,
    ];

    /// The tables whose keys start with a client prefix: what [`Op::DeleteSession`] clears.
    pub(crate) const PER_CLIENT: [Table; 4] =
        [Table::Subscriptions, Table::Deliveries, Table::InboundQos2, Table::TopicIds];

    /// How many tables a store of format `version` has: [`Table::TopicIds`] came with format 2.
    pub(crate) fn count_in_format(version: u32) -> usize {
        if version >= 2 {
            Self::ALL.len()
        } else {
            Self::ALL.len() - 1
        }
    }

    /// The table's name in the engine.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Messages => "messages",
            Table::Retained => "retained",
            Table::Sessions => "sessions",
            Table::Subscriptions => "subscriptions",
            Table::Deliveries => "deliveries",
            Table::InboundQos2 => "inbound_qos2",
            Table::TopicIds => "topic_ids",
        }
    }
}

/// Encodes a record value: the version byte, then postcard.
pub(crate) fn encode_value<T: Serialize>(record: &T) -> Vec<u8> {
    // postcard fails only on types it cannot represent (none of ours) or a writer error (a Vec
    // never fails); an empty record would then be caught as corrupt when read back.
    postcard::to_extend(record, vec![RECORD_VERSION]).unwrap_or_default()
}

/// Decodes a record value written by [`encode_value`], of this version or of one whose layout
/// of `T` is the same (every record but a session's: use [`decode_session`] for those).
pub(crate) fn decode_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match bytes.split_first() {
        Some((&(RECORD_VERSION | RECORD_VERSION_1), rest)) => {
            postcard::from_bytes(rest).map_err(|e| format!("undecodable record: {e}"))
        }
        Some((v, _)) => Err(format!("unknown record version {v}")),
        None => Err("empty record".to_owned()),
    }
}

/// Decodes a session record of any version: one of version 1 had a delayed will without a
/// Message Expiry Interval, and reads as one whose will never expires, as it was restored then.
pub(crate) fn decode_session(bytes: &[u8]) -> Result<SessionRecord, String> {
    match bytes.split_first() {
        Some((&RECORD_VERSION_1, rest)) => postcard::from_bytes::<SessionRecordV1>(rest)
            .map(SessionRecord::from)
            .map_err(|e| format!("undecodable record: {e}")),
        _ => decode_value(bytes),
    }
}

/// A session record as version 1 wrote it.
#[derive(serde::Deserialize)]
struct SessionRecordV1 {
    session_id: u64,
    protocol_level: u8,
    expiry_interval: u32,
    expires_at_unix_ms: Option<u64>,
    delayed_will: Option<WillRecordV1>,
}

/// A delayed will as version 1 wrote it.
#[derive(serde::Deserialize)]
struct WillRecordV1 {
    due_unix_ms: u64,
    topic: String,
    payload: bytes::Bytes,
    qos: u8,
    retain: bool,
    properties: bytes::Bytes,
}

impl From<SessionRecordV1> for SessionRecord {
    fn from(v1: SessionRecordV1) -> Self {
        SessionRecord {
            session_id: v1.session_id,
            protocol_level: v1.protocol_level,
            expiry_interval: v1.expiry_interval,
            expires_at_unix_ms: v1.expires_at_unix_ms,
            delayed_will: v1.delayed_will.map(|will| WillRecord {
                due_unix_ms: will.due_unix_ms,
                topic: will.topic,
                payload: will.payload,
                qos: will.qos,
                retain: will.retain,
                properties: will.properties,
                message_expiry_interval: None,
            }),
        }
    }
}

/// The key of a message.
pub(crate) fn message_key(id: u64) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

/// The prefix shared by every row of a client in the per-client tables.
pub(crate) fn client_prefix(client_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + client_id.len() + 8);
    // MQTT strings are at most 65,535 bytes; a u32 length cannot overflow for any real id.
    key.extend_from_slice(&(client_id.len() as u32).to_be_bytes());
    key.extend_from_slice(client_id.as_bytes());
    key
}

/// The key of a subscription.
pub(crate) fn subscription_key(client_id: &str, filter: &str) -> Vec<u8> {
    let mut key = client_prefix(client_id);
    key.extend_from_slice(filter.as_bytes());
    key
}

/// The key of a delivery entry.
pub(crate) fn delivery_key(client_id: &str, seq: u64) -> Vec<u8> {
    let mut key = client_prefix(client_id);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The key of an inbound QoS 2 packet id.
pub(crate) fn inbound_key(client_id: &str, packet_id: u16) -> Vec<u8> {
    let mut key = client_prefix(client_id);
    key.extend_from_slice(&packet_id.to_be_bytes());
    key
}

/// The key of a topic id.
pub(crate) fn topic_id_key(client_id: &str, topic_id: u16) -> Vec<u8> {
    let mut key = client_prefix(client_id);
    key.extend_from_slice(&topic_id.to_be_bytes());
    key
}

/// Splits a per-client key into the client id and the rest.
pub(crate) fn split_client_key(key: &[u8]) -> Result<(String, &[u8]), String> {
    let (len, rest) = key.split_first_chunk::<4>().ok_or("key shorter than its client prefix")?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err("client id longer than its key".to_owned());
    }
    let (client, rest) = rest.split_at(len);
    let client = String::from_utf8(client.to_vec()).map_err(|_| "client id is not UTF-8")?;
    Ok((client, rest))
}

/// Decodes a big-endian u64 key or key suffix.
pub(crate) fn be_u64(bytes: &[u8]) -> Result<u64, String> {
    <[u8; 8]>::try_from(bytes).map(u64::from_be_bytes).map_err(|_| format!("expected 8 bytes, found {}", bytes.len()))
}

/// Decodes a big-endian u16 key suffix.
pub(crate) fn be_u16(bytes: &[u8]) -> Result<u16, String> {
    <[u8; 2]>::try_from(bytes).map(u16::from_be_bytes).map_err(|_| format!("expected 2 bytes, found {}", bytes.len()))
}

/// A visitor of one row (key, value) of a table.
pub(crate) type RowVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), StoreError> + 'a;

/// Read access to the committed state, which both stores give so they share the planning and
/// loading code below.
pub(crate) trait Read {
    /// Every key of `table` that starts with `prefix`.
    fn keys_with_prefix(&self, table: Table, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Calls `f` with every key and value of `table`, in key order.
    fn for_each(&self, table: Table, f: &mut RowVisitor<'_>) -> Result<(), StoreError>;
}

/// The final effect of a batch: for each touched key, its new value or `None` for deleted.
///
/// Engines apply these as one atomic write. Collapsing the batch first matters for two
/// reasons: an engine batch gives all its writes one sequence number, so a put and a delete of
/// the same key in it would be ambiguous; and a message queued and delivered within one group
/// commit then costs no write at all.
pub(crate) type WriteSet = BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>;

/// Turns `batch` into its [`WriteSet`], reading `committed` only for [`Op::DeleteSession`].
pub(crate) fn plan(batch: &Batch, committed: &dyn Read) -> Result<WriteSet, StoreError> {
    let mut writes = WriteSet::new();
    for op in batch.ops() {
        match op {
            Op::PutMessage(id, record) => {
                writes.insert((Table::Messages, message_key(id.0)), Some(encode_value(record)));
            }
            Op::DeleteMessage(id) => {
                writes.insert((Table::Messages, message_key(id.0)), None);
            }
            Op::PutRetained { topic, message } => {
                writes.insert((Table::Retained, topic.as_bytes().to_vec()), Some(encode_value(message)));
            }
            Op::DeleteRetained(topic) => {
                writes.insert((Table::Retained, topic.as_bytes().to_vec()), None);
            }
            Op::PutSession { client_id, record } => {
                writes.insert((Table::Sessions, client_id.as_bytes().to_vec()), Some(encode_value(record)));
            }
            Op::DeleteSession(client_id) => {
                writes.insert((Table::Sessions, client_id.as_bytes().to_vec()), None);
                let prefix = client_prefix(client_id);
                for table in Table::PER_CLIENT {
                    for key in committed.keys_with_prefix(table, &prefix)? {
                        writes.insert((table, key), None);
                    }
                    // Rows this batch put earlier: not committed yet, so only in `writes`.
                    for (_, value) in writes
                        .range_mut((table, prefix.clone())..)
                        .take_while(|((t, k), _)| *t == table && k.starts_with(&prefix))
                    {
                        *value = None;
                    }
                }
            }
            Op::PutSubscription { client_id, filter, record } => {
                writes.insert((Table::Subscriptions, subscription_key(client_id, filter)), Some(encode_value(record)));
            }
            Op::DeleteSubscription { client_id, filter } => {
                writes.insert((Table::Subscriptions, subscription_key(client_id, filter)), None);
            }
            Op::PutDelivery { client_id, seq, record } => {
                writes.insert((Table::Deliveries, delivery_key(client_id, *seq)), Some(encode_value(record)));
            }
            Op::DeleteDelivery { client_id, seq } => {
                writes.insert((Table::Deliveries, delivery_key(client_id, *seq)), None);
            }
            Op::PutInboundQos2 { client_id, packet_id } => {
                writes.insert((Table::InboundQos2, inbound_key(client_id, *packet_id)), Some(encode_value(&())));
            }
            Op::DeleteInboundQos2 { client_id, packet_id } => {
                writes.insert((Table::InboundQos2, inbound_key(client_id, *packet_id)), None);
            }
            Op::PutTopicId { client_id, topic_id, topic } => {
                writes.insert((Table::TopicIds, topic_id_key(client_id, *topic_id)), Some(encode_value(topic)));
            }
        }
    }
    Ok(writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_keys_of_prefix_ids_do_not_interleave() {
        let a = delivery_key("ab", u64::MAX);
        let b = delivery_key("abc", 0);
        assert!(!b.starts_with(&client_prefix("ab")));
        assert!(!a.starts_with(&client_prefix("abc")));
    }

    #[test]
    fn deliveries_sort_by_seq() {
        assert!(delivery_key("c", 255) < delivery_key("c", 256));
        assert!(delivery_key("c", 1) < delivery_key("c", u64::MAX));
    }

    #[test]
    fn split_client_key_round_trips() {
        let key = subscription_key("client/1", "a/+/b");
        let (client, rest) = split_client_key(&key).expect("valid key");
        assert_eq!(client, "client/1");
        assert_eq!(rest, b"a/+/b");
        assert!(split_client_key(&[0, 0, 0, 9, b'x']).is_err());
        assert!(split_client_key(&[0, 0]).is_err());
    }

    #[test]
    fn values_carry_their_version() {
        let bytes = encode_value(&42u32);
        assert_eq!(bytes[0], RECORD_VERSION);
        assert_eq!(decode_value::<u32>(&bytes), Ok(42));
        let mut newer = bytes.clone();
        newer[0] = RECORD_VERSION + 1;
        assert!(decode_value::<u32>(&newer).unwrap_err().contains("unknown record version"));
        assert!(decode_value::<u32>(&[]).is_err());
    }

    #[test]
    fn a_version_1_session_reads_with_a_will_that_does_not_expire() {
        #[derive(Serialize)]
        struct V1Will<'a> {
            due_unix_ms: u64,
            topic: &'a str,
            payload: &'a [u8],
            qos: u8,
            retain: bool,
            properties: &'a [u8],
        }
        #[derive(Serialize)]
        struct V1Session<'a> {
            session_id: u64,
            protocol_level: u8,
            expiry_interval: u32,
            expires_at_unix_ms: Option<u64>,
            delayed_will: Option<V1Will<'a>>,
        }
        let will = V1Will { due_unix_ms: 7, topic: "t", payload: b"gone", qos: 1, retain: true, properties: b"" };
        let v1 = V1Session {
            session_id: 3,
            protocol_level: 5,
            expiry_interval: 60,
            expires_at_unix_ms: Some(9),
            delayed_will: Some(will),
        };
        let bytes = postcard::to_extend(&v1, vec![RECORD_VERSION_1]).expect("encode");
        let record = decode_session(&bytes).expect("a version 1 session");
        let will = record.delayed_will.expect("its will");
        assert_eq!((will.due_unix_ms, will.topic.as_str(), &will.payload[..]), (7, "t", &b"gone"[..]));
        assert_eq!(will.message_expiry_interval, None);
        // And version 2 round-trips the interval.
        let mut current = SessionRecord { delayed_will: Some(will), ..record };
        current.delayed_will.as_mut().unwrap().message_expiry_interval = Some(30);
        assert_eq!(decode_session(&encode_value(&current)), Ok(current));
    }
}
