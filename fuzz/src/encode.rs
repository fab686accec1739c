//! The inverse of `arbitrary` 1.x for the types the targets' inputs are made of: the bytes from
//! which `Arbitrary::arbitrary_take_rest` builds a given value. Seeds are written with it, so a
//! checked-in seed is a readable list of operations in `tests/seeds.rs`, not opaque bytes.
//!
//! The format, as `arbitrary` 1.5 reads it: integers little-endian, a bool as one byte (its low
//! bit), an `Option` as a bool then the value, a collection as each element after a "more" bool
//! and a final false one, an enum as a `u32` whose high bits pick the variant (`(tag * count) >>
//! 32`) then its fields, a struct or tuple as its fields in order. A round trip through
//! `arbitrary` (in `tests/seeds.rs`) keeps this honest.

/// A value that can be written as the bytes `arbitrary` builds it from.
pub trait Encode {
    /// Appends the value's bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// The value's bytes.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Writes the tag that makes `arbitrary` pick variant `index` of an enum of `count` variants.
pub fn variant(out: &mut Vec<u8>, index: u32, count: u32) {
    let tag = ((u64::from(index) << 32).div_ceil(u64::from(count))) as u32;
    out.extend_from_slice(&tag.to_le_bytes());
}

impl Encode for u8 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
}

impl Encode for u16 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Encode for u32 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Encode for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.is_some().encode(out);
        if let Some(value) = self {
            value.encode(out);
        }
    }
}

impl<T: Encode> Encode for Vec<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        for element in self {
            true.encode(out);
            element.encode(out);
        }
        false.encode(out);
    }
}

impl<T: Encode + ?Sized> Encode for &T {
    fn encode(&self, out: &mut Vec<u8>) {
        (**self).encode(out);
    }
}

impl<A: Encode, B: Encode> Encode for (A, B) {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
        self.1.encode(out);
    }
}

impl<A: Encode, B: Encode, C: Encode> Encode for (A, B, C) {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
        self.1.encode(out);
        self.2.encode(out);
    }
}
