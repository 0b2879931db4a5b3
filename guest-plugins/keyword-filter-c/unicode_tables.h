// The Unicode tables `cargo xtask plugins` generates from the Rust toolchain (unicode_tables.c
// in the build directory), so that this plugin answers "is it a letter or digit" and "what is
// its lowercase" exactly as Rust's char methods do. Ranges are sorted, half-open [lo, hi) and
// flattened; every table covers non-ASCII code points only.
#ifndef UNICODE_TABLES_H
#define UNICODE_TABLES_H

#include <stddef.h>
#include <stdint.h>

// char::is_alphanumeric.
extern const uint32_t alnum_ranges[];
extern const size_t alnum_ranges_len;

// char::to_lowercase where it is not the character itself: triples of the code point and its
// lowercase, one or two characters (0 for none), sorted by code point.
extern const uint32_t lower_map[];
extern const size_t lower_map_len;

// The characters that have a case: to_lowercase or to_uppercase is not the character itself.
extern const uint32_t cased_ranges[];
extern const size_t cased_ranges_len;

// The characters Rust's `{:?}` writes as `\u{..}` (char::escape_debug).
extern const uint32_t debug_escaped_ranges[];
extern const size_t debug_escaped_ranges_len;

#endif
