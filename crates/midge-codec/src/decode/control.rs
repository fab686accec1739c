//! PINGREQ, PINGRESP, DISCONNECT and AUTH: packets that are short or empty.

use crate::error::DecodeError;
use crate::packet::{Auth, Disconnect, Packet};
use crate::properties::{self, Context};
use crate::reader::Reader;
use crate::reason::ReasonCode;
use crate::types::ProtocolVersion;

/// PINGREQ and PINGRESP have no variable header or payload.
pub(super) fn empty(reader: Reader, packet: Packet) -> Result<Packet, DecodeError> {
    reader.finish("PINGREQ and PINGRESP have a remaining length of 0")?;
    Ok(packet)
}

/// Decodes DISCONNECT: empty in 3.x. In v5, a remaining length of 0 means Normal disconnection
/// and below 2 no properties (section 3.14.2.1, 3.14.2.2.1).
pub(super) fn disconnect(mut reader: Reader, version: ProtocolVersion) -> Result<Disconnect, DecodeError> {
    let mut disconnect = Disconnect::default();
    if version.is_v5() && !reader.is_empty() {
        disconnect.reason = ReasonCode(reader.u8("missing reason code")?);
        if !reader.is_empty() {
            disconnect.properties = properties::read(&mut reader, Context::Disconnect)?;
        }
    }
    reader.finish("bytes after the DISCONNECT")?;
    Ok(disconnect)
}

/// Decodes AUTH (v5 only; the header check rejects it for 3.x). A remaining length of 0 means
/// Success without properties (section 3.15.2.1); otherwise reason code and properties are
/// both present, since the specification allows omitting only both.
pub(super) fn auth(mut reader: Reader) -> Result<Auth, DecodeError> {
    let mut auth = Auth::default();
    if !reader.is_empty() {
        auth.reason = ReasonCode(reader.u8("missing reason code")?);
        auth.properties = properties::read(&mut reader, Context::Auth)?;
    }
    reader.finish("bytes after the AUTH properties")?;
    Ok(auth)
}
