//! What the walk remembers of the keys of each object level: Stripe writes an object's keys in the
//! same order every time, so the key at a position is nearly always the one that was there in the
//! last object. Checking that costs a few word comparisons; reading a key costs a search for the end
//! of its string and a lookup in the level's [`Fields`](super::fields::Fields).

use super::scan::{JsonError, Scanner, WrittenKey};

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
            } else if position == keys.len() {
                keys.push(known);
            }
        }
        Ok(found)
    }
}
