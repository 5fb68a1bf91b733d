//! A JSON reader made for what conversion needs: it walks the text once, hands out strings borrowed
//! from it (copied only when they hold escapes), skips what nobody asked for without building it, and
//! hands out JSON columns as compact text (borrowed when the page is compact, stripped of whitespace
//! when it is pretty-printed). The text is checked to be UTF-8 once, up front; every
//! position the reader cuts at is an ASCII byte, so each piece is a `&str` of the page without further
//! checks.
//!
//! Structure that is read is checked as strictly as JSON demands; a value that is skipped is only
//! checked for balanced brackets and terminated strings, which is what finding its end takes.

use super::span;
use std::borrow::Cow;
use std::fmt;

/// Text that is not the JSON conversion expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    what: Cow<'static, str>,
    at: usize,
}

impl JsonError {
    pub fn new(what: impl Into<Cow<'static, str>>, at: usize) -> JsonError {
        JsonError {
            what: what.into(),
            at,
        }
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

impl std::error::Error for JsonError {}

/// What the next value is, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

/// A number as written: an integer that fits 64 bits, or any other number as a float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// Non-negative integers.
    U64(u64),
    /// Negative integers.
    I64(i64),
    F64(f64),
}

/// A position in a JSON text.
pub struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    pub fn new(json: &'a [u8]) -> Result<Scanner<'a>, JsonError> {
        // The SIMD check is several times faster on valid text; only a failure takes the standard
        // one, for the position of the bad byte.
        let text = match simdutf8::basic::from_utf8(json) {
            Ok(text) => text,
            Err(_) => std::str::from_utf8(json)
                .map_err(|e| JsonError::new("invalid UTF-8", e.valid_up_to()))?,
        };
        Ok(Scanner::from_str(text))
    }

    pub fn from_str(text: &'a str) -> Scanner<'a> {
        Scanner {
            text,
            bytes: text.as_bytes(),
            at: 0,
        }
    }

    /// Where the reader is (to read one value again: see [`Scanner::rewind`]).
    pub fn position(&self) -> usize {
        self.at
    }

    pub fn rewind(&mut self, at: usize) {
        self.at = at;
    }

    fn error<T>(&self, what: &'static str) -> Result<T, JsonError> {
        Err(JsonError::new(what, self.at))
    }

    /// Passes whitespace. Compact pages have none between tokens, so one byte decides most calls
    /// (and the run itself is out of line, to keep this test small where it is inlined).
    #[inline]
    fn ws(&mut self) {
        if self.bytes.get(self.at).is_some_and(|&b| b <= b' ') {
            self.at = whitespace_end(self.bytes, self.at);
        }
    }

    /// The kind of the next value (whitespace before it is passed).
    pub fn kind(&mut self) -> Result<Kind, JsonError> {
        self.ws();
        Ok(match self.bytes.get(self.at) {
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            Some(b'"') => Kind::String,
            Some(b'-' | b'0'..=b'9') => Kind::Number,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'n') => Kind::Null,
            Some(_) => return self.error("expected a value"),
            None => return self.error("unexpected end of the text"),
        })
    }

    /// Only whitespace is left.
    pub fn end(&mut self) -> Result<(), JsonError> {
        self.ws();
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            self.error("text after the value")
        }
    }

