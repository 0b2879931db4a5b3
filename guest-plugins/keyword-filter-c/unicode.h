// Characters as Rust's char methods see them, on UTF-8 that is known to be valid.
#ifndef UNICODE_H
#define UNICODE_H

#include "buf.h"

// The character starting at s[*i]; advances *i past it.
uint32_t utf8_next(const char *s, size_t *i);
// The character ending just before s[end].
uint32_t utf8_prev(const char *s, size_t end);

// char::is_whitespace.
bool is_space(uint32_t c);
// `s` without leading and trailing whitespace (str::trim).
str trim(str s);

// A word character for whole-word matching: a letter, digit or `_`, except in scripts written
// without spaces between words and except combining marks (see matcher.c).
bool is_bounded(uint32_t c);

// Whether Rust's `{:?}` writes c as `\u{..}`.
bool is_debug_escaped(uint32_t c);

// A character with no case: its lowercase and uppercase are itself.
bool is_caseless(uint32_t c);

// Appends the case-folded `s`: Unicode lowercase (char::to_lowercase), final sigma as sigma.
void fold(buf *out, str s);

#endif
