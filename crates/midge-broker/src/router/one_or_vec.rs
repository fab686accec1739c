//! A list that holds a single element inline and only allocates from the second on.
//!
//! Most filters have exactly one subscriber (a device's own topic). Kept in a `Vec`, that one
//! subscriber costs an allocation of its own and, on every match, a cache line of its own after
//! the line holding the list. Inline, it sits in the same allocation as its filter's other
//! fields. The enum is as large as the larger of a `Vec` and the element (the compiler keeps the
//! tag in the `Vec`'s capacity field): no larger than a `Vec` for elements of up to 16 bytes.

/// A list of `T`, inline while it has one element.
pub(crate) enum OneOrVec<T> {
    /// Exactly one element.
    One(T),
    /// Any other number of elements, zero included (without allocating when empty).
    Many(Vec<T>),
}

impl<T> Default for OneOrVec<T> {
    fn default() -> Self {
        OneOrVec::Many(Vec::new())
    }
}

impl<T> OneOrVec<T> {
    /// The elements.
    #[inline]
    pub(crate) fn as_slice(&self) -> &[T] {
        match self {
            OneOrVec::One(one) => std::slice::from_ref(one),
            OneOrVec::Many(many) => many,
        }
    }

    /// The elements, mutably.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        match self {
            OneOrVec::One(one) => std::slice::from_mut(one),
            OneOrVec::Many(many) => many,
        }
    }

    /// How many elements there are.
    pub(crate) fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether there is no element.
    pub(crate) fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    /// Appends an element.
    pub(crate) fn push(&mut self, item: T) {
        match std::mem::take(self) {
            OneOrVec::Many(many) if many.is_empty() => *self = OneOrVec::One(item),
            OneOrVec::One(first) => {
                // Exactly two: a second subscriber rarely brings a third.
                let mut many = Vec::with_capacity(2);
                many.extend([first, item]);
                *self = OneOrVec::Many(many);
            }
            OneOrVec::Many(mut many) => {
                many.push(item);
                *self = OneOrVec::Many(many);
            }
        }
    }

    /// Removes the element at `at`, moving the last one into its place. Panics if out of bounds,
    /// like `Vec::swap_remove`.
    pub(crate) fn swap_remove(&mut self, at: usize) -> T {
        let len = self.len();
        assert!(at < len, "swap_remove index (is {at}) should be < len (is {len})");
        match std::mem::take(self) {
            OneOrVec::One(one) => one,
            OneOrVec::Many(mut many) => {
                let removed = many.swap_remove(at);
                if many.len() == 1 {
                    // Back inline, freeing the allocation.
                    *self = OneOrVec::One(many.remove(0));
                } else {
                    // Give memory back after a large list shrank, so churn on a popular filter
                    // does not keep its peak allocation forever.
                    if many.capacity() > 8 && many.len() * 4 < many.capacity() {
                        many.shrink_to(many.len() * 2);
                    }
                    *self = OneOrVec::Many(many);
                }
                removed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goes_inline_and_back() {
        let mut list = OneOrVec::default();
        assert!(list.is_empty());
        list.push(1);
        assert!(matches!(list, OneOrVec::One(1)));
        list.push(2);
        list.push(3);
        assert_eq!(list.as_slice(), [1, 2, 3]);
        assert_eq!(list.swap_remove(0), 1);
        assert_eq!(list.as_slice(), [3, 2]);
        assert_eq!(list.swap_remove(1), 2);
        assert!(matches!(list, OneOrVec::One(3)), "one element left goes back inline");
        list.as_mut_slice()[0] = 4;
        assert_eq!(list.swap_remove(0), 4);
        assert!(list.is_empty());
        assert_eq!(list.len(), 0);
    }

    #[test]
    fn shrinks_after_a_large_list_empties() {
        let mut list = OneOrVec::default();
        for n in 0..100 {
            list.push(n);
        }
        while list.len() > 5 {
            list.swap_remove(0);
        }
        let OneOrVec::Many(many) = &list else { panic!("five elements are not inline") };
        assert!(many.capacity() <= 20, "capacity {} kept after shrinking to 5", many.capacity());
    }

    #[test]
    fn no_larger_than_a_vec_for_small_elements() {
        assert_eq!(std::mem::size_of::<OneOrVec<(u64, u8)>>(), std::mem::size_of::<Vec<(u64, u8)>>());
    }

    #[test]
    #[should_panic(expected = "swap_remove index")]
    fn removing_past_the_end_panics() {
        let mut list = OneOrVec::default();
        list.push(1);
        list.swap_remove(1);
    }
}
