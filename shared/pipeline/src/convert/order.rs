//! What the walk remembers of the keys of each object level: Stripe writes an object's keys in the
//! same order every time, so the key at a position is nearly always the one that was there in the
//! last object. Checking that costs a few word comparisons; reading a key costs a search for the end
//! of its string and a lookup in the level's [`Fields`](super::fields::Fields).

use super::scan::{JsonError, Scanner, WrittenKey};

/// Keys remembered per level at most: Stripe's objects have dozens; an object with thousands of keys
/// at one level is walked the general way past this many, instead of being kept.
const MAX_KEYS: usize = 512;

/// A key met at one position of a level, and what it leads to there.
#[derive(Debug)]
struct Known {
    key: WrittenKey,
    /// The key's index in the level's fields; `None` for a key the catalog does not map.
    found: Option<u32>,
}

/// Per object level of a plan (by its number), the keys of the last object walked there, in order.
#[derive(Debug, Default)]
pub struct KeyOrders {
    levels: Vec<Vec<Known>>,
}

impl KeyOrders {
    /// Reads the key of member `position` of an object of level `level`, and returns its index in
    /// the level's fields. `lookup` (the fields' `index_of`) runs only when the key is not the one
    /// met at that position last time.
    #[inline(always)]
    pub fn next_key(
        &mut self,
        s: &mut Scanner<'_>,
        level: usize,
        position: usize,
        lookup: impl FnOnce(&str) -> Option<u32>,
    ) -> Result<Option<u32>, JsonError> {
        if let Some(known) = self.levels.get(level).and_then(|keys| keys.get(position)) {
            if s.expect_key(&known.key)? {
                return Ok(known.found);
            }
        }
        self.learn(s, level, position, lookup)
    }

    /// Reads the key the general way, and remembers it at its position (first objects, and objects
    /// whose keys differ from the last one's).
    #[inline(never)]
    fn learn(
        &mut self,
        s: &mut Scanner<'_>,
        level: usize,
        position: usize,
        lookup: impl FnOnce(&str) -> Option<u32>,
    ) -> Result<Option<u32>, JsonError> {
        let key = s.key()?;
        let found = lookup(&key);
        if let Some(written) = WrittenKey::new(&key) {
            if self.levels.len() <= level {
                self.levels.resize_with(level + 1, Vec::new);
            }
            let keys = &mut self.levels[level];
            let known = Known {
                key: written,
                found,
            };
            // A key after one that could not be remembered (it had escapes) is not remembered
            // either: positions past the end are not filled.
            if let Some(slot) = keys.get_mut(position) {
                *slot = known;
            } else if position == keys.len() && position < MAX_KEYS {
                keys.push(known);
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the keys of `text`'s object (skipping their values) through `orders`.
    fn read(orders: &mut KeyOrders, text: &str) -> Vec<Option<u32>> {
        let mut s = Scanner::from_str(text);
        let mut found = Vec::new();
        assert!(s.object().unwrap());
        loop {
            let lookup = |key: &str| key.strip_prefix('k').and_then(|n| n.parse().ok());
            found.push(orders.next_key(&mut s, 0, found.len(), lookup).unwrap());
            s.skip().unwrap();
            if !s.more_members().unwrap() {
                return found;
            }
        }
    }

    #[test]
    fn keys_are_expected_where_they_were_and_relearned_where_they_moved() {
        let mut orders = KeyOrders::default();
        assert_eq!(
            read(&mut orders, r#"{"k1":1,"x":2,"k3":3}"#),
            [Some(1), None, Some(3)]
        );
        assert_eq!(
            read(&mut orders, r#"{"k1":1,"x":2,"k3":3}"#),
            [Some(1), None, Some(3)]
        );
        // Moved, missing, new and escaped keys.
        assert_eq!(
            read(&mut orders, r#"{"k3":1,"k\u0031":2}"#),
            [Some(3), Some(1)]
        );
        assert_eq!(
            read(&mut orders, r#"{"k3":1,"k1":2,"k9":0}"#),
            [Some(3), Some(1), Some(9)]
        );
        assert_eq!(orders.levels[0].len(), 3);
    }

    #[test]
    fn objects_with_thousands_of_keys_are_remembered_in_part() {
        let text = format!(
            "{{{}}}",
            (0..600)
                .map(|i| format!("\"k{i}\":{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut orders = KeyOrders::default();
        let all: Vec<Option<u32>> = (0..600).map(Some).collect();
        assert_eq!(read(&mut orders, &text), all);
        assert_eq!(read(&mut orders, &text), all);
        assert_eq!(orders.levels[0].len(), MAX_KEYS);
    }
}
