//! DISCONNECT and AUTH (PINGREQ and PINGRESP have no body).

use crate::encode::reason_and_properties;
use crate::packet::{Auth, Disconnect};
use crate::sink::Sink;
use crate::types::ProtocolVersion;

/// DISCONNECT: empty for 3.x; in v5 empty for Normal disconnection without properties and the
/// reason alone without properties (section 3.14.2.1).
pub(super) fn disconnect<S: Sink>(disconnect: &Disconnect, version: ProtocolVersion, sink: &mut S) {
    if version.is_v5() {
        reason_and_properties(disconnect.reason, &disconnect.properties, true, sink);
    }
}

/// AUTH: empty for Success without properties (section 3.15.2.1). It does not exist in 3.x.
pub(super) fn auth<S: Sink>(auth: &Auth, version: ProtocolVersion, sink: &mut S) {
    if !version.is_v5() {
        sink.reject("AUTH exists only in MQTT 5");
        return;
    }
    reason_and_properties(auth.reason, &auth.properties, false, sink);
}
