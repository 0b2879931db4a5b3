//! A JSON deserializer for the transforms' hot path, in front of serde_json.
//!
//! Plugins spend most of their time finding where strings end. serde_json steps a machine word
//! at a time (4 bytes in wasm32), and in a plugin every step of a loop pays wasmtime's deadline
//! check. This deserializer finds a string's end 16 bytes a step with SIMD, borrows strings
//! without escapes, and skips ignored values without visiting them.
//!
//! It is a front, never a second opinion: numbers other than plain integers, and escaped
//! strings, go to serde_json with the same request as soon as their extent is known, and on
//! anything it does not handle, or does not accept, it gives up with a bare [`GaveUp`]. Callers
//! then run serde_json over the whole document, which decides and words the reason. So whatever
//! this accepts, serde_json accepts with the same visits; the tests check that on mutated
//! tweets. Besides serde's interface, it lends field-prune a cursor (`peek`, `string`, `skip`,
//! `read_scalar`, `pos`), whose cutting pass needs to know where each value lies.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Hands a scalar's text to serde_json with the same request.
macro_rules! delegate {
    ($token:expr, $method:ident, $visitor:expr) => {
        de::Deserializer::$method(&mut serde_json::Deserializer::from_str($token), $visitor)
            .map_err(|_| GaveUp)
    };
}

/// The fast path stopped; serde_json, run over the document, says why (or succeeds).
#[derive(Debug)]
pub(crate) struct GaveUp;

impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the fast JSON path gave up")
    }
}

impl std::error::Error for GaveUp {}

impl de::Error for GaveUp {
    fn custom<T: fmt::Display>(_: T) -> Self {
        GaveUp
    }
}

type Result<T> = std::result::Result<T, GaveUp>;

/// serde_json refuses nesting past 128 levels; giving up sooner leaves that to it.
const MAX_DEPTH: usize = 100;

/// What [`Deserializer::read_scalar`] found.
pub(crate) enum Scalar {
    Null,
    EmptyString,
    Other,
}

pub(crate) struct Deserializer<'de> {
    text: &'de str,
    pos: usize,
    depth: usize,
}

impl<'de> Deserializer<'de> {
    pub(crate) fn new(text: &'de str) -> Self {
        Deserializer {
            text,
            pos: 0,
            depth: 0,
        }
    }

    /// Only whitespace may follow the document.
    pub(crate) fn end(&mut self) -> Result<()> {
        self.skip_whitespace();
        if self.pos == self.text.len() {
            Ok(())
        } else {
            Err(GaveUp)
        }
    }

    fn skip_whitespace(&mut self) {
        self.pos = whitespace_end(self.text.as_bytes(), self.pos);
    }

    /// The next byte after whitespace, not consumed. Compact JSON has none, and then no loop is
    /// entered: in a plugin, every loop entered pays a deadline check.
    #[inline]
    pub(crate) fn peek(&mut self) -> Result<u8> {
        match self.text.as_bytes().get(self.pos) {
            Some(b' ' | b'\t' | b'\n' | b'\r') => {
                self.skip_whitespace();
                self.text.as_bytes().get(self.pos).copied().ok_or(GaveUp)
            }
            Some(&byte) => Ok(byte),
            None => Err(GaveUp),
        }
    }

    /// Consumes `byte`, the next one after whitespace.
    pub(crate) fn expect(&mut self, byte: u8) -> Result<()> {
        if self.peek()? == byte {
            self.pos += 1;
            Ok(())
        } else {
            Err(GaveUp)
        }
    }

