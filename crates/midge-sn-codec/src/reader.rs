//! A cursor over one message's fields with typed "missing field" errors.
//!
//! Reads never panic: each checks the remaining length first and fails with
//! [`DecodeError::MissingField`] naming the field, because a field that runs past the end of
//! the message is a malformed message.

use crate::error::DecodeError;
use crate::types::MsgType;

/// The unread rest of a message's variable part.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    /// Octets not read yet; reads split from the front.
    rest: &'a [u8],
    /// The message being read, for errors.
    msg_type: MsgType,
}

impl<'a> Reader<'a> {
    /// A reader over the variable part of a `msg_type` message.
    pub(crate) fn new(rest: &'a [u8], msg_type: MsgType) -> Self {
        Self { rest, msg_type }
    }

    /// The message being read.
    pub(crate) fn msg_type(&self) -> MsgType {
        self.msg_type
    }

    /// Whether everything has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// One octet.
    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        self.array(field).map(u8::from_be_bytes)
    }

    /// Two octets, most significant first (5.1: "all numbers are big-endian").
    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        self.array(field).map(u16::from_be_bytes)
    }

    /// The next `N` octets, as an array.
    pub(crate) fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let missing = DecodeError::MissingField { msg_type: self.msg_type, field };
        // `take` returns exactly N octets or fails, so the conversion cannot fail either.
        self.take(N, field)?.try_into().map_err(|_| missing)
    }

    /// The next `len` octets.
    pub(crate) fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.rest.len() < len {
            return Err(DecodeError::MissingField { msg_type: self.msg_type, field });
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    /// Everything not read yet: a field that runs to the end of the message.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// Fails if octets are left: a message whose fields have fixed lengths ends after them.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes { msg_type: self.msg_type, extra: self.rest.len() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_big_endian_and_names_what_is_missing() {
        let mut reader = Reader::new(&[7, 0x01, 0x02, 0xAA], MsgType::RegAck);
        assert_eq!(reader.u8("GwId"), Ok(7));
        assert_eq!(reader.u16("MsgId"), Ok(0x0102));
        assert_eq!(
            reader.u16("TopicId"),
            Err(DecodeError::MissingField { msg_type: MsgType::RegAck, field: "TopicId" })
        );
        assert_eq!(reader.finish(), Err(DecodeError::TrailingBytes { msg_type: MsgType::RegAck, extra: 1 }));
        assert_eq!(reader.rest(), &[0xAA]);
        assert!(reader.is_empty());
        assert_eq!(reader.finish(), Ok(()));
    }
}
