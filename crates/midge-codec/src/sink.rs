//! Where encoders write: the output buffer, or a [`Counter`] that measures first.
//!
//! Each packet has one encoding function generic over [`Sink`]. Running it with a `Counter`
//! yields the exact length (and any reason the packet cannot be encoded) before a byte is
//! written; running it with the buffer writes exactly that many bytes. So `encoded_len` and
//! `encode_packet` cannot disagree, and the buffer is reserved once.

use bytes::{BufMut, BytesMut};

use crate::varint;

/// A destination for encoded fields.
pub(crate) trait Sink {
    /// One byte.
    fn u8(&mut self, value: u8);
    /// A Two Byte Integer.
    fn u16(&mut self, value: u16);
    /// A Four Byte Integer.
    fn u32(&mut self, value: u32);
    /// A Variable Byte Integer. Assumes `value <= varint::MAX`; callers check it (the
    /// remaining length in `encode`, Subscription Identifiers where they are written).
    fn varint(&mut self, value: usize);
    /// Raw bytes.
    fn bytes(&mut self, value: &[u8]);
    /// Records that the packet cannot be encoded. A `Counter` keeps the first reason; the
    /// buffer ignores it, because it is only written to after a `Counter` pass found none.
    fn reject(&mut self, why: &'static str);

    /// Binary Data or a UTF-8 string: two byte length, then the bytes (sections 1.5.4, 1.5.6).
    /// Longer than 65,535 bytes cannot be expressed, so it is rejected and nothing is written.
    fn binary(&mut self, value: &[u8]) {
        match u16::try_from(value.len()) {
            Ok(len) => {
                self.u16(len);
                self.bytes(value);
            }
            Err(_) => self.reject("binary data or string longer than 65,535 bytes"),
        }
    }
}

/// Measures what a `Sink` would receive.
#[derive(Debug, Default)]
pub(crate) struct Counter {
    /// Bytes that would be written.
    pub(crate) len: usize,
    /// The first reason the packet cannot be encoded, if any.
    pub(crate) rejected: Option<&'static str>,
}

impl Counter {
    /// Runs `write` against a fresh counter.
    pub(crate) fn measure(write: impl FnOnce(&mut Self)) -> Self {
        let mut counter = Self::default();
        write(&mut counter);
        counter
    }
}

impl Sink for Counter {
    fn u8(&mut self, _: u8) {
        self.len += 1;
    }

    fn u16(&mut self, _: u16) {
        self.len += 2;
    }

    fn u32(&mut self, _: u32) {
        self.len += 4;
    }

    fn varint(&mut self, value: usize) {
        self.len += varint::len(value);
    }

    fn bytes(&mut self, value: &[u8]) {
        self.len += value.len();
    }

    fn reject(&mut self, why: &'static str) {
        self.rejected.get_or_insert(why);
    }
}

impl Sink for BytesMut {
    fn u8(&mut self, value: u8) {
        self.put_u8(value);
    }

    fn u16(&mut self, value: u16) {
        self.put_u16(value);
    }

    fn u32(&mut self, value: u32) {
        self.put_u32(value);
    }

    fn varint(&mut self, value: usize) {
        varint::put(self, value);
    }

    fn bytes(&mut self, value: &[u8]) {
        self.put_slice(value);
    }

    fn reject(&mut self, _: &'static str) {}
}