    fn literal(&mut self, word: &'static str) -> Result<(), JsonError> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(())
        } else {
            self.error("expected true, false or null")
        }
    }

    pub fn null(&mut self) -> Result<(), JsonError> {
        self.ws();
        self.literal("null")
    }

    pub fn bool(&mut self) -> Result<bool, JsonError> {
        self.ws();
        if self.bytes.get(self.at) == Some(&b't') {
            self.literal("true").map(|()| true)
        } else {
            self.literal("false").map(|()| false)
        }
    }

    /// The text of the next number, checked against JSON's grammar.
    fn number_text(&mut self) -> Result<(&'a str, bool), JsonError> {
        self.ws();
        let start = self.at;
        let digits = |s: &mut Self| {
            let from = s.at;
            while let Some(b'0'..=b'9') = s.bytes.get(s.at) {
                s.at += 1;
            }
            s.at > from
        };
        if self.bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        if !digits(self) {
            return self.error("expected a number");
        }
        let mut float = false;
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            float = true;
            if !digits(self) {
                return self.error("expected digits after the decimal point");
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.at) {
            self.at += 1;
            float = true;
            if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                self.at += 1;
            }
            if !digits(self) {
                return self.error("expected digits in the exponent");
            }
        }
        Ok((&self.text[start..self.at], float))
    }

    /// The next number as written.
    pub fn raw_number(&mut self) -> Result<&'a str, JsonError> {
        self.number_text().map(|(text, _)| text)
    }

    pub fn number(&mut self) -> Result<Number, JsonError> {
        let (text, float) = self.number_text()?;
        if !float {
            if let Some(digits) = text.strip_prefix('-') {
                if let Ok(n) = digits.parse::<u64>() {
                    if let Some(i) = 0i64.checked_sub_unsigned(n) {
                        return Ok(Number::I64(i));
                    }
                }
            } else if let Ok(n) = text.parse::<u64>() {
                return Ok(Number::U64(n));
            }
        }
        text.parse::<f64>()
            .map(Number::F64)
            .or_else(|_| self.error("a number out of range"))
    }

    /// The next string, borrowed from the text unless it holds escapes.
    #[inline(always)]
    pub fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        self.ws();
        if self.bytes.get(self.at) != Some(&b'"') {
            return self.error("expected a string");
        }
        self.at += 1;
        let start = self.at;
        self.at = string_stop(self.bytes, self.at);
        match self.bytes.get(self.at) {
            Some(b'"') => {
                let s = &self.text[start..self.at];
                self.at += 1;
                Ok(Cow::Borrowed(s))
            }
            _ => self.escaped_string(start),
        }
    }

    /// The rest of a string that is not a plain run (`start` is its first byte; the reader is at the
    /// first byte that ended the run): out of [`Scanner::string`]'s way, which stays small enough to
    /// inline for the common case.
    #[cold]
    #[inline(never)]
    fn escaped_string(&mut self, start: usize) -> Result<Cow<'a, str>, JsonError> {
        match self.bytes.get(self.at) {
            Some(b'\\') => {}
            Some(_) => return self.error("a control character in a string"),
            None => return self.error("an unterminated string"),
        }
        let mut out = String::from(&self.text[start..self.at]);
        loop {
            let run = self.at;
            self.at = string_stop(self.bytes, self.at);
            out.push_str(&self.text[run..self.at]);
            match self.bytes.get(self.at) {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.at += 1;
                    self.escape(&mut out)?;
                }
                Some(_) => return self.error("a control character in a string"),
                None => return self.error("an unterminated string"),
            }
        }
    }

    /// One escape, after its backslash.
    fn escape(&mut self, out: &mut String) -> Result<(), JsonError> {
        let Some(&c) = self.bytes.get(self.at) else {
            return self.error("an unterminated string");
        };
        self.at += 1;
        let simple = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&first) {
                    // A high surrogate: its low half must follow as another escape.
                    if !self.bytes[self.at..].starts_with(b"\\u") {
                        return self.error("a lone surrogate in a string");
                    }
                    self.at += 2;
                    let low = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return self.error("a lone surrogate in a string");
                    }
                    0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00)
                } else {
                    first
                };
                match char::from_u32(code) {
                    Some(ch) => ch,
                    None => return self.error("a lone surrogate in a string"),
                }
            }
            _ => return self.error("an invalid escape in a string"),
        };
        out.push(simple);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let Some(hex) = self.text.get(self.at..self.at + 4) else {
            return self.error("a short \\u escape");
        };
        let code = u32::from_str_radix(hex, 16).or_else(|_| self.error("an invalid \\u escape"))?;
        self.at += 4;
        Ok(code)
    }

    /// Enters an object; `false` when it is empty (and already left).
    pub fn object(&mut self) -> Result<bool, JsonError> {
        self.open(b'{', b'}', "expected an object")
    }

    /// Enters an array; `false` when it is empty (and already left).
    pub fn array(&mut self) -> Result<bool, JsonError> {
        self.open(b'[', b']', "expected an array")
    }

    fn open(&mut self, open: u8, close: u8, what: &'static str) -> Result<bool, JsonError> {
        self.ws();
        if self.bytes.get(self.at) != Some(&open) {
            return self.error(what);
        }
        self.at += 1;
        self.ws();
        if self.bytes.get(self.at) == Some(&close) {
            self.at += 1;
            return Ok(false);
        }
        Ok(true)
    }

    /// After a member's value: `true` when another member follows (its key is next), `false` at the
    /// object's end (which is left).
    pub fn more_members(&mut self) -> Result<bool, JsonError> {
        self.separator(b'}', "expected , or } in an object")
    }

    /// After an element: `true` when another element follows, `false` at the array's end.
    pub fn more_elements(&mut self) -> Result<bool, JsonError> {
        self.separator(b']', "expected , or ] in an array")
    }

    fn separator(&mut self, close: u8, what: &'static str) -> Result<bool, JsonError> {
        self.ws();
        match self.bytes.get(self.at) {
            Some(b',') => {
                self.at += 1;
                Ok(true)
            }
            Some(&c) if c == close => {
                self.at += 1;
                Ok(false)
            }
            Some(_) => self.error(what),
            None => self.error("unexpected end of the text"),
        }
    }

    /// A member's key and the colon after it.
    #[inline(always)]
    pub fn key(&mut self) -> Result<Cow<'a, str>, JsonError> {
        let key = self.string()?;
        self.colon()?;
        Ok(key)
    }

    /// The colon between a key and its value.
    #[inline(always)]
    fn colon(&mut self) -> Result<(), JsonError> {
        self.ws();
        if self.bytes.get(self.at) != Some(&b':') {
            return self.error("expected : after a key");
        }
        self.at += 1;
        // Pretty-printed pages write one space after the colon: passed here, it costs one compare
        // instead of a whitespace run.
        if self.bytes.get(self.at) == Some(&b' ') {
            self.at += 1;
        }
        Ok(())
    }

    /// Whether the next member's key is `key`: if it is, the key and the colon after it are passed
    /// (as [`Scanner::key`] would); if not, nothing is. The key's bytes are compared as a few words,
    /// without searching for the end of a string: `key` has no escapes, so the text holding its
    /// bytes between two quotes holds exactly that key.
    #[inline(always)]
    pub fn expect_key(&mut self, key: &WrittenKey) -> Result<bool, JsonError> {
        self.ws();
        let at = self.at;
        let n = key.len;
        let Some(first) = self
            .bytes
            .get(at..)
            .and_then(|rest| rest.first_chunk::<8>())
        else {
            return Ok(false);
        };
        let head = u64::from_le_bytes(*first);
        let same = if n < 8 {
            head & ((1 << (8 * n)) - 1) == key.head
        } else {
            head == key.head
                && self
                    .bytes
                    .get(at + n - 8..)
                    .and_then(|rest| rest.first_chunk::<8>())
                    .is_some_and(|last| u64::from_le_bytes(*last) == key.tail)
                && key.middle_matches(self.bytes, at)
        };
        if !same {
            return Ok(false);
        }
        self.at = at + n;
        self.colon()?;
        Ok(true)
    }

    /// Calls `member` for each member of the object the reader is at, with the member's key; `member`
    /// reads (or skips) the value. Anything but an object is passed over without a call.
    pub fn members(
        &mut self,
        mut member: impl FnMut(&mut Self, Cow<'a, str>) -> Result<(), JsonError>,
    ) -> Result<(), JsonError> {
        if self.kind()? != Kind::Object {
            return self.skip();
        }
        if !self.object()? {
            return Ok(());
        }
        loop {
            let key = self.key()?;
            member(self, key)?;
            if !self.more_members()? {
                return Ok(());
            }
        }
    }

    /// Passes over the next value.
    pub fn skip(&mut self) -> Result<(), JsonError> {
        self.value_span().map(|_| ())
    }

    /// Passes over the next value and returns where it started and ended, and whether whitespace
    /// separates its tokens.
    fn value_span(&mut self) -> Result<Span, JsonError> {
        let kind = self.kind()?;
        let start = self.at;
        let mut spaced = false;
        match kind {
            Kind::String => self.pass_string()?,
            Kind::Number => {
                self.number_text()?;
            }
            Kind::Bool => {
                self.bool()?;
            }
            Kind::Null => self.null()?,
            Kind::Object | Kind::Array => match span::nested_end(self.bytes, self.at) {
                Some((end, spaced_tokens)) => {
                    self.at = end;
                    spaced = spaced_tokens;
                }
                None => {
                    self.at = self.bytes.len();
                    return self.error("unexpected end of the text");
                }
            },
        }
        Ok(Span {
            start,
            end: self.at,
            spaced,
        })
    }

    /// Passes a string (the reader is at its opening quote).
    fn pass_string(&mut self) -> Result<(), JsonError> {
        match string_end(self.bytes, self.at) {
            Some(end) => {
                self.at = end;
                Ok(())
            }
            None => {
                self.at = self.bytes.len();
                self.error("an unterminated string")
            }
        }
    }

    /// The next value as compact JSON: its text without the whitespace between tokens (strings and
    /// numbers exactly as written). A value that is compact already (any page that is not
    /// pretty-printed) is borrowed from the page, not copied.
    pub fn compact(&mut self) -> Result<Cow<'a, str>, JsonError> {
        let Span { start, end, spaced } = self.value_span()?;
        if !spaced {
            return Ok(Cow::Borrowed(&self.text[start..end]));
        }
        // The value was passed already, so its strings are terminated and it ends with a bracket:
        // neither a string nor whitespace runs past `end`.
        let value = &self.bytes[..end];
        let mut out = String::with_capacity(end - start);
        let mut run = start;
        let mut i = start;
        while i < end {
            match value[i] {
                b'"' => i = string_end(value, i).unwrap_or(end),
                b' ' | b'\n' | b'\r' | b'\t' => {
                    out.push_str(&self.text[run..i]);
                    i = whitespace_end(value, i);
                    run = i;
                }
                _ => i += 1,
            }
        }
        out.push_str(&self.text[run..end]);
        Ok(Cow::Owned(out))
    }
}

