#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "unicode.h"

bool config_check(config c, const char *const *known, size_t n_known, buf *err) {
    for (size_t i = 0; i < c.n; i++) {
        str key = c.pairs[i].key;
        bool ok = false;
        for (size_t k = 0; k < n_known && !ok; k++) ok = str_eq(key, str_of(known[k]));
        if (!ok) {
            buf_puts(err, "unknown config key `");
            buf_put_str(err, key);
            buf_puts(err, "` (known keys: ");
            for (size_t k = 0; k < n_known; k++) {
                if (k) buf_puts(err, ", ");
                buf_puts(err, known[k]);
            }
            buf_putc(err, ')');
            return false;
        }
        for (size_t j = 0; j < i; j++) {
            if (str_eq(key, c.pairs[j].key)) {
                buf_puts(err, "config key `");
                buf_put_str(err, key);
                buf_puts(err, "` is given more than once");
                return false;
            }
        }
    }
    return true;
}

const str *config_get(config c, const char *key) {
    for (size_t i = 0; i < c.n; i++)
        if (str_eq(c.pairs[i].key, str_of(key))) return &c.pairs[i].value;
    return NULL;
}

static bool ascii_ieq(str s, const char *word) {
    size_t n = strlen(word);
    if (s.len != n) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s.ptr[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c + 32);
        if (c != word[i]) return false;
    }
    return true;
}

bool config_bool(config c, const char *key, bool dflt, bool *out, buf *err) {
    const str *raw = config_get(c, key);
    *out = dflt;
    if (!raw) return true;
    str v = trim(*raw);
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (ascii_ieq(v, yes[i]) || ascii_ieq(v, no[i])) {
            *out = ascii_ieq(v, yes[i]);
            return true;
        }
    }
    buf_puts(err, "config key `");
    buf_puts(err, key);
    buf_puts(err, "`: expected true or false, got ");
    rust_debug(err, *raw);
    return false;
}

static void push_item(str_list *list, const buf *cur) {
    str item = trim(buf_view(cur));
    if (item.len == 0) return;
    char *copy = xmalloc(item.len + 1);
    memcpy(copy, item.ptr, item.len);
    copy[item.len] = '\0';
    list->items = xrealloc(list->items, (list->n + 1) * sizeof(char *));
    list->items[list->n++] = copy;
}

bool config_list(config c, const char *key, str_list *out, buf *err) {
    *out = (str_list){0};
    const str *raw = config_get(c, key);
    if (!raw) return true;
    buf cur = {0};
    for (size_t i = 0; i < raw->len; i++) {
        char ch = raw->ptr[i];
        if (ch == '\\' && i + 1 < raw->len) {
            // `\,` is a comma inside an item; any other escape is kept for the item's reader.
            if (raw->ptr[i + 1] != ',') buf_putc(&cur, '\\');
            buf_putc(&cur, raw->ptr[++i]);
        } else if (ch == ',') {
            push_item(out, &cur);
            cur.len = 0;
        } else {
            buf_putc(&cur, ch);
        }
    }
    push_item(out, &cur);
    buf_free(&cur);
    if (out->n == 0) {
        buf_puts(err, "config key `");
        buf_puts(err, key);
        buf_puts(err, "`: the list is empty");
        return false;
    }
    return true;
}

void str_list_free(str_list *list) {
    for (size_t i = 0; i < list->n; i++) free(list->items[i]);
    free(list->items);
    *list = (str_list){0};
}

// As Rust's `{:?}` for str: quotes, backslashes and \t \r \n \0 escaped, characters that are not
// printable (by Rust's tables) as \u{hex}, everything else as it is.
void rust_debug(buf *out, str s) {
    static const char hex[] = "0123456789abcdef";
    buf_putc(out, '"');
    for (size_t i = 0; i < s.len;) {
        size_t start = i;
        uint32_t c = utf8_next(s.ptr, &i);
        switch (c) {
        case '"': buf_puts(out, "\\\""); break;
        case '\\': buf_puts(out, "\\\\"); break;
        case '\n': buf_puts(out, "\\n"); break;
        case '\r': buf_puts(out, "\\r"); break;
        case '\t': buf_puts(out, "\\t"); break;
        case 0: buf_puts(out, "\\0"); break;
        default:
            if (!is_debug_escaped(c)) {
                buf_put(out, s.ptr + start, i - start);
                break;
            }
            buf_puts(out, "\\u{");
            int shift = 20;
            while (shift > 0 && (c >> shift) == 0) shift -= 4;
            for (; shift >= 0; shift -= 4) buf_putc(out, hex[c >> shift & 0xF]);
            buf_putc(out, '}');
        }
    }
    buf_putc(out, '"');
}
