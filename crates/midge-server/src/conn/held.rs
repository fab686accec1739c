//! Acknowledgements held until the store has what they promise.

use std::collections::VecDeque;

use bytes::BytesMut;
use midge_broker::ports::durability::Ticket;
use midge_store::{DurableError, WriterHandle};

/// Responses that must not be sent before a store ticket is durable (an acknowledgement
/// promises that the message is stored), in the order they were written. Once one response
/// waits, every later response waits behind it, so acknowledgements keep their order.
#[derive(Debug, Default)]
pub(super) struct HeldResponses {
    /// Allocated while responses wait and freed when none does: most connections never hold
    /// one (no persistence, or QoS 0), and an idle one should not keep the queue. Boxed so
    /// that the empty state costs one pointer in every connection's task, not four words.
    #[expect(clippy::box_collection, reason = "the Box is what keeps the idle connection small")]
    queue: Option<Box<VecDeque<(Ticket, BytesMut)>>>,
}

impl HeldResponses {
    /// Moves what was written after `mark` out of `wbuf` into the queue if it must wait for
    /// `ticket`, or for responses already waiting.
    pub(super) fn hold_back(
        &mut self,
        ticket: Option<Ticket>,
        mark: usize,
        wbuf: &mut BytesMut,
        writer: Option<&WriterHandle>,
    ) {
        let committed = writer.map_or(Ticket(0), committed);
        let waiting = ticket.filter(|t| *t > committed);
        let ticket = match (waiting, self.queue.as_ref().and_then(|queue| queue.back())) {
            (None, None) => return,
            (Some(t), None) => t,
            (t, Some((last, _))) => t.map_or(*last, |t| t.max(*last)),
        };
        let bytes = wbuf.split_off(mark);
        if !bytes.is_empty() {
            self.queue.get_or_insert_with(Box::default).push_back((ticket, bytes));
        }
    }

    /// The ticket the first held response waits for.
    pub(super) fn first_ticket(&self) -> Option<Ticket> {
        self.queue.as_ref().and_then(|queue| queue.front()).map(|(ticket, _)| *ticket)
    }

    /// Appends to `wbuf` every response whose ticket is now durable.
    pub(super) fn release(&mut self, committed: Ticket, wbuf: &mut BytesMut) {
        let Some(queue) = self.queue.as_mut() else { return };
        while queue.front().is_some_and(|(ticket, _)| *ticket <= committed) {
            let (_, bytes) = queue.pop_front().expect("front exists");
            wbuf.extend_from_slice(&bytes);
        }
        if queue.is_empty() {
            self.queue = None;
        }
    }
}

/// The ticket the writer has committed up to.
fn committed(writer: &WriterHandle) -> Ticket {
    Ticket(writer.committed().0)
}

/// Waits until `ticket` is durable and returns the committed ticket.
///
/// # Cancel safety
/// Cancel safe: it only watches the writer's progress.
pub(super) async fn wait_durable(writer: WriterHandle, ticket: Ticket) -> Result<Ticket, DurableError> {
    writer.durable(midge_store::Ticket(ticket.0)).await?;
    Ok(committed(&writer))
}