/// A key as JSON text writes it, `"name"`, ready for [`Scanner::expect_key`]: its first and last
/// eight bytes as words, and the bytes between them when there are any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenKey {
    /// Bytes of `"name"`, quotes included.
    len: usize,
    /// The first eight bytes (all of them, zero-padded, when there are fewer).
    head: u64,
    /// The last eight bytes (when there are at least eight).
    tail: u64,
    /// The bytes between the first and last eight (when there are more than sixteen), as words
    /// at the offsets [`WrittenKey::middle_word`] gives.
    middle: Box<[u64]>,
}

impl WrittenKey {
    /// `None` when `name` would need an escape in JSON: such a key is read the general way.
    pub fn new(name: &str) -> Option<WrittenKey> {
        if name.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
            return None;
        }
        let quoted = [&b"\""[..], name.as_bytes(), &b"\""[..]].concat();
        let len = quoted.len();
        let mut head = [0; 8];
        let first = len.min(8);
        head[..first].copy_from_slice(&quoted[..first]);
        let tail = quoted
            .last_chunk::<8>()
            .map_or(0, |last| u64::from_le_bytes(*last));
        let middle = (0..len.saturating_sub(16).div_ceil(8))
            .filter_map(|k| quoted[Self::middle_word(k, len)..].first_chunk::<8>())
            .map(|word| u64::from_le_bytes(*word))
            .collect();
        Some(WrittenKey {
            len,
            head: u64::from_le_bytes(head),
            tail,
            middle,
        })
    }

    /// Whether the middle words of this key are those of the text at `at` (a plain loop: as an
    /// iterator chain it was not inlined, and cost more than the comparison).
    #[inline(always)]
    fn middle_matches(&self, bytes: &[u8], at: usize) -> bool {
        let mut k = 0;
        while let Some(&word) = self.middle.get(k) {
            let written = bytes
                .get(at + Self::middle_word(k, self.len)..)
                .and_then(|rest| rest.first_chunk::<8>());
            if written.is_none_or(|w| u64::from_le_bytes(*w) != word) {
                return false;
            }
            k += 1;
        }
        true
    }

    /// Where middle word `k` of a key of `len` bytes starts: every eight bytes from the eighth,
    /// the last one moved back to end where the last eight bytes start (it may overlap the one
    /// before; the words cover the middle, and only the middle is left to compare).
    #[inline(always)]
    fn middle_word(k: usize, len: usize) -> usize {
        (8 + 8 * k).min(len - 16)
    }
}

