//! Messages to a client (MQTT-SN 1.2 sections 6.10 and 6.13), without I/O: what its session
//! hands the gateway through the [`Egress`] port, the REGISTER a topic needs before its first
//! PUBLISH, the one message at a time that awaits the client's answer, and its retransmission.
//!
//! The core's session keeps the queue, the packet ids and the QoS state; [`Outbound`] keeps
//! what is on its way to the client: a short line of messages taken from the session
//! ([`SN_PENDING`] at most, plus one drain batch), and the one message that waits for an
//! answer (a REGISTER for REGACK, a PUBLISH for PUBACK or PUBREC, a PUBREL for PUBCOMP). A
//! gateway sends one such message at a time and waits (MQTT-SN 1.2 section 6.13, "only one
//! message that requires acknowledgement outstanding"; the core is told the same by a window of
//! one), and sends nothing after it meanwhile, so the client gets its messages in the order the
//! session holds them. Unanswered after Tretry, the message is sent again (a PUBLISH with DUP);
//! after Nretry times, the client is lost.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use midge_broker::ports::egress::Egress;
use midge_broker::{Outgoing, Queued};
use midge_codec::PacketId;
use midge_sn_codec::{
    Message, MsgId, Publish, PublishTopic, QoS as SnQoS, Register, ReturnCode, ShortTopicName, TopicId, TopicName,
};

use super::topics::{OutboundTopic, Predefined, TopicRegistry};
use crate::limits::{SN_MAX_DATAGRAM, SN_PENDING};

/// The octets of a PUBLISH around its data in the longest form: Length (3), MsgType, Flags,
/// TopicId, MsgId (5.2.1, 5.4.12).
const PUBLISH_OVERHEAD: usize = 9;

/// What is on its way to one client.
#[derive(Debug)]
pub(crate) struct Outbound {
    /// Taken from the session, not sent yet (the first may be waiting for its topic's REGACK).
    pending: VecDeque<Outgoing>,
    /// The message that waits for the client's answer.
    outstanding: Option<Outstanding>,
    /// The MsgId of the gateway's last REGISTER.
    last_register_id: u16,
    /// Tretry.
    retry_interval: Duration,
    /// Nretry.
    retry_count: u32,
}

/// A message sent and awaiting its answer.
#[derive(Debug)]
struct Outstanding {
    awaiting: Awaiting,
    /// What to send again: a PUBLISH with its DUP flag set.
    message: Message,
    deadline: Instant,
    retries_left: u32,
}

/// The answer a message waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    /// REGACK for the REGISTER of `topic_id`, sent for the first pending PUBLISH.
    RegAck { msg_id: u16, topic_id: u16 },
    /// PUBACK for a QoS 1 PUBLISH; `topic_id` is its normal id, if it has one.
    PubAck { packet_id: PacketId, topic_id: Option<u16> },
    /// PUBREC (or a rejecting PUBACK) for a QoS 2 PUBLISH.
    PubRec { packet_id: PacketId, topic_id: Option<u16> },
    /// PUBCOMP for a PUBREL.
    PubComp { packet_id: PacketId },
}

/// What [`Outbound::next`] asks of the client's task.
#[derive(Debug)]
pub(crate) enum Step {
    /// Send this, then ask again.
    Send(Message),
    /// The first pending message cannot be sent: its topic would need an id and the client's
    /// registry is full. Acknowledge its packet id (if any) to the session, which drops it.
    Dropped(Option<PacketId>),
    /// Nothing to send now.
    Idle,
}

/// The answer to a REGISTER, as [`Outbound::on_regack`] takes it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RegAckOutcome {
    /// Not the REGACK awaited (late, or repeated): nothing changes.
    Stale,
    /// Accepted: the PUBLISH it was for goes next.
    Accepted,
    /// Refused (6.10: that PUBLISH is not sent): acknowledge its packet id to the session, which
    /// drops it.
    Refused(Option<PacketId>),
}

/// The answer to a PUBLISH at QoS 2 or a PUBREL, as [`Outbound::on_pubrec`] takes it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PubRecOutcome {
    /// The awaited PUBREC: tell the session, and send this PUBREL.
    Release(PacketId, Message),
    /// A PUBREC repeated while the PUBREL awaits its PUBCOMP: send the PUBREL again.
    Again(Message),
    /// For nothing in flight.
    Unknown,
}

