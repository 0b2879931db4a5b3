// The plugin's config: key/value pairs from pipeline.toml, read with the Rust library's rules
// and error messages (guest-plugins/transforms/src/config.rs).
#ifndef CONFIG_H
#define CONFIG_H

#include "buf.h"

typedef struct {
    str key, value;
} pair;

typedef struct {
    const pair *pairs;
    size_t n;
} config;

typedef struct {
    char **items; // NUL-terminated copies
    size_t n;
} str_list;

// Refuses unknown keys (naming the known ones) and keys given twice.
bool config_check(config c, const char *const *known, size_t n_known, buf *err);
// The value of `key`, or NULL.
const str *config_get(config c, const char *key);
// true/false, yes/no, on/off, 1/0 (trimmed, any ASCII case); `dflt` when absent.
bool config_bool(config c, const char *key, bool dflt, bool *out, buf *err);
// A comma-separated list (`\,` for a comma in an item), items trimmed, empty ones dropped.
// An absent key gives an empty list; a present one with no items is an error.
bool config_list(config c, const char *key, str_list *out, buf *err);
void str_list_free(str_list *list);

// Appends `s` quoted as Rust's `{:?}` writes a string.
void rust_debug(buf *out, str s);

#endif
