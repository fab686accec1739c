//! PINGREQ, PINGRESP, DISCONNECT, AUTH.

use bytes::BytesMut;
use midge_codec::{
    encode_packet, encoded_len, Auth, Disconnect, EncodeError, Packet, Properties, ProtocolVersion, ReasonCode,
};

use crate::support::{assert_malformed, assert_wire, bytes, decode, encode, s, ALL, V3};

#[test]
fn ping_is_two_bytes() {
    for version in ALL {
        assert_wire(&[0xC0, 0x00], &Packet::PingReq, version);
        assert_wire(&[0xD0, 0x00], &Packet::PingResp, version);
        assert_malformed(&[0xC0, 0x01, 0x00], version);
        assert_malformed(&[0xD0, 0x01, 0x00], version);
    }
}

/// 3.x DISCONNECT is `e0 00`; whatever v5 fields are set are not sent.
#[test]
fn disconnect_3x() {
    for version in V3 {
        assert_wire(&[0xE0, 0x00], &Packet::Disconnect(Disconnect::default()), version);
        let v5_fields = Packet::Disconnect(Disconnect {
            reason: ReasonCode::SERVER_SHUTTING_DOWN,
            properties: Properties { reason_string: Some(s("bye")), ..Properties::default() },
        });
        assert_eq!(encode(&v5_fields, version), [0xE0, 0x00]);
        assert_malformed(&[0xE0, 0x01, 0x00], version);
    }
}

/// Section 3.14.2.1 (5.0): remaining length 0 is Normal disconnection without properties, and
/// below 2 there are no properties.
#[test]
fn disconnect_v5_forms() {
    let v5 = ProtocolVersion::V5;
    assert_wire(&[0xE0, 0x00], &Packet::Disconnect(Disconnect::default()), v5);
    let with_will =
        Packet::Disconnect(Disconnect { reason: ReasonCode::DISCONNECT_WITH_WILL, properties: Properties::default() });
    assert_wire(&[0xE0, 0x01, 0x04], &with_will, v5);
    assert_eq!(decode(&[0xE0, 0x02, 0x04, 0x00], v5), Ok(with_will));
    let with_properties = Packet::Disconnect(Disconnect {
        reason: ReasonCode::SERVER_MOVED,
        properties: Properties { server_reference: Some(s("b")), ..Properties::default() },
    });
    assert_wire(&[0xE0, 0x06, 0x9D, 0x04, 0x1C, 0x00, 0x01, b'b'], &with_properties, v5);
    assert_malformed(&[0xE0, 0x03, 0x00, 0x00, 0x00], v5);
}

/// Section 3.15.2.1 (5.0): AUTH of remaining length 0 is Success without properties;
/// otherwise both the reason code and the property length are present.
#[test]
fn auth_v5() {
    let v5 = ProtocolVersion::V5;
    assert_wire(&[0xF0, 0x00], &Packet::Auth(Auth::default()), v5);
    let continued = Packet::Auth(Auth {
        reason: ReasonCode::CONTINUE_AUTHENTICATION,
        properties: Properties {
            authentication_method: Some(s("SCRAM")),
            authentication_data: Some(bytes(&[0x01, 0x02])),
            ..Properties::default()
        },
    });
    let bytes = [
        0xF0, 0x0F, 0x18, 0x0D, //
        0x15, 0x00, 0x05, b'S', b'C', b'R', b'A', b'M', // authentication method
        0x16, 0x00, 0x02, 0x01, 0x02, // authentication data
    ];
    assert_wire(&bytes, &continued, v5);
    let reauthenticate = Packet::Auth(Auth { reason: ReasonCode::REAUTHENTICATE, properties: Properties::default() });
    assert_wire(&[0xF0, 0x02, 0x19, 0x00], &reauthenticate, v5);
    assert_malformed(&[0xF0, 0x01, 0x19], v5);
}

#[test]
fn auth_cannot_be_encoded_for_3x() {
    for version in V3 {
        let mut out = BytesMut::new();
        let auth = Packet::Auth(Auth::default());
        assert!(matches!(encode_packet(&auth, version, &mut out), Err(EncodeError::Unencodable(_))));
        assert!(out.is_empty());
        assert_eq!(encoded_len(&auth, version), 0);
    }
}
