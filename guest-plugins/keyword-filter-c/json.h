// Reading a record's JSON document without building a tree: the strings at the searched paths
// are handed to a callback. What fails and where follows the Rust walk over serde_json
// (guest-plugins/transforms/src/json.rs): the whole value is checked for syntax, but strings and
// numbers are decoded, and so can fail (a lone surrogate escape, a number beyond f64), only
// where a path leads.
#ifndef JSON_H
#define JSON_H

#include "buf.h"
#include "path.h"

typedef void (*string_fn)(void *ctx, str text);

// Walks the document `value` (any bytes) along `paths`. On failure appends the record's
// dead-letter reason to `err` (`not valid UTF-8: ...`, `not valid JSON: ...` or
// `not a JSON object: ...`) and returns false.
bool json_walk(const uint8_t *value, size_t len, const path_list *paths, string_fn f, void *ctx,
               buf *err);

#endif