    pub(crate) fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(GaveUp);
        }
        self.pos += 1;
        Ok(())
    }

    pub(crate) fn leave(&mut self, close: u8) -> Result<()> {
        self.expect(close)?;
        self.depth -= 1;
        Ok(())
    }

    /// Scans the string whose `"` is at `pos`, leaving `pos` after its closing quote. Returns
    /// the whole token and whether it has escapes.
    #[inline]
    pub(crate) fn string(&mut self) -> Result<(&'de str, bool)> {
        let start = self.pos;
        let end = find_string_special(self.text.as_bytes(), start + 1);
        if self.text.as_bytes().get(end) == Some(&b'"') {
            self.pos = end + 1;
            return Ok((&self.text[start..self.pos], false));
        }
        self.escaped_string(start, end)
    }

    /// The rest of a string from `i`, where [`string`](Self::string) stopped short of its end.
    fn escaped_string(&mut self, start: usize, mut i: usize) -> Result<(&'de str, bool)> {
        let bytes = self.text.as_bytes();
        loop {
            match bytes.get(i) {
                Some(b'"') => break,
                Some(b'\\') => match bytes.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                    Some(b'u')
                        if bytes
                            .get(i + 2..i + 6)
                            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) =>
                    {
                        i += 6
                    }
                    _ => return Err(GaveUp),
                },
                // A control character, or the end of the input.
                _ => return Err(GaveUp),
            }
            i = find_string_special(bytes, i);
        }
        self.pos = i + 1;
        Ok((&self.text[start..self.pos], true))
    }

    /// Where the deserializer is in the text.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Past the whitespace and the comma that follow a value, and the whitespace after that;
    /// `pos` if no comma follows. Where a removed first entry's cut ends.
    pub(crate) fn after_separator(&self) -> usize {
        let bytes = self.text.as_bytes();
        let comma = whitespace_end(bytes, self.pos);
        if bytes.get(comma) == Some(&b',') {
            whitespace_end(bytes, comma + 1)
        } else {
            self.pos
        }
    }

    /// Reads the scalar at `pos` for its kind, checked as reading its value would be (escaped
    /// strings and numbers other than plain integers by serde_json); containers give up.
    pub(crate) fn read_scalar(&mut self) -> Result<Scalar> {
        match self.peek()? {
            b'"' => match self.string()? {
                (token, false) => Ok(if token.len() == 2 {
                    Scalar::EmptyString
                } else {
                    Scalar::Other
                }),
                (token, true) => {
                    delegate!(token, deserialize_str, IgnoredAny)?;
                    Ok(Scalar::Other)
                }
            },
            b'n' => self.literal(b"null").map(|()| Scalar::Null),
            b't' => self.literal(b"true").map(|()| Scalar::Other),
            b'f' => self.literal(b"false").map(|()| Scalar::Other),
            b'-' | b'0'..=b'9' => {
                let (token, integer) = self.number_token()?;
                if !fits_u64(token, integer) {
                    delegate!(token, deserialize_any, IgnoredAny)?;
                }
                Ok(Scalar::Other)
            }
            _ => Err(GaveUp),
        }
    }

    /// Scans the number at `pos` by JSON's grammar and returns its text.
    #[inline]
    fn number(&mut self) -> Result<&'de str> {
        self.number_token().map(|(token, _)| token)
    }

    /// [`number`](Self::number), and whether it is a non-negative integer.
    #[inline]
    fn number_token(&mut self) -> Result<(&'de str, bool)> {
        let bytes = self.text.as_bytes();
        let start = self.pos;
        let mut i = start + usize::from(bytes.get(start) == Some(&b'-'));
        i = match bytes.get(i) {
            Some(b'0') => i + 1,
            Some(b'1'..=b'9') => find_non_digit(bytes, i + 1),
            _ => return Err(GaveUp),
        };
        let integer = bytes[start] != b'-' && !matches!(bytes.get(i), Some(b'.' | b'e' | b'E'));
        if !integer {
            i = self.fraction_and_exponent(i)?;
        }
        self.pos = i;
        Ok((&self.text[start..i], integer))
    }

    /// The end of a number's fraction and exponent, which start at `i`.
    fn fraction_and_exponent(&self, mut i: usize) -> Result<usize> {
        let bytes = self.text.as_bytes();
        if bytes.get(i) == Some(&b'.') {
            let end = find_non_digit(bytes, i + 1);
            if end == i + 1 {
                return Err(GaveUp);
            }
            i = end;
        }
        if let Some(b'e' | b'E') = bytes.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = bytes.get(i) {
                i += 1;
            }
            let end = find_non_digit(bytes, i);
            if end == i {
                return Err(GaveUp);
            }
            i = end;
        }
        Ok(i)
    }

    /// Consumes `word`, a literal of 4 or 5 bytes, compared as integers (a byte loop or a
    /// `memcmp` call costs a deadline check in a plugin).
    #[inline]
    fn literal(&mut self, word: &[u8]) -> Result<()> {
        let bytes = self.text.as_bytes();
        let at = |i: usize| -> Option<u32> {
            let four = bytes.get(i..i + 4)?;
            Some(u32::from_le_bytes([four[0], four[1], four[2], four[3]]))
        };
        let head = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        let tail_ok = word.len() == 4 || bytes.get(self.pos + 4) == word.get(4);
        if at(self.pos) == Some(head) && tail_ok {
            self.pos += word.len();
            Ok(())
        } else {
            Err(GaveUp)
        }
    }

    /// The text of the scalar at `pos` (after whitespace); containers give up.
    fn scalar(&mut self) -> Result<&'de str> {
        let next = self.peek()?;
        let start = self.pos;
        match next {
            b'"' => return self.string().map(|(token, _)| token),
            b'-' | b'0'..=b'9' => return self.number(),
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            _ => return Err(GaveUp),
        }
        Ok(&self.text[start..self.pos])
    }

    /// Skips one value, checking its syntax as serde_json's ignoring does.
    pub(crate) fn skip(&mut self) -> Result<()> {
        match self.peek()? {
            b'{' => {
                self.enter()?;
                if self.peek()? != b'}' {
                    loop {
                        if self.peek()? != b'"' {
                            return Err(GaveUp);
                        }
                        self.string()?;
                        self.expect(b':')?;
                        self.skip()?;
                        if self.peek()? != b',' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                self.leave(b'}')
            }
            b'[' => {
                self.enter()?;
                if self.peek()? != b']' {
                    loop {
                        self.skip()?;
                        if self.peek()? != b',' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                self.leave(b']')
            }
            _ => self.scalar().map(drop),
        }
    }

    fn map<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        self.enter()?;
        let value = visitor.visit_map(Entries {
            de: self,
            first: true,
        })?;
        // A visitor that stopped early leaves entries: serde_json refuses that too.
        self.leave(b'}')?;
        Ok(value)
    }

    fn seq<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        self.enter()?;
        let value = visitor.visit_seq(Entries {
            de: self,
            first: true,
        })?;
        self.leave(b']')?;
        Ok(value)
    }
}

/// Requests answered by serde_json on the scalar's text.
macro_rules! scalar_requests {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            let token = self.scalar()?;
            delegate!(token, $method, visitor)
        }
    )*};
}