/// Where a value's text starts and ends in the page.
struct Span {
    start: usize,
    end: usize,
    /// Whitespace separates some of its tokens (the page is pretty-printed).
    spaced: bool,
}

/// Where the string whose opening quote is at `i` ends (just after its closing quote); `None` when
/// it is not terminated.
#[inline(always)]
fn string_end(bytes: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        i = string_stop(bytes, i);
        match bytes.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// Where the whitespace starting at `i` ends. Pretty-printed pages (Stripe's API writes them) put a
/// newline and an indent of two spaces per level before every member and element: the spaces are
/// passed eight at a time.
#[inline(never)]
fn whitespace_end(bytes: &[u8], mut i: usize) -> usize {
    const SPACES: u64 = 0x2020_2020_2020_2020;
    while let Some(b' ' | b'\n' | b'\r' | b'\t') = bytes.get(i) {
        i += 1;
        while let Some(chunk) = bytes.get(i..).and_then(|rest| rest.first_chunk::<8>()) {
            let other = u64::from_le_bytes(*chunk) ^ SPACES;
            if other != 0 {
                // The first byte that is not a space (little-endian: the lowest nonzero byte).
                i += (other.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
    }
    i
}

/// Where a string's plain run starting at `i` ends: the first `"`, `\` or control character, or the
/// end of the text. Most strings of a page (keys, ids, codes) are 5 to 30 bytes long, so this runs
/// once per string and its first block usually holds the end: x86-64 tests sixteen bytes at a time
/// with SSE2 (part of every x86-64 processor), other targets eight with word arithmetic.
fn string_stop(bytes: &[u8], i: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    let i = {
        let i = sse2::string_stop(bytes, i);
        // With sixteen bytes or more left, the block scan stopped at a special byte.
        if bytes.len().saturating_sub(i) >= 16 {
            return i;
        }
        i
    };
    string_stop_words(bytes, i)
}

/// [`string_stop`] eight bytes at a time (the classic "has a zero byte" and "has a byte less than"
/// word tricks: the lowest flagged byte is always a true one), then byte by byte for the last few.
fn string_stop_words(bytes: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    while let Some(chunk) = bytes.get(i..).and_then(|rest| rest.first_chunk::<8>()) {
        let w = u64::from_le_bytes(*chunk);
        let found = zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = bytes.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };

    /// Sixteen bytes at a time while sixteen remain: the position of the first special byte, or
    /// where fewer than sixteen bytes are left (the caller scans those).
    #[inline(always)]
    pub(super) fn string_stop(bytes: &[u8], mut i: usize) -> usize {
        // SAFETY (every block below): SSE2 is part of the x86-64 baseline, so every x86-64
        // processor runs these instructions; the one load reads a sixteen-byte block of `bytes`,
        // and an unaligned load has no other requirement.
        let (quote, backslash, below_space) = unsafe {
            (
                _mm_set1_epi8(b'"' as i8),
                _mm_set1_epi8(b'\\' as i8),
                _mm_set1_epi8(0x1f),
            )
        };
        while let Some(block) = bytes.get(i..).and_then(|rest| rest.first_chunk::<16>()) {
            let mask = unsafe {
                let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
                // A control character: min(byte, 0x1f) is the byte itself (unsigned).
                let control = _mm_cmpeq_epi8(_mm_min_epu8(v, below_space), v);
                let special = _mm_or_si128(
                    _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                    control,
                );
                _mm_movemask_epi8(special)
            };
            if mask != 0 {
                return i + mask.trailing_zeros() as usize;
            }
            i += 16;
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_borrowed_unless_they_hold_escapes() {
        let mut s = Scanner::from_str(r#" "plain é" "a\"b\\c\/d\n\u00e9\ud83d\ude00" "#);
        assert!(matches!(s.string().unwrap(), Cow::Borrowed("plain é")));
        assert_eq!(s.string().unwrap(), "a\"b\\c/d\né😀");
        s.end().unwrap();
        for bad in [
            r#""open"#,
            r#""\x""#,
            r#""\ud83d""#,
            "\"a\u{1}\"",
            r#""\u12""#,
        ] {
            assert!(Scanner::from_str(bad).string().is_err(), "{bad}");
        }
    }

    #[test]
    fn string_runs_stop_at_the_first_special_byte() {
        let plain = "abcdefghijklmnopqrstuvwxyzé€😀0123456789";
        for special in ["\"", "\\", "\n", "\u{1f}"] {
            for at in 0..plain.len() {
                if !plain.is_char_boundary(at) {
                    continue;
                }
                let text = format!("{}{special}{}\"", &plain[..at], &plain[at..]);
                assert_eq!(string_stop(text.as_bytes(), 0), at, "{text:?}");
                // The word-at-a-time scan alone (what targets other than x86-64 run).
                assert_eq!(string_stop_words(text.as_bytes(), 0), at, "{text:?}");
            }
        }
        assert_eq!(string_stop(plain.as_bytes(), 0), plain.len());
        assert_eq!(string_stop(b"ab\"", 3), 3);
    }

    #[test]
    fn whitespace_runs_end_at_the_first_other_byte() {
        // Indents of every length around the eight-byte steps, mixed with the other whitespace,
        // followed by a token, by a control character (not whitespace) or by the end of the text.
        for lead in ["", "\n", "\r\n", "\t", " \n"] {
            for spaces in 0..20 {
                for tail in ["", "\t ", " \n  "] {
                    let run = format!("{lead}{}{tail}", " ".repeat(spaces));
                    for after in ["", "\"k\": 1", "}", "\u{1}"] {
                        let text = format!("x{run}{after}");
                        let end = 1 + run.len();
                        assert_eq!(whitespace_end(text.as_bytes(), 1), end, "{text:?}");
                        let mut s = Scanner::from_str(&text);
                        s.rewind(1);
                        s.ws();
                        assert_eq!(s.position(), end, "{text:?}");
                    }
                }
            }
        }
        assert_eq!(whitespace_end(b"x", 1), 1);
    }

    #[test]
    fn pretty_values_copy_to_the_compact_text() {
        let value = serde_json::json!({
            "id": "ch_1", "amount": 100, "paid": true, "none": null,
            "nested": {"list": [1, 2.5, {"deep": ["a \" ] \\ b", "\n"]}], "empty": {}, "also": []},
            "spaces inside": "  {  }  ",
        });
        let compact = serde_json::to_string(&value).unwrap();
        for text in [
            serde_json::to_string_pretty(&value).unwrap(),
            compact.replace(',', " ,\r\n\t ").replace(':', "  :\t"),
        ] {
            let mut s = Scanner::from_str(&text);
            assert_eq!(s.compact().unwrap(), compact, "{text}");
            s.end().unwrap();
        }
    }

    #[test]
    fn expected_keys_match_only_themselves() {
        let names = [
            "",
            "a",
            "id",
            "email",
            "amount",
            "created",
            "currency",
            "amount_captured_",
            "balance_transaction",
            "address_line1_check_that_is_long",
        ];
        for name in names {
            let key = WrittenKey::new(name).unwrap();
            let written = format!("\"{name}\"");
            // The key itself, compact or spaced, with little or much text after it.
            for after in [":1", " : 1", ":1,\"amount\":2,\"currency\":\"usd\"}"] {
                let text = format!("{written}{after}");
                let mut s = Scanner::from_str(&text);
                if text.len() >= 8 {
                    assert!(s.expect_key(&key).unwrap(), "{text}");
                    assert_eq!(s.number().unwrap(), Number::U64(1), "{text}");
                } else {
                    // Too little text to compare words: the key is read the general way.
                    assert!(!s.expect_key(&key).unwrap(), "{text}");
                    assert_eq!(s.key().unwrap(), name);
                }
            }
            // Every other name, the name with any one bit of any one byte flipped, longer or
            // shorter.
            let mut others: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            for at in 0..name.len() {
                for bit in 0..7 {
                    let mut other = name.as_bytes().to_vec();
                    other[at] ^= 1 << bit;
                    if other[at].is_ascii_graphic() && !matches!(other[at], b'"' | b'\\') {
                        others.push(String::from_utf8(other).unwrap());
                    }
                }
            }
            others.push(format!("{name}x"));
            others.push(format!("x{name}"));
            for other in others.iter().filter(|o| *o != name) {
                let text = format!("\"{other}\":1,\"padding\":2}}");
                let mut s = Scanner::from_str(&text);
                assert!(!s.expect_key(&key).unwrap(), "{name} in {text}");
                assert_eq!(s.key().unwrap(), *other, "the reader did not move");
            }
        }
        // A key written with an escape is not a match; one without its colon is an error.
        let key = WrittenKey::new("ab").unwrap();
        assert!(!Scanner::from_str(r#""a\u0062":1,"x":2}"#)
            .expect_key(&key)
            .unwrap());
        assert!(Scanner::from_str(r#""ab" 1,"x":2}"#)
            .expect_key(&key)
            .is_err());
        assert_eq!(WrittenKey::new("a\"b"), None);
    }

    #[test]
    fn numbers_keep_their_kind() {
        let mut s = Scanner::from_str(
            "0 -12 18446744073709551615 -9223372036854775808 1.5 2e3 -0.25E-1 99999999999999999999",
        );
        assert_eq!(s.number().unwrap(), Number::U64(0));
        assert_eq!(s.number().unwrap(), Number::I64(-12));
        assert_eq!(s.number().unwrap(), Number::U64(u64::MAX));
        assert_eq!(s.number().unwrap(), Number::I64(i64::MIN));
        assert_eq!(s.number().unwrap(), Number::F64(1.5));
        assert_eq!(s.number().unwrap(), Number::F64(2000.0));
        assert_eq!(s.number().unwrap(), Number::F64(-0.025));
        assert_eq!(s.number().unwrap(), Number::F64(1e20));
        for bad in ["-", "1.", "1e", ".5", "x"] {
            assert!(Scanner::from_str(bad).number().is_err(), "{bad}");
        }
    }

    #[test]
    fn values_are_skipped_and_copied_compactly() {
        let text =
            "{ \"b\" : [1, 2.5, \"x \\\" ] y\", null, {\"é\": true}],\n \"a\": {} , \"c\": [] } 7";
        let mut s = Scanner::from_str(text);
        let compact = r#"{"b":[1,2.5,"x \" ] y",null,{"é":true}],"a":{},"c":[]}"#;
        assert!(matches!(s.compact().unwrap(), Cow::Owned(c) if c == compact));
        assert_eq!(s.number().unwrap(), Number::U64(7));
        // Compact text already: borrowed as it is.
        let mut s = Scanner::from_str(compact);
        assert!(matches!(s.compact().unwrap(), Cow::Borrowed(c) if c == compact));
        s.end().unwrap();
        let mut s = Scanner::from_str(text);
        s.skip().unwrap();
        assert_eq!(s.number().unwrap(), Number::U64(7));
        s.end().unwrap();
        assert!(Scanner::from_str("{\"a\": [1, 2").skip().is_err());
        assert!(Scanner::from_str("[\"a]").skip().is_err());
    }

    #[test]
    fn objects_and_arrays_are_walked_member_by_member() {
        let mut s = Scanner::from_str(r#"{"a": [true, false], "b": null, "c": {}}"#);
        assert!(s.object().unwrap());
        assert_eq!(s.key().unwrap(), "a");
        assert!(s.array().unwrap());
        assert!(s.bool().unwrap());
        assert!(s.more_elements().unwrap());
        assert!(!s.bool().unwrap());
        assert!(!s.more_elements().unwrap());
        assert!(s.more_members().unwrap());
        assert_eq!(s.key().unwrap(), "b");
        s.null().unwrap();
        assert!(s.more_members().unwrap());
        assert_eq!(s.key().unwrap(), "c");
        assert!(!s.object().unwrap());
        assert!(!s.more_members().unwrap());
        s.end().unwrap();
        let mut s = Scanner::from_str(r#"{"a" 1}"#);
        s.object().unwrap();
        assert!(s.key().is_err());
        let mut s = Scanner::from_str(r#"[1 2]"#);
        s.array().unwrap();
        s.number().unwrap();
        assert!(s.more_elements().is_err());
        assert!(Scanner::new(b"\"\xff\"").is_err());
    }
}
