//! A cursor over one frame's bytes with typed "missing X" errors.
//!
//! Reads never panic: each checks the remaining length first and fails with
//! [`DecodeError::Malformed`] naming what was missing, because a length that overruns the frame
//! is a malformed packet. Slices share the frame's storage, so topics, payloads, strings and
//! binary data are not copied.

use bytes::{Buf, Bytes};

use crate::error::DecodeError;
use crate::types::MqttString;
use crate::varint;

/// The unread rest of a frame (or of a property section inside one).
#[derive(Debug)]
pub(crate) struct Reader {
    /// Bytes not read yet; reads split from the front.
    rest: Bytes,
}

impl Reader {
    /// A reader over `bytes`.
    pub(crate) fn new(bytes: Bytes) -> Self {
        Self { rest: bytes }
    }

    /// Whether everything has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// One byte.
    pub(crate) fn u8(&mut self, missing: &'static str) -> Result<u8, DecodeError> {
        self.need(1, missing)?;
        Ok(self.rest.get_u8())
    }

    /// A Two Byte Integer, big-endian (section 1.5.2).
    pub(crate) fn u16(&mut self, missing: &'static str) -> Result<u16, DecodeError> {
        self.need(2, missing)?;
        Ok(self.rest.get_u16())
    }

    /// A Four Byte Integer, big-endian (section 1.5.3).
    pub(crate) fn u32(&mut self, missing: &'static str) -> Result<u32, DecodeError> {
        self.need(4, missing)?;
        Ok(self.rest.get_u32())
    }

    /// A Variable Byte Integer (section 1.5.5).
    pub(crate) fn varint(&mut self, missing: &'static str) -> Result<u32, DecodeError> {
        match varint::decode(&self.rest)? {
            Some((value, len)) => {
                self.rest.advance(len);
                Ok(value)
            }
            None => Err(DecodeError::Malformed(missing)),
        }
    }

    /// The next `len` bytes, sharing storage.
    pub(crate) fn take(&mut self, len: usize, missing: &'static str) -> Result<Bytes, DecodeError> {
        self.need(len, missing)?;
        Ok(self.rest.split_to(len))
    }

    /// Binary Data: a two byte length, then that many bytes (section 1.5.6).
    pub(crate) fn binary(&mut self, missing: &'static str) -> Result<Bytes, DecodeError> {
        let len = self.u16(missing)?;
        self.take(usize::from(len), missing)
    }

    /// A UTF-8 Encoded String (section 1.5.4): Binary Data that must be valid UTF-8 without
    /// U+0000 (MQTT-1.5.4-1, MQTT-1.5.4-2).
    pub(crate) fn string(&mut self, missing: &'static str) -> Result<MqttString, DecodeError> {
        MqttString::from_bytes(self.binary(missing)?).map_err(DecodeError::String)
    }

    /// Everything not read yet, e.g. a PUBLISH payload.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.rest)
    }

    /// Fails with `trailing` if bytes are left: a packet with a fixed layout must end exactly
    /// where its remaining length says.
    pub(crate) fn finish(&self, trailing: &'static str) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Malformed(trailing))
        }
    }

    fn need(&self, len: usize, missing: &'static str) -> Result<(), DecodeError> {
        if self.rest.len() < len {
            return Err(DecodeError::Malformed(missing));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::InvalidValue;

    #[test]
    fn reads_integers_big_endian() {
        let mut reader = Reader::new(Bytes::from_static(&[1, 0x01, 0x02, 0, 0, 1, 0, 0x80, 0x01]));
        assert_eq!(reader.u8("a"), Ok(1));
        assert_eq!(reader.u16("b"), Ok(0x0102));
        assert_eq!(reader.u32("c"), Ok(256));
        assert_eq!(reader.varint("d"), Ok(128));
        assert!(reader.is_empty());
    }

    #[test]
    fn overrun_names_what_is_missing() {
        let mut reader = Reader::new(Bytes::from_static(&[0x00, 0x05, b'a']));
        assert_eq!(reader.string("missing topic"), Err(DecodeError::Malformed("missing topic")));
        let mut reader = Reader::new(Bytes::from_static(&[0x01]));
        assert_eq!(reader.u16("missing id"), Err(DecodeError::Malformed("missing id")));
        assert_eq!(reader.varint("missing len"), Ok(1));
        assert_eq!(reader.varint("missing len"), Err(DecodeError::Malformed("missing len")));
    }

    #[test]
    fn string_rejects_invalid_utf8_and_null() {
        let mut reader = Reader::new(Bytes::from_static(&[0x00, 0x01, 0xFF]));
        assert_eq!(reader.string("s"), Err(DecodeError::String(InvalidValue::InvalidUtf8)));
        let mut reader = Reader::new(Bytes::from_static(&[0x00, 0x01, 0x00]));
        assert_eq!(reader.string("s"), Err(DecodeError::String(InvalidValue::NullCharacter)));
    }

    #[test]
    fn slices_share_storage() {
        let frame = Bytes::from_static(b"\x00\x03abcxyz");
        let mut reader = Reader::new(frame.clone());
        let text = reader.string("s").unwrap_or_default();
        assert_eq!(text.as_bytes().as_ptr(), frame[2..].as_ptr());
        assert_eq!(&reader.rest()[..], b"xyz");
        assert_eq!(reader.finish("trailing"), Ok(()));
    }
}
