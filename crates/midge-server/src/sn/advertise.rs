//! ADVERTISE (MQTT-SN 1.2 sections 5.4.1 and 6.1): the gateway's periodic announcement, sent to
//! `sn_advertise_address` (the wireless network's broadcast address in production) every
//! `sn_advertise_interval_s` seconds, the first at once. Its Duration is that interval, so a
//! client that has heard one knows when to expect the next, and may take the gateway as gone
//! after missing a few (6.1).

use std::sync::Arc;

use midge_sn_codec::Message;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::config::Advertise;

/// Sends ADVERTISE from `socket` as `advertise` says, with GwId `gw_id`, until told to stop.
///
/// # Cancel safety
/// Cancel safe: it only sends and waits.
pub(crate) async fn run(socket: Arc<UdpSocket>, gw_id: u8, advertise: Advertise, mut stop: watch::Receiver<bool>) {
    let Advertise { address, interval_s } = advertise;
    let message = Message::Advertise { gw_id, duration: interval_s };
    let mut datagram = bytes::BytesMut::with_capacity(message.encoded_len());
    if let Err(error) = midge_sn_codec::encode(&message, &mut datagram) {
        tracing::warn!(%error, "mqtt-sn: cannot encode ADVERTISE");
        return;
    }
    // Needed to send to a broadcast address; a subnet's (192.168.1.255) cannot be told from a
    // host's here, and the option changes nothing for a host's.
    if let Err(error) = socket.set_broadcast(true) {
        tracing::debug!(%error, "mqtt-sn: SO_BROADCAST not set on the ADVERTISE socket");
    }
    tracing::info!(%address, interval_s, "mqtt-sn: advertising the gateway");
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(u64::from(interval_s)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if let Err(error) = socket.send_to(&datagram, address).await {
                    tracing::debug!(%address, %error, "mqtt-sn: ADVERTISE not sent");
                }
            }
            _ = stop.changed() => return,
        }
    }
}
