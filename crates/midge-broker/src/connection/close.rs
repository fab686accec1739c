//! A connection's end: the will published, parked for its delay or discarded, as the way the
//! connection ended requires; the session detached, and ended if it does not outlive the
//! connection.

use std::time::{Duration, Instant};

use super::state::{ClientConnection, CloseKind};
use crate::broker::{is_reserved_for_the_broker, ClientEvent};
use crate::ports::access::Action;

impl ClientConnection {
    /// The will the connection holds.
    pub fn will(&self) -> Option<&midge_codec::Will> {
        self.will.as_deref()
    }

    /// Replaces the will (`None`: deletes it), checked against the limits as a CONNECT's is:
    /// an MQTT-SN client's WILLTOPICUPD and WILLMSGUPD (MQTT-SN 1.2 section 6.4). Refused, the
    /// will stays as it was, and why is returned.
    pub fn set_will(&mut self, will: Option<midge_codec::Will>, now: Instant) -> Result<(), &'static str> {
        if let Some(will) = &will {
            self.broker.check_will(will, self.session.client_id(), now).map_err(|(_, why)| why)?;
        }
        self.will = will.map(Box::new);
        self.arm_will(now);
        Ok(())
    }

    /// Tells the cluster, on a node of one, of the will this connection holds (if the client
    /// may publish it), so that another node publishes it if this one dies.
    pub(super) fn arm_will(&mut self, now: Instant) {
        let Some(fabric) = self.broker.fabric().cloned() else { return };
        let will = self
            .will
            .clone()
            .filter(|will| !is_reserved_for_the_broker(&will.topic) && self.permits(Action::Publish, &will.topic));
        let message = will.map(|will| self.broker.will_message(&will, None, now));
        fabric.will_armed(self.session.client_id(), message.as_deref());
    }

    /// Ends the connection: publishes or schedules the will as `how` requires, detaches from
    /// the session, and ends the session if it does not outlive the connection.
    pub fn close(mut self, how: CloseKind, now: Instant) {
        // On a node of a cluster the will stays armed there while it is parked for its delay
        // (if this node dies, the session ends with it and the will is due: MQTT 5.0 section
        // 3.1.3.2.2); otherwise it is disarmed below, published or not.
        let armed = self.will.is_some() && self.broker.fabric().is_some();
        let will = match how {
            CloseKind::Abnormal | CloseKind::NormalWithWill | CloseKind::TakenOver => self.will.take(),
            CloseKind::Normal | CloseKind::ServerShutdown => None,
        };
        // The will is checked against the client's rights when it is published (a delayed one:
        // when it is parked, with the rights the client had then).
        let will = will.filter(|will| {
            // Only the broker publishes into $SYS, as for a client's PUBLISH.
            let allowed = !is_reserved_for_the_broker(&will.topic) && self.permits(Action::Publish, &will.topic);
            if !allowed {
                tracing::info!(client_id = %self.client_id(), topic = %will.topic, "will refused by the ACL");
            }
            allowed
        });
        let detached = self.session.detach(self.conn_id, now, self.broker.limits(), self.broker.journal());
        let (expiry, expires_at, handed_over) = {
            let state = self.session.lock();
            (state.expiry_interval, state.expires_at, state.handed_over)
        };
        if handed_over {
            // The session lives on another node now, resumed by its client: as a takeover by a
            // resume, the will goes only if it has no delay (MQTT-3.1.3-9), and nothing of the
            // session is scheduled or stored here.
            if let Some(will) = will.filter(|will| will.properties.will_delay_interval.unwrap_or(0) == 0) {
                self.broker.publish_will(self.broker.will_message(&will, Some(self.session.id()), now));
            }
            if armed {
                self.broker.disarm_will(self.session.client_id());
            }
            self.broker.client_event(ClientEvent::Disconnected, self.session.client_id(), now);
            return;
        }
        if let Some(at) = expires_at.filter(|_| detached) {
            self.broker.schedule_deadline(at, &self.session);
        }
        if let Some(will) = will {
            let delay = will.properties.will_delay_interval.unwrap_or(0);
            let publish_now = if delay == 0 || (detached && expiry == 0) {
                true
            } else if detached {
                // MQTT 5.0 section 3.1.3.2.2: published when the delay or the session ends,
                // whichever is first. Checked under the session lock, so a session ending
                // concurrently either publishes the parked will or makes us publish it.
                let mut state = self.session.lock();
                if state.ended {
                    true
                } else {
                    let due = now + Duration::from_secs(u64::from(delay));
                    state.delayed_will =
                        Some(Box::new((due, self.broker.will_message(&will, Some(self.session.id()), due))));
                    self.broker.schedule_deadline(due, &self.session);
                    false
                }
            } else {
                // Taken over: by a clean start, which ended this session (publish now), or by a
                // connection that resumed it, which cancels a delayed will (MQTT-3.1.3-9).
                self.session.lock().ended
            };
            if publish_now {
                self.broker.publish_will(self.broker.will_message(&will, Some(self.session.id()), now));
            } else if self.session.lock().persistent() {
                self.broker.save_session(&self.session); // the parked will is durable too
            }
            if armed && publish_now {
                self.broker.disarm_will(self.session.client_id());
            }
        } else if armed {
            // Not due (a normal DISCONNECT, a shutdown) or refused by the ACL.
            self.broker.disarm_will(self.session.client_id());
        }
        if detached && expiry == 0 && how != CloseKind::ServerShutdown {
            // Only if still detached: a client that resumed it meanwhile keeps it.
            self.broker.finish_session_if(&self.session, true);
        } else if detached && expiry > 0 && how != CloseKind::ServerShutdown {
            self.broker.save_session(&self.session); // when it expires, now that it is detached
        }
        self.broker.client_event(ClientEvent::Disconnected, self.session.client_id(), now);
    }
}