/// Requests this deserializer leaves to serde_json (the transforms make none of them).
macro_rules! refused_requests {
    ($($method:ident($($arg:ty),*))*) => {$(
        fn $method<V: Visitor<'de>>(self, $(_: $arg,)* _: V) -> Result<V::Value> {
            Err(GaveUp)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = GaveUp;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek()? {
            b'{' => self.map(visitor),
            b'[' => self.seq(visitor),
            b'"' => self.deserialize_str(visitor),
            b't' => {
                self.literal(b"true")?;
                visitor.visit_bool(true)
            }
            b'f' => {
                self.literal(b"false")?;
                visitor.visit_bool(false)
            }
            b'n' => {
                self.literal(b"null")?;
                visitor.visit_unit()
            }
            b'-' | b'0'..=b'9' => {
                let (token, integer) = self.number_token()?;
                if fits_u64(token, integer) {
                    let n = token.bytes().fold(0, |n, b| n * 10 + u64::from(b - b'0'));
                    return visitor.visit_u64(n);
                }
                delegate!(token, deserialize_any, visitor)
            }
            _ => Err(GaveUp),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.peek()? != b'"' {
            return Err(GaveUp);
        }
        match self.string()? {
            (token, false) => visitor.visit_borrowed_str(&token[1..token.len() - 1]),
            (token, true) => delegate!(token, deserialize_str, visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        // serde_json's `RawValue` comes here too: its visitor refuses this, and the caller's
        // serde_json pass gives it the text.
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek()? {
            b'[' => self.seq(visitor),
            _ => Err(GaveUp),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.peek()? {
            b'{' => self.map(visitor),
            _ => Err(GaveUp),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_map(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.skip()?;
        visitor.visit_unit()
    }

    scalar_requests! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_f32
        deserialize_f64 deserialize_char deserialize_unit
    }

    refused_requests! {
        deserialize_bytes() deserialize_byte_buf() deserialize_unit_struct(&'static str)
        deserialize_tuple(usize) deserialize_tuple_struct(&'static str, usize)
        deserialize_enum(&'static str, &'static [&'static str])
    }
}

/// The entries of an object or the elements of an array.
struct Entries<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    first: bool,
}

impl Entries<'_, '_> {
    /// Whether another entry follows (consuming its comma); `close` ends the container.
    fn more(&mut self, close: u8) -> Result<bool> {
        let next = self.de.peek()?;
        if next == close {
            return Ok(false);
        }
        if !std::mem::take(&mut self.first) {
            if next != b',' {
                return Err(GaveUp);
            }
            self.de.pos += 1;
        }
        Ok(true)
    }
}

impl<'de> MapAccess<'de> for Entries<'_, 'de> {
    type Error = GaveUp;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if !self.more(b'}')? {
            return Ok(None);
        }
        // Keys are strings; a trailing comma meets `}` here and gives up.
        if self.de.peek()? != b'"' {
            return Err(GaveUp);
        }
        seed.deserialize(Key { de: &mut *self.de }).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        self.de.expect(b':')?;
        seed.deserialize(&mut *self.de)
    }
}

impl<'de> SeqAccess<'de> for Entries<'_, 'de> {
    type Error = GaveUp;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if !self.more(b']')? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }
}

/// An object key: serde_json reads every kind of request for a key as a string (even an
/// ignoring one), except the numeric ones, which parse the key (those give up here).
struct Key<'a, 'de> {
    de: &'a mut Deserializer<'de>,
}

impl<'de> de::Deserializer<'de> for Key<'_, 'de> {
    type Error = GaveUp;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.de.deserialize_str(visitor)
    }

    // An ignored key is still decoded, so a bad escape in it fails as in serde_json.
    serde::forward_to_deserialize_any! {
        str string identifier ignored_any
    }

    refused_requests! {
        deserialize_bool() deserialize_i8() deserialize_i16() deserialize_i32()
        deserialize_i64() deserialize_i128() deserialize_u8() deserialize_u16()
        deserialize_u32() deserialize_u64() deserialize_u128() deserialize_f32()
        deserialize_f64() deserialize_char() deserialize_bytes() deserialize_byte_buf()
        deserialize_option() deserialize_unit() deserialize_unit_struct(&'static str)
        deserialize_newtype_struct(&'static str) deserialize_seq()
        deserialize_tuple(usize) deserialize_tuple_struct(&'static str, usize)
        deserialize_map() deserialize_struct(&'static str, &'static [&'static str])
        deserialize_enum(&'static str, &'static [&'static str])
    }
}

/// The index of the first byte at or after `i` that is not JSON whitespace, or the length.
fn whitespace_end(bytes: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(i) {
        i += 1;
    }
    i
}

/// Whether a number read as `integer` (non-negative, no fraction or exponent) is one this
/// deserializer reads itself: up to 19 digits always fit a u64, which is what serde_json
/// visits them as.
fn fits_u64(token: &str, integer: bool) -> bool {
    integer && token.len() <= 19
}

/// The index of the first byte at or after `i` that is not an ASCII digit, or the length.
#[inline]
fn find_non_digit(bytes: &[u8], mut i: usize) -> usize {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if i + 16 <= bytes.len() {
        use std::arch::wasm32::*;
        // SAFETY: the 16 bytes from `i` are in bounds; the load needs no alignment.
        let v = unsafe { v128_load(bytes.as_ptr().add(i).cast()) };
        let digits = u8x16_lt(u8x16_sub(v, u8x16_splat(b'0')), u8x16_splat(10));
        let others = !u8x16_bitmask(digits);
        if others != 0 {
            return i + others.trailing_zeros() as usize;
        }
        i += 16;
    }
    while bytes.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// The index of the first `"`, `\` or control character at or after `i`, or the length.
#[inline]
fn find_string_special(bytes: &[u8], mut i: usize) -> usize {
    // The first probe stands outside the loop: most strings end within it, and then no loop
    // is entered.
    if i + 16 <= bytes.len() {
        if let Some(found) = string_special_in_16(bytes, i) {
            return found;
        }
        i += 16;
        while i + 16 <= bytes.len() {
            if let Some(found) = string_special_in_16(bytes, i) {
                return found;
            }
            i += 16;
        }
    }
    while i < bytes.len() && !matches!(bytes[i], b'"' | b'\\' | 0..=0x1f) {
        i += 1;
    }
    i
}

/// The first `"`, `\` or control character among the 16 bytes from `i` (which must be in
/// bounds).
#[inline(always)]
fn string_special_in_16(bytes: &[u8], i: usize) -> Option<usize> {
    let chunk = &bytes[i..i + 16];
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    let mask = {
        use std::arch::wasm32::*;
        // SAFETY: `chunk` holds 16 bytes; the load needs no alignment.
        let v = unsafe { v128_load(chunk.as_ptr().cast()) };
        let hits = v128_or(
            v128_or(
                u8x16_eq(v, u8x16_splat(b'"')),
                u8x16_eq(v, u8x16_splat(b'\\')),
            ),
            u8x16_lt(v, u8x16_splat(0x20)),
        );
        u32::from(u8x16_bitmask(hits))
    };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of x86_64; `chunk` holds 16 bytes; the load needs no alignment.
    let mask = unsafe {
        use std::arch::x86_64::*;
        let v = _mm_loadu_si128(chunk.as_ptr().cast());
        // A control character has none of its three high bits set.
        let control = _mm_cmpeq_epi8(
            _mm_and_si128(v, _mm_set1_epi8(0xe0_u8 as i8)),
            _mm_setzero_si128(),
        );
        let hits = _mm_or_si128(
            _mm_or_si128(
                _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8)),
                _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8)),
            ),
            control,
        );
        _mm_movemask_epi8(hits) as u32
    };
    #[cfg(not(any(
        all(target_arch = "wasm32", target_feature = "simd128"),
        target_arch = "x86_64"
    )))]
    let mask = chunk.iter().enumerate().fold(0u32, |m, (k, b)| {
        m | u32::from(matches!(b, b'"' | b'\\' | 0..=0x1f)) << k
    });
    (mask != 0).then(|| i + mask.trailing_zeros() as usize)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use serde::de::IgnoredAny;
    use serde_json::Value;

    use super::*;

    /// The fixture tweets, compact and pretty-printed.
    fn tweets() -> Vec<String> {
        let root = env!("CARGO_MANIFEST_DIR");
        let mut docs = Vec::new();
        for entry in std::fs::read_dir(format!("{root}/fixtures")).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            if path.extension().is_some_and(|e| e == "ndjson") {
                docs.extend(text.lines().map(String::from));
            } else {
                docs.push(text);
            }
        }
        docs
    }

    /// The tweets and the shared vectors' inputs (those that are UTF-8).
    fn corpus() -> Vec<String> {
        let root = env!("CARGO_MANIFEST_DIR");
        let vectors = std::fs::read_to_string(format!("{root}/../vectors/inputs.json")).unwrap();
        let vectors: Value = serde_json::from_str(&vectors).unwrap();
        let texts = vectors["inputs"].as_array().unwrap().iter();
        let mut docs = tweets();
        docs.extend(texts.filter_map(|input| Some(input["text"].as_str()?.to_string())));
        docs
    }

    /// Both deserializers' answers to one request, as comparable text.
    fn answers<T: for<'de> DeserializeOwnedBy<'de>>(
        text: &str,
    ) -> (Option<String>, Option<String>) {
        let mut de = Deserializer::new(text);
        let fast = T::read(&mut de).ok().filter(|_| de.end().is_ok());
        let mut de = serde_json::Deserializer::from_str(text);
        let slow = T::read(&mut de).ok().filter(|_| de.end().is_ok());
        (fast, slow)
    }

    /// A request made of a document, answered as text: what a visitor saw.
    trait DeserializeOwnedBy<'de> {
        fn read<D: de::Deserializer<'de>>(de: D) -> std::result::Result<String, D::Error>;
    }

    struct AsValue;
    impl<'de> DeserializeOwnedBy<'de> for AsValue {
        fn read<D: de::Deserializer<'de>>(de: D) -> std::result::Result<String, D::Error> {
            Value::deserialize(de).map(|v| format!("{v:?}"))
        }
    }

    struct Ignored;
    impl<'de> DeserializeOwnedBy<'de> for Ignored {
        fn read<D: de::Deserializer<'de>>(de: D) -> std::result::Result<String, D::Error> {
            IgnoredAny::deserialize(de).map(|_| String::new())
        }
    }

    /// Keys and values ignored one by one, as the transforms skip what they do not look at.
    struct IgnoredEntries;
    impl<'de> DeserializeOwnedBy<'de> for IgnoredEntries {
        fn read<D: de::Deserializer<'de>>(de: D) -> std::result::Result<String, D::Error> {
            struct Entries;
            impl<'de> Visitor<'de> for Entries {
                type Value = String;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> std::result::Result<String, A::Error> {
                    let mut n = 0;
                    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                        n += 1;
                    }
                    Ok(n.to_string())
                }
            }
            de.deserialize_map(Entries)
        }
    }

    /// Typed reads: options, sequences, integers and strings by request.
    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Typed<'a> {
        #[serde(borrow)]
        text: Option<std::borrow::Cow<'a, str>>,
        id: Option<u64>,
        favorite_count: Option<i32>,
        truncated: Option<bool>,
        entities: Option<BTreeMap<String, Vec<BTreeMap<String, Value>>>>,
    }
    struct AsTyped;
    impl<'de> DeserializeOwnedBy<'de> for AsTyped {
        fn read<D: de::Deserializer<'de>>(de: D) -> std::result::Result<String, D::Error> {
            Typed::deserialize(de).map(|t| format!("{t:?}"))
        }
    }

    fn check_all(text: &str, tally: &mut [usize; 2]) {
        for (name, (fast, slow)) in [
            ("Value", answers::<AsValue>(text)),
            ("IgnoredAny", answers::<Ignored>(text)),
            ("ignored entries", answers::<IgnoredEntries>(text)),
            ("typed", answers::<AsTyped>(text)),
        ] {
            if fast.is_some() {
                assert_eq!(fast, slow, "{name} of {text:?}");
            }
            tally[usize::from(fast.is_some())] += 1;
        }
    }

    #[test]
    fn takes_the_fast_path_on_tweets() {
        for text in tweets() {
            for (name, (fast, slow)) in [
                ("Value", answers::<AsValue>(&text)),
                ("IgnoredAny", answers::<Ignored>(&text)),
                ("ignored entries", answers::<IgnoredEntries>(&text)),
                ("typed", answers::<AsTyped>(&text)),
            ] {
                assert!(fast.is_some(), "{name} gave up on {text}");
                assert_eq!(fast, slow, "{name} of {text}");
            }
        }
    }

    #[test]
    fn accepts_only_what_serde_json_accepts_with_the_same_visits() {
        let mut tally = [0, 0];
        let edge_cases = [
            "{}",
            " { } ",
            "{\"a\":[]}",
            "{\"a\":[1,]}",
            "{\"a\":1,}",
            "{,}",
            "{\"a\" 1}",
            "{\"a\":01}",
            "{\"a\":-0}",
            "{\"a\":-}",
            "{\"a\":1.}",
            "{\"a\":1e}",
            "{\"a\":1E+5}",
            "{\"a\":1e400}",
            "{\"a\":-1e-400}",
            "{\"a\":18446744073709551616}",
            "{\"a\":-9223372036854775809}",
            "{\"a\":\"\\ud800\"}",
            "{\"a\":\"\\u12\"}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\u{1}\"}",
            "{\"a\":tru}",
            "{\"a\":nul}",
            "{\"a\":true}x",
            "{\"a\":\"x\"",
            "{\"a\\\"b\":1}",
            "{\"a\":[{\"b\":[{}]}]}",
            "{1:2}",
            "[1]",
            "\"x\"",
            "{\"id\":\"7\",\"text\":null,\"truncated\":1}",
            "{\"id\":-1}",
            "{\"text\":\"\\/\"}",
            "{\"\\ud800\":1}",
            "{\"a\":\"\\ud800\"}",
            "{\"\\udc00x\":{\"\\ud800\":1}}",
        ];
        let mut docs: Vec<String> = edge_cases.iter().map(|s| s.to_string()).collect();
        docs.push(format!("{}1{}", "[".repeat(99), "]".repeat(99)));
        docs.push(format!("{{\"a\":{}1{}}}", "[".repeat(130), "]".repeat(130)));
        for text in &docs {
            check_all(text, &mut tally);
        }
        // Mutations of the corpus: bytes that matter to JSON put in, taken out, or replaced.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let special = b"\"\\{}[],:0-.eE+ tfnu\x01\x1f";
        for text in corpus().into_iter().filter(|t| !t.is_empty()) {
            for text in crate::json::mutations(&text, 200, special, &mut seed) {
                check_all(&text, &mut tally);
            }
        }
        let [gave_up, accepted] = tally;
        assert!(gave_up > 1000 && accepted > 1000, "{tally:?}");
    }

    #[test]
    fn finds_string_ends_across_chunks() {
        for len in 0..40 {
            for special in [b'"', b'\\', 0x01, 0x1f] {
                let mut bytes = vec![b'a'; len];
                bytes.extend_from_slice(&[0xc3, 0xa9, b' ', 0x7f]);
                bytes.push(special);
                bytes.extend_from_slice(b"tail");
                for start in 0..=len {
                    assert_eq!(find_string_special(&bytes, start), len + 4, "{len} {start}");
                }
            }
            assert_eq!(find_string_special(&vec![b'a'; len], 0), len);
        }
    }
}