/// What Tretry running out means, from [`Outbound::on_timeout`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Timeout {
    /// Not yet.
    NotDue,
    /// Send this again.
    Resend(Message),
    /// Nretry retransmissions went unanswered: the client is lost (6.13).
    Lost,
}

impl Outbound {
    /// An empty line with Tretry `retry_interval` and Nretry `retry_count`.
    pub(crate) fn new(retry_interval: Duration, retry_count: u32) -> Self {
        Self { pending: VecDeque::new(), outstanding: None, last_register_id: 0, retry_interval, retry_count }
    }

    /// The sink the session's messages are drained into.
    pub(crate) fn egress(&mut self) -> SnEgress<'_> {
        SnEgress { outbound: self }
    }

    /// Whether the line takes more from the session now.
    pub(crate) fn has_room(&self) -> bool {
        self.pending.len() < SN_PENDING
    }

    /// When the outstanding message is to be sent again.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.outstanding.as_ref().map(|outstanding| outstanding.deadline)
    }

    /// Whether a message awaits the client's answer.
    #[cfg(test)]
    pub(crate) fn is_waiting(&self) -> bool {
        self.outstanding.is_some()
    }

    /// Whether nothing is on its way: nothing pending, nothing awaiting an answer.
    pub(crate) fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.outstanding.is_none()
    }

    /// After a pause in which the client could not answer (it slept, 6.14): the message that
    /// awaits its answer is sent again at once, without counting against Nretry.
    pub(crate) fn rearm(&mut self, now: Instant) {
        if let Some(outstanding) = self.outstanding.as_mut() {
            outstanding.deadline = now;
            outstanding.retries_left = outstanding.retries_left.saturating_add(1);
        }
    }

    /// The next thing to send, if nothing awaits an answer.
    pub(crate) fn next(&mut self, topics: &mut TopicRegistry, predefined: &Predefined, now: Instant) -> Step {
        if self.outstanding.is_some() {
            return Step::Idle;
        }
        let Some(head) = self.pending.front() else { return Step::Idle };
        let (item, packet_id, dup) = match head {
            Outgoing::PubRel(packet_id) => {
                let packet_id = *packet_id;
                self.pending.pop_front();
                let message = Message::PubRel { msg_id: MsgId(packet_id.get()) };
                return Step::Send(self.wait(Awaiting::PubComp { packet_id }, message, now));
            }
            Outgoing::Publish { item, packet_id, dup } => (item, *packet_id, *dup),
        };
        let topic = match topics.outbound(&item.message.topic, predefined) {
            OutboundTopic::Full => {
                self.pending.pop_front();
                return Step::Dropped(packet_id);
            }
            OutboundTopic::Unregistered(topic_id) => {
                let Some(topic_name) = TopicName::new(item.message.topic.as_str()) else {
                    // Unreachable: a message's topic is never empty.
                    self.pending.pop_front();
                    return Step::Dropped(packet_id);
                };
                self.last_register_id = self.last_register_id.wrapping_add(1).max(1);
                let msg_id = self.last_register_id;
                let register =
                    Message::Register(Register { topic_id: TopicId(topic_id), msg_id: MsgId(msg_id), topic_name });
                return Step::Send(self.wait(Awaiting::RegAck { msg_id, topic_id }, register, now));
            }
            OutboundTopic::Registered(id) => PublishTopic::Normal(TopicId(id)),
            OutboundTopic::Predefined(id) => PublishTopic::Predefined(TopicId(id)),
            OutboundTopic::Short(name) => PublishTopic::Short(ShortTopicName(name)),
        };
        let normal_id = match topic {
            PublishTopic::Normal(TopicId(id)) => Some(id),
            _ => None,
        };
        let publish = publish(item, topic, packet_id, dup);
        self.pending.pop_front();
        match (item_qos(&publish), packet_id) {
            (SnQoS::AtLeastOnce, Some(packet_id)) => {
                Step::Send(self.wait(Awaiting::PubAck { packet_id, topic_id: normal_id }, publish, now))
            }
            (SnQoS::ExactlyOnce, Some(packet_id)) => {
                Step::Send(self.wait(Awaiting::PubRec { packet_id, topic_id: normal_id }, publish, now))
            }
            _ => Step::Send(publish),
        }
    }

    /// A REGACK from the client.
    pub(crate) fn on_regack(&mut self, msg_id: MsgId, code: ReturnCode, topics: &mut TopicRegistry) -> RegAckOutcome {
        let Some(Awaiting::RegAck { msg_id: awaited, topic_id }) = self.awaiting() else {
            return RegAckOutcome::Stale;
        };
        if awaited != msg_id.0 {
            return RegAckOutcome::Stale;
        }
        self.outstanding = None;
        if code.is_accepted() {
            topics.set_known(topic_id, true);
            return RegAckOutcome::Accepted;
        }
        // 6.10: the PUBLISH the REGISTER was for is not sent.
        let dropped = match self.pending.pop_front() {
            Some(Outgoing::Publish { packet_id, .. }) => packet_id,
            _ => None,
        };
        RegAckOutcome::Refused(dropped)
    }

    /// A PUBACK from the client: the packet id it completes (a QoS 1 PUBLISH acknowledged, or
    /// a QoS 1 or 2 PUBLISH the client rejected, 5.4.13), for the session. A rejection for an
    /// invalid topic id makes the topic REGISTERed again before its next PUBLISH.
    pub(crate) fn on_puback(
        &mut self,
        msg_id: MsgId,
        code: ReturnCode,
        topics: &mut TopicRegistry,
    ) -> Option<PacketId> {
        let (packet_id, topic_id) = match self.awaiting()? {
            Awaiting::PubAck { packet_id, topic_id } | Awaiting::PubRec { packet_id, topic_id } => {
                (packet_id, topic_id)
            }
            _ => return None,
        };
        if packet_id.get() != msg_id.0 {
            return None;
        }
        self.outstanding = None;
        if code == ReturnCode::REJECTED_INVALID_TOPIC_ID {
            if let Some(id) = topic_id {
                topics.set_known(id, false);
            }
        }
        Some(packet_id)
    }

    /// A PUBREC from the client.
    pub(crate) fn on_pubrec(&mut self, msg_id: MsgId, now: Instant) -> PubRecOutcome {
        let release = Message::PubRel { msg_id };
        match self.awaiting() {
            Some(Awaiting::PubRec { packet_id, .. }) if packet_id.get() == msg_id.0 => {
                let message = self.wait(Awaiting::PubComp { packet_id }, release, now);
                PubRecOutcome::Release(packet_id, message)
            }
            Some(Awaiting::PubComp { packet_id }) if packet_id.get() == msg_id.0 => PubRecOutcome::Again(release),
            _ => PubRecOutcome::Unknown,
        }
    }

    /// A PUBCOMP from the client: the packet id it completes, for the session.
    pub(crate) fn on_pubcomp(&mut self, msg_id: MsgId) -> Option<PacketId> {
        match self.awaiting()? {
            Awaiting::PubComp { packet_id } if packet_id.get() == msg_id.0 => {
                self.outstanding = None;
                Some(packet_id)
            }
            _ => None,
        }
    }

    /// Tretry at `now`: the outstanding message to send again, or the client lost.
    pub(crate) fn on_timeout(&mut self, now: Instant) -> Timeout {
        let interval = self.retry_interval;
        let Some(outstanding) = self.outstanding.as_mut().filter(|o| o.deadline <= now) else {
            return Timeout::NotDue;
        };
        if outstanding.retries_left == 0 {
            return Timeout::Lost;
        }
        outstanding.retries_left -= 1;
        outstanding.deadline = now + interval;
        if let Message::Publish(publish) = &mut outstanding.message {
            publish.dup = true; // 5.3.4: DUP on every retransmission of a PUBLISH
        }
        Timeout::Resend(outstanding.message.clone())
    }

    fn awaiting(&self) -> Option<Awaiting> {
        self.outstanding.as_ref().map(|outstanding| outstanding.awaiting)
    }

    /// Makes `message` the outstanding one, and returns it to send.
    fn wait(&mut self, awaiting: Awaiting, message: Message, now: Instant) -> Message {
        let deadline = now + self.retry_interval;
        self.outstanding =
            Some(Outstanding { awaiting, message: message.clone(), deadline, retries_left: self.retry_count });
        message
    }
}

