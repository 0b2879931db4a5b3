// {{name}}: a Sluice transform plugin in C. It keeps the records whose value contains the
// configured `needle` and drops the others; a value that is not UTF-8 is dead-lettered.
//
// transform.c and transform.h are the bindings `wit-bindgen c` generates from
// wit/transform.wit; leave them as they are. The host hands each export its arguments (free
// them) and frees what an export returns after copying it, so return memory from malloc.
// wasi-libc's memory and string functions import nothing; stdio (printf, snprintf) imports
// WASI, which the plugin would then need granted.
#define _GNU_SOURCE // memmem
#include <stdlib.h>
#include <string.h>

#include "transform.h"

// `wit-bindgen c` pairs transform.c with an object file that carries the WIT world and defines
// this symbol; `host plugin componentize` embeds the world instead.
void __component_type_object_force_link_transform(void) {}

static char *needle;
static size_t needle_len;

static bool is(const transform_string_t *s, const char *text) {
    return s->len == strlen(text) && memcmp(s->ptr, text, s->len) == 0;
}

// A malloc'd string for the host: prefix, `len` bytes of `middle`, suffix.
static void set_message(transform_string_t *out, const char *prefix, const void *middle, size_t len,
                        const char *suffix) {
    size_t a = strlen(prefix), c = strlen(suffix);
    out->len = a + len + c;
    out->ptr = malloc(out->len);
    memcpy(out->ptr, prefix, a);
    memcpy(out->ptr + a, middle, len);
    memcpy(out->ptr + a + len, suffix, c);
}

// Called once per instance with the `config` table of pipeline.toml; false, with `err` set,
// rejects it.
bool exports_transform_init(transform_list_tuple2_string_string_t *config, transform_string_t *err) {
    bool ok = true;
    free(needle);
    needle = NULL;
    for (size_t i = 0; ok && i < config->len; i++) {
        transform_string_t *key = &config->ptr[i].f0, *value = &config->ptr[i].f1;
        if (!is(key, "needle")) {
            set_message(err, "unknown config key `", key->ptr, key->len, "` (known keys: needle)");
            ok = false;
            continue;
        }
        free(needle);
        needle = malloc(value->len + 1);
        memcpy(needle, value->ptr, value->len);
        needle[value->len] = '\0';
        needle_len = value->len;
    }
    if (ok && needle == NULL) {
        transform_string_dup(err, "config key `needle` is required");
        ok = false;
    }
    if (ok) {
        transform_string_t message;
        set_message(&message, "keeping records that contain \"", needle, needle_len, "\"");
        sluice_transform_log_log(SLUICE_TRANSFORM_LOG_LEVEL_INFO, &message);
        transform_string_free(&message);
    }
    transform_list_tuple2_string_string_free(config);
    return ok;
}

// Well-formed UTF-8: no stray continuation bytes, overlong forms, surrogates or code points
// past U+10FFFF.
static bool valid_utf8(const uint8_t *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n = c < 0x80 ? 0 : c >= 0xC2 && c <= 0xDF ? 1 : c >= 0xE0 && c <= 0xEF ? 2 : c >= 0xF0 && c <= 0xF4 ? 3 : 4;
        if (n == 4 || len - i <= n) {
            return false; // not a lead byte, or the sequence is cut short
        }
        uint8_t lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80;
        uint8_t hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
        for (size_t k = 1; k <= n; k++) {
            uint8_t b = s[i + k];
            if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) {
                return false;
            }
        }
        i += n + 1;
    }
    return true;
}

// One outcome per record, in order: KEEP, DROP, SET_VALUE (val.set_value, the new value),
// REPLACE, EXPAND or FAIL (val.fail, the reason the host dead-letters the record with).
void exports_transform_process(transform_list_record_t *batch, transform_list_outcome_t *ret) {
    ret->len = batch->len;
    ret->ptr = batch->len ? calloc(batch->len, sizeof *ret->ptr) : NULL;
    for (size_t i = 0; i < batch->len; i++) {
        transform_list_u8_t *value = &batch->ptr[i].value;
        transform_outcome_t *out = &ret->ptr[i];
        if (!valid_utf8(value->ptr, value->len)) {
            out->tag = SLUICE_TRANSFORM_TYPES_OUTCOME_FAIL;
            transform_string_dup(&out->val.fail, "not valid UTF-8");
        } else if (memmem(value->ptr, value->len, needle, needle_len)) {
            out->tag = SLUICE_TRANSFORM_TYPES_OUTCOME_KEEP;
        } else {
            out->tag = SLUICE_TRANSFORM_TYPES_OUTCOME_DROP;
        }
    }
    transform_list_record_free(batch);
}
