//! Where an object or array of JSON text ends: what skipping a field the catalog does not map, and
//! reading a JSON column, take. Only brackets outside strings count, so the pass must know at every
//! byte whether it is inside a string; it checks no more than that (a skipped value is not
//! validated beyond balanced brackets and terminated strings).
//!
//! On x86-64 the text is read sixteen bytes at a time with SSE2 (part of every x86-64 processor):
//! one compare per kind of byte gives a bit per byte, the quotes' running parity says which bytes
//! are inside strings, and only brackets cost a step each. A block holding a backslash (rare in
//! Stripe's objects) is read byte by byte, as is the end of the text and every block elsewhere.

/// How far a pass through nested JSON has come.
#[derive(Debug, Default)]
struct Pass {
    /// Brackets open.
    depth: usize,
    in_string: bool,
    /// Inside a string, right after a backslash.
    escaped: bool,
    /// Whitespace was seen between tokens.
    spaced: bool,
}

/// Passes the object or array whose opening bracket is at `start`: the position just after its
/// closing bracket, and whether whitespace separates any of its tokens; `None` when the text ends
/// first.
pub fn nested_end(bytes: &[u8], start: usize) -> Option<(usize, bool)> {
    let mut pass = Pass::default();
    #[cfg(target_arch = "x86_64")]
    let start = {
        let mut i = start;
        while let Some(block) = bytes.get(i..).and_then(|rest| rest.first_chunk::<16>()) {
            if let Some(end) = pass.block(block) {
                return Some((i + end, pass.spaced));
            }
            i += 16;
        }
        i
    };
    nested_end_bytes(&mut pass, bytes, start)
}

/// [`nested_end`] byte by byte from `start` (what targets other than x86-64 run throughout).
fn nested_end_bytes(pass: &mut Pass, bytes: &[u8], start: usize) -> Option<(usize, bool)> {
    pass.bytes(bytes.get(start..)?)
        .map(|end| (start + end, pass.spaced))
}

impl Pass {
    /// Reads `text`: the position just after the bracket that closes the value, if it is there.
    fn bytes(&mut self, text: &[u8]) -> Option<usize> {
        for (i, &c) in text.iter().enumerate() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if c == b'\\' {
                    self.escaped = true;
                } else if c == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match c {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        return Some(i + 1);
                    }
                }
                b' ' | b'\n' | b'\r' | b'\t' => self.spaced = true,
                _ => {}
            }
        }
        None
    }

    /// Reads one block of sixteen bytes (see the module's comment).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn block(&mut self, block: &[u8; 16]) -> Option<usize> {
        let m = sse2::Masks::of(block);
        if self.escaped || m.backslash != 0 {
            return self.bytes(block);
        }
        // Bit k: an odd number of quotes at or before byte k. With the block starting inside a
        // string, inverted. Opening quotes count as inside, closing ones as outside; neither is a
        // bracket or a space.
        let mut inside = prefix_parity(m.quote);
        if self.in_string {
            inside ^= 0xffff;
        }
        self.in_string = inside & 0x8000 != 0;
        let opens = m.open & !inside;
        let closes = m.close & !inside;
        self.spaced |= m.space & !inside != 0;
        // Brackets are few next to the bytes between them: each is one step (x86-64's baseline has
        // no instruction to count bits, so counting them would cost more).
        let mut marks = opens | closes;
        while marks != 0 {
            let at = marks.trailing_zeros();
            if opens & (1 << at) != 0 {
                self.depth += 1;
            } else {
                self.depth = self.depth.saturating_sub(1);
                if self.depth == 0 {
                    return Some(at as usize + 1);
                }
            }
            marks &= marks - 1;
        }
        None
    }
}

/// Bit k of the result: the parity of bits 0 to k of `bits` (sixteen bits).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefix_parity(mut bits: u32) -> u32 {
    bits ^= bits << 1;
    bits ^= bits << 2;
    bits ^= bits << 4;
    bits ^= bits << 8;
    bits & 0xffff
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };

    /// One bit per byte of a block, per kind of byte that matters.
    pub(super) struct Masks {
        pub quote: u32,
        pub backslash: u32,
        /// `{` and `[`.
        pub open: u32,
        /// `}` and `]`.
        pub close: u32,
        /// Bytes up to the space: outside strings, only whitespace can be there.
        pub space: u32,
    }

    impl Masks {
        #[inline(always)]
        pub(super) fn of(block: &[u8; 16]) -> Masks {
            // SAFETY (every call below): SSE2 is part of the x86-64 baseline, so every x86-64
            // processor runs these instructions; the one load reads the sixteen bytes of `block`,
            // and an unaligned load has no other requirement.
            unsafe {
                let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
                let bits = |m: __m128i| _mm_movemask_epi8(m) as u32;
                let byte = |b: u8| _mm_set1_epi8(b as i8);
                // `[` and `{` differ only in bit 5, as do `]` and `}`.
                let folded = _mm_or_si128(v, byte(0x20));
                Masks {
                    quote: bits(_mm_cmpeq_epi8(v, byte(b'"'))),
                    backslash: bits(_mm_cmpeq_epi8(v, byte(b'\\'))),
                    open: bits(_mm_cmpeq_epi8(folded, byte(b'{'))),
                    close: bits(_mm_cmpeq_epi8(folded, byte(b'}'))),
                    space: bits(_mm_cmpeq_epi8(_mm_min_epu8(v, byte(b' ')), v)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-by-byte pass alone.
    fn bytewise(bytes: &[u8], start: usize) -> Option<(usize, bool)> {
        nested_end_bytes(&mut Pass::default(), bytes, start)
    }

    #[test]
    fn values_end_at_their_closing_bracket_wherever_blocks_fall() {
        let values = [
            r#"{}"#,
            r#"[]"#,
            r#"{"a":"}","b":["]",{"c":"\"}"}],"d":"\\"}"#,
            r#"{"s":"quote \" brace } bracket ] backslash \\ end","n":[1,2.5,-3e2,null,true]}"#,
            "{\n  \"a\": [\n    1,\n    {\"b\": \"x y\"}\n  ],\n  \"c\": \"\\\\\\\"\"\n}",
            r#"[[[[[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]]]]]"#,
            r#"{"long":"0123456789abcdef0123456789abcdef0123456789abcdef","k":{"x":{}}}"#,
            r#"{"é":"ünïcödé ✓ 😀","escaped":"\\\\\\","after":"}"}"#,
        ];
        for value in values {
            // Every alignment of the value against the sixteen-byte blocks, with text after it.
            for pad in 0..17 {
                let text = format!("{}{value},{{\"next\":[1]}}]", " ".repeat(pad));
                let bytes = text.as_bytes();
                let expected = Some((pad + value.len(), value_is_spaced(value)));
                assert_eq!(nested_end(bytes, pad), expected, "{value} after {pad}");
                assert_eq!(bytewise(bytes, pad), expected, "{value} after {pad}");
            }
            // Cut short anywhere: no end.
            for cut in 1..value.len() {
                if value.is_char_boundary(cut) {
                    let part = &value.as_bytes()[..cut];
                    assert_eq!(nested_end(part, 0), None, "{}", &value[..cut]);
                    assert_eq!(bytewise(part, 0), None, "{}", &value[..cut]);
                }
            }
        }
    }

    /// Whether whitespace stands outside the strings of `value` (by parsing it apart).
    fn value_is_spaced(value: &str) -> bool {
        let mut in_string = false;
        let mut escaped = false;
        value.chars().any(|c| {
            if in_string {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
                false
            } else {
                in_string = c == '"';
                c.is_ascii_whitespace()
            }
        })
    }
}
