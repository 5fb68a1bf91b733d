//! The field names of one object level the walk knows, and what it does with each: a map built once
//! per plan and looked up for every key the walk did not expect (most keys are where the last object
//! had them, and are recognised by [`KeyOrders`](super::order::KeyOrders) without a lookup).
//!
//! A general hash map costs a hash over the name, a probe, and a byte comparison through a pointer
//! to the stored name. Field names are short, so here a name is reduced to three words (its
//! [`Print`]) that for names of up to 16 bytes hold every byte: the lookup compares those words in
//! the table itself, and only longer names are compared byte by byte.

/// A name as its length and two words. For names of up to 16 bytes, equal prints mean equal names:
/// 8 to 16 bytes are covered by their first and last eight (which overlap below 16), 4 to 7 by their
/// first and last four, 1 to 3 by their first, middle and last byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Print {
    len: usize,
    head: u64,
    tail: u64,
}

/// The longest names whose [`Print`] holds every byte.
const EXACT: usize = 16;

impl Print {
    #[inline(always)]
    fn of(name: &[u8]) -> Print {
        let len = name.len();
        let (head, tail) = match (name.first_chunk::<8>(), name.last_chunk::<8>()) {
            (Some(head), Some(tail)) => (u64::from_le_bytes(*head), u64::from_le_bytes(*tail)),
            _ => match (name.first_chunk::<4>(), name.last_chunk::<4>()) {
                (Some(head), Some(tail)) => (
                    u64::from(u32::from_le_bytes(*head))
                        | u64::from(u32::from_le_bytes(*tail)) << 32,
                    0,
                ),
                _ => match (name.first(), name.last()) {
                    (Some(&first), Some(&last)) => (
                        u64::from(first) | u64::from(name[len / 2]) << 8 | u64::from(last) << 16,
                        0,
                    ),
                    _ => (0, 0),
                },
            },
        };
        Print { len, head, tail }
    }

    /// The slot to start probing from, in a table of `mask + 1` slots.
    #[inline(always)]
    fn home(&self, mask: usize) -> usize {
        let mixed = (self.head ^ self.tail.rotate_left(29) ^ self.len as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (mixed >> 32) as usize & mask
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    print: Print,
    /// Index into `entries`; [`EMPTY`] for a free slot.
    entry: u32,
}

const EMPTY: u32 = u32::MAX;

/// Field names to values of `T`, with linear probing in a table at most half full (a missing name,
/// which is every field the catalog does not map, ends at the first free slot).
#[derive(Debug)]
pub struct Fields<T> {
    slots: Box<[Slot]>,
    entries: Vec<(Box<str>, T)>,
}

impl<T> Default for Fields<T> {
    fn default() -> Self {
        Fields {
            slots: Box::new([]),
            entries: Vec::new(),
        }
    }
}

impl<T> Fields<T> {
    /// Where `name`'s value is kept (for [`Fields::value`]).
    #[inline]
    pub fn index_of(&self, name: &str) -> Option<u32> {
        let mask = self.slots.len().checked_sub(1)?;
        let print = Print::of(name.as_bytes());
        let mut i = print.home(mask);
        loop {
            let slot = self.slots.get(i)?;
            if slot.entry == EMPTY {
                return None;
            }
            if slot.print == print {
                let (stored, _) = self.entries.get(slot.entry as usize)?;
                if name.len() <= EXACT || **stored == *name {
                    return Some(slot.entry);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// The value kept at `index` (from [`Fields::index_of`]).
    #[inline(always)]
    pub fn value(&self, index: u32) -> Option<&T> {
        self.entries.get(index as usize).map(|(_, value)| value)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.entries.iter_mut().map(|(_, value)| value)
    }

    /// The value for `name`, added as `T::default()` if the name is new (plans are built once, so
    /// the table is simply rebuilt on each addition).
    pub fn entry(&mut self, name: &str) -> &mut T
    where
        T: Default,
    {
        let at = match self.entries.iter().position(|(n, _)| **n == *name) {
            Some(at) => at,
            None => {
                self.entries.push((name.into(), T::default()));
                self.index();
                self.entries.len() - 1
            }
        };
        &mut self.entries[at].1
    }

    fn index(&mut self) {
        let size = (self.entries.len() * 2).next_power_of_two().max(4);
        let empty = Slot {
            print: Print::of(b""),
            entry: EMPTY,
        };
        let mut slots = vec![empty; size].into_boxed_slice();
        let mask = size - 1;
        for (entry, (name, _)) in self.entries.iter().enumerate() {
            let print = Print::of(name.as_bytes());
            let mut i = print.home(mask);
            while slots[i].entry != EMPTY {
                i = (i + 1) & mask;
            }
            slots[i] = Slot {
                print,
                entry: entry as u32,
            };
        }
        self.slots = slots;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a, T>(fields: &'a Fields<T>, name: &str) -> Option<&'a T> {
        fields.index_of(name).and_then(|i| fields.value(i))
    }

    #[test]
    fn names_of_every_length_are_told_apart() {
        // Names that share their ends, their middles, or a prefix, at each length class.
        let names = [
            "",
            "a",
            "b",
            "ab",
            "ba",
            "abc",
            "aXc",
            "abcd",
            "abce",
            "abcde",
            "abXde",
            "abcdefg",
            "abcXefg",
            "abcdefgh",
            "abcdefgX",
            "abcdefghi",
            "abcdXfghi",
            "abcdefghijklmnop",
            "abcdefghXjklmnop",
            "abcdefgh_ijklmnop",
            "abcdefgh-ijklmnop",
            "abcdefgh__ijklmnop",
        ];
        let mut fields = Fields::<usize>::default();
        assert_eq!(get(&fields, "a"), None, "an empty table");
        for (i, name) in names.iter().enumerate() {
            *fields.entry(name) = i;
        }
        for (i, name) in names.iter().enumerate() {
            assert_eq!(get(&fields, name), Some(&i), "{name:?}");
        }
        for missing in [
            "c",
            "abcf",
            "abcdefghijklmnoq",
            "abcdefgh.ijklmnop",
            "zzzzzzzzzzzzzzzzzzzzzz",
        ] {
            assert_eq!(get(&fields, missing), None, "{missing:?}");
        }
        *fields.entry("abc") += 100;
        assert_eq!(get(&fields, "abc"), Some(&105));
        assert_eq!(fields.entries.len(), names.len());
    }

    #[test]
    fn a_thousand_names_stay_reachable() {
        let mut fields = Fields::<usize>::default();
        for i in 0..1000 {
            *fields.entry(&format!("field_{i}")) = i;
        }
        for i in 0..1000 {
            assert_eq!(get(&fields, &format!("field_{i}")), Some(&i));
        }
        assert_eq!(get(&fields, "field_1000"), None);
    }
}