/// The PUBLISH that carries `item` on `topic`.
fn publish(item: &Queued, topic: PublishTopic, packet_id: Option<PacketId>, dup: bool) -> Message {
    let qos = match item.qos {
        midge_codec::QoS::AtMostOnce => SnQoS::AtMostOnce,
        midge_codec::QoS::AtLeastOnce => SnQoS::AtLeastOnce,
        midge_codec::QoS::ExactlyOnce => SnQoS::ExactlyOnce,
    };
    Message::Publish(Publish {
        dup: dup && qos != SnQoS::AtMostOnce,
        qos,
        retain: item.retain,
        topic,
        msg_id: MsgId(packet_id.map_or(0, PacketId::get)),
        data: item.message.payload.clone(),
    })
}

fn item_qos(message: &Message) -> SnQoS {
    match message {
        Message::Publish(publish) => publish.qos,
        _ => SnQoS::AtMostOnce,
    }
}

/// The session's side of a client's [`Outbound`]: the [`Egress`] its messages are drained into.
pub(crate) struct SnEgress<'a> {
    outbound: &'a mut Outbound,
}

impl Egress for SnEgress<'_> {
    /// A message whose data does not fit one datagram cannot be sent: the session drops it and
    /// counts it.
    fn accepts(&mut self, item: &Queued, _now: Instant) -> bool {
        item.message.payload.len() + PUBLISH_OVERHEAD <= SN_MAX_DATAGRAM
    }

    fn send(&mut self, outgoing: Outgoing, _now: Instant) -> bool {
        let message = matches!(outgoing, Outgoing::Publish { .. });
        self.outbound.pending.push_back(outgoing);
        message
    }

    fn has_room(&self) -> bool {
        self.outbound.has_room()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use midge_broker::{Message as CoreMessage, Queued};
    use midge_codec::{Properties, QoS};

    use super::*;

    const TRETRY: Duration = Duration::from_secs(10);

    fn item(topic: &str, qos: QoS) -> Queued {
        let publish = midge_codec::Publish {
            dup: false,
            qos,
            retain: false,
            topic: midge_codec::TopicName::new(topic).unwrap(),
            packet_id: None,
            properties: Properties::default(),
            payload: Bytes::from_static(b"data"),
        };
        Queued {
            message: Arc::new(CoreMessage::new(1, &publish, None, Instant::now())),
            qos,
            retain: false,
            subscription_ids: Default::default(),
            shared: None,
            handed_on: 0,
        }
    }

    fn push(outbound: &mut Outbound, topic: &str, qos: QoS, id: u16) {
        let packet_id = PacketId::new(id);
        outbound.egress().send(Outgoing::Publish { item: item(topic, qos), packet_id, dup: false }, Instant::now());
    }

    fn sent(step: Step) -> Message {
        match step {
            Step::Send(message) => message,
            other => panic!("expected a message to send, got {other:?}"),
        }
    }

    /// 6.10: a topic the client does not know is REGISTERed first; its PUBLISH waits for the
    /// REGACK, then goes with the id; the next message on it needs no REGISTER.
    #[test]
    fn sn_6_10_a_new_topic_is_registered_before_its_first_publish() {
        let (now, table, mut topics) = (Instant::now(), Predefined::default(), TopicRegistry::new(8));
        let mut outbound = Outbound::new(TRETRY, 3);
        push(&mut outbound, "a/b", QoS::AtMostOnce, 0);
        push(&mut outbound, "a/b", QoS::AtMostOnce, 0);
        let Message::Register(register) = sent(outbound.next(&mut topics, &table, now)) else { panic!() };
        assert_eq!(register.topic_name.as_str(), "a/b");
        assert!(matches!(outbound.next(&mut topics, &table, now), Step::Idle), "the PUBLISH waits for REGACK");
        let outcome = outbound.on_regack(register.msg_id, ReturnCode::ACCEPTED, &mut topics);
        assert_eq!(outcome, RegAckOutcome::Accepted);
        for _ in 0..2 {
            let Message::Publish(publish) = sent(outbound.next(&mut topics, &table, now)) else { panic!() };
            assert_eq!(publish.topic, PublishTopic::Normal(register.topic_id));
        }
        assert!(matches!(outbound.next(&mut topics, &table, now), Step::Idle));
    }

    /// 6.10: a REGISTER the client refuses is not followed by a PUBLISH on that id; the message
    /// is handed back for the session to drop.
    #[test]
    fn sn_6_10_a_refused_register_is_not_followed_by_its_publish() {
        let (now, table, mut topics) = (Instant::now(), Predefined::default(), TopicRegistry::new(8));
        let mut outbound = Outbound::new(TRETRY, 3);
        push(&mut outbound, "a/b", QoS::AtLeastOnce, 7);
        push(&mut outbound, "ab", QoS::AtMostOnce, 0);
        let Message::Register(register) = sent(outbound.next(&mut topics, &table, now)) else { panic!() };
        let outcome = outbound.on_regack(register.msg_id, ReturnCode::REJECTED_NOT_SUPPORTED, &mut topics);
        assert_eq!(outcome, RegAckOutcome::Refused(PacketId::new(7)));
        let Message::Publish(next) = sent(outbound.next(&mut topics, &table, now)) else { panic!() };
        assert_eq!(next.topic, PublishTopic::Short(ShortTopicName(*b"ab")), "the next message, not the refused one");
    }

    /// 6.13: one message awaits its answer at a time; unanswered, it is sent again after
    /// Tretry (a PUBLISH with DUP), and after Nretry retransmissions the client is lost.
    #[test]
    fn sn_6_13_an_unanswered_publish_is_sent_again_with_dup_then_the_client_is_lost() {
        let (now, table, mut topics) = (Instant::now(), Predefined::default(), TopicRegistry::new(8));
        let mut outbound = Outbound::new(TRETRY, 2);
        push(&mut outbound, "ab", QoS::AtLeastOnce, 1);
        push(&mut outbound, "ab", QoS::AtMostOnce, 0);
        let Message::Publish(first) = sent(outbound.next(&mut topics, &table, now)) else { panic!() };
        assert!(!first.dup);
        assert!(matches!(outbound.next(&mut topics, &table, now), Step::Idle), "nothing overtakes it");
        assert_eq!(outbound.on_timeout(now + TRETRY / 2), Timeout::NotDue);
        for n in 1..=2 {
            let Timeout::Resend(Message::Publish(again)) = outbound.on_timeout(now + TRETRY * n) else { panic!() };
            assert!(again.dup && again.msg_id == first.msg_id && again.data == first.data);
        }
        assert_eq!(outbound.on_timeout(now + TRETRY * 3), Timeout::Lost);
    }

    /// 6.7 and 6.10 for QoS 2: PUBREC answered with PUBREL, which awaits PUBCOMP; a PUBREC
    /// repeated gets the PUBREL again; a PUBACK that rejects an invalid topic id makes the
    /// topic REGISTERed again.
    #[test]
    fn sn_6_10_qos_2_and_a_rejected_topic_id() {
        let (now, table, mut topics) = (Instant::now(), Predefined::default(), TopicRegistry::new(8));
        let mut outbound = Outbound::new(TRETRY, 3);
        push(&mut outbound, "ab", QoS::ExactlyOnce, 4);
        let Message::Publish(publish) = sent(outbound.next(&mut topics, &table, now)) else { panic!() };
        let PubRecOutcome::Release(id, Message::PubRel { msg_id }) = outbound.on_pubrec(publish.msg_id, now) else {
            panic!()
        };
        assert_eq!((id.get(), msg_id), (4, publish.msg_id));
        assert!(matches!(outbound.on_pubrec(publish.msg_id, now), PubRecOutcome::Again(_)));
        assert_eq!(outbound.on_pubcomp(publish.msg_id), PacketId::new(4));
        assert!(!outbound.is_waiting());

        push(&mut outbound, "x/y", QoS::AtLeastOnce, 5);
        let Message::Register(register) = sent(outbound.next(&mut topics, &table, now)) else { panic!() };
        outbound.on_regack(register.msg_id, ReturnCode::ACCEPTED, &mut topics);
        let Message::Publish(publish) = sent(outbound.next(&mut topics, &table, now)) else { panic!() };
        let code = ReturnCode::REJECTED_INVALID_TOPIC_ID;
        assert_eq!(outbound.on_puback(publish.msg_id, code, &mut topics), PacketId::new(5));
        push(&mut outbound, "x/y", QoS::AtMostOnce, 0);
        let Message::Register(again) = sent(outbound.next(&mut topics, &table, now)) else { panic!() };
        assert_eq!(again.topic_id, register.topic_id, "registered again, with the same id");
    }

    #[test]
    fn a_message_that_does_not_fit_a_datagram_is_refused() {
        let mut outbound = Outbound::new(TRETRY, 3);
        let mut big = item("ab", QoS::AtMostOnce);
        let publish = midge_codec::Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: midge_codec::TopicName::new("ab").unwrap(),
            packet_id: None,
            properties: Properties::default(),
            payload: Bytes::from(vec![0; SN_MAX_DATAGRAM]),
        };
        big.message = Arc::new(CoreMessage::new(2, &publish, None, Instant::now()));
        assert!(!outbound.egress().accepts(&big, Instant::now()));
        assert!(outbound.egress().accepts(&item("ab", QoS::AtMostOnce), Instant::now()));
    }
}
