//! The Length field of the message header (5.2.1).
//!
//! One octet when the whole message is at most 255 octets long; otherwise `0x01` followed by
//! the length in two octets, most significant first. The length counts the whole message, the
//! Length field itself included, so a message needs the 3-octet form from 256 octets on and
//! can be at most 65,535 octets long. The specification lets a sender use the 3-octet form for
//! a shorter message ("may use the shorter 1-octet format"), so the decoder accepts it; the
//! encoder always picks the shortest form.

use crate::error::DecodeError;

/// The first octet of the 3-octet form.
pub(crate) const LONG_FORM: u8 = 0x01;

/// The longest message the 1-octet form can announce.
pub(crate) const MAX_SHORT_LEN: usize = 0xFF;

/// The longest message the 3-octet form can announce.
pub const MAX_MESSAGE_LEN: usize = 0xFFFF;

/// Reads the Length field at the start of `datagram`: the length it announces, and its own
/// length (1 or 3).
pub(crate) fn read(datagram: &[u8]) -> Result<(usize, usize), DecodeError> {
    match datagram {
        [] => Err(DecodeError::TooShort { len: 0 }),
        [LONG_FORM, high, low, ..] => Ok((usize::from(u16::from_be_bytes([*high, *low])), 3)),
        [LONG_FORM, ..] => Err(DecodeError::TooShort { len: datagram.len() }),
        [len, ..] => Ok((usize::from(*len), 1)),
    }
}

/// The length of a whole message whose MsgType and variable part take `body` octets, with the
/// shortest Length field that can say it.
pub(crate) fn total_len(body: usize) -> usize {
    let short = body + 1;
    if short <= MAX_SHORT_LEN {
        short
    } else {
        body + 3
    }
}

/// The Length field for a message of `total` octets (as [`total_len`] computed it), in the
/// shortest form. `total` must be at most [`MAX_MESSAGE_LEN`]; the encoder checks it first.
pub(crate) fn write(total: usize, out: &mut impl bytes::BufMut) {
    match u8::try_from(total) {
        Ok(short) if total <= MAX_SHORT_LEN => out.put_u8(short),
        _ => {
            out.put_u8(LONG_FORM);
            // Truncation cannot happen: the encoder refused anything over MAX_MESSAGE_LEN.
            out.put_u16(total as u16);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_forms() {
        assert_eq!(read(&[0x07, 0x0C]), Ok((7, 1)));
        assert_eq!(read(&[0x01, 0x01, 0x04, 0x0C]), Ok((260, 3)));
        assert_eq!(read(&[0x01, 0x00, 0x05]), Ok((5, 3)));
    }

    #[test]
    fn an_incomplete_field_is_too_short() {
        assert_eq!(read(&[]), Err(DecodeError::TooShort { len: 0 }));
        assert_eq!(read(&[0x01]), Err(DecodeError::TooShort { len: 1 }));
        assert_eq!(read(&[0x01, 0x01]), Err(DecodeError::TooShort { len: 2 }));
    }

    #[test]
    fn the_short_form_is_used_up_to_255_octets() {
        assert_eq!(total_len(1), 2);
        assert_eq!(total_len(254), 255);
        assert_eq!(total_len(255), 258);
        for (total, bytes) in [(2, vec![0x02]), (255, vec![0xFF]), (258, vec![0x01, 0x01, 0x02])] {
            let mut out = Vec::new();
            write(total, &mut out);
            assert_eq!(out, bytes);
        }
    }
}
