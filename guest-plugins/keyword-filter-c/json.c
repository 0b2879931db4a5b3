#include "json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// serde_json's nesting limit where it deserializes a value (not where it skips one).
#define MAX_DEPTH 128

typedef struct {
    const char *s;
    size_t len, i;
    const path_list *paths;
    string_fn f;
    void *ctx;
    buf text;        // the string being decoded
    buf stack;       // open containers while skipping
    int depth_left;
    buf *err;
} parser;

// Rust's Utf8Error wording for the first invalid sequence, or false if the bytes are UTF-8.
static bool utf8_error(const uint8_t *b, size_t n, buf *err) {
    for (size_t i = 0; i < n;) {
        uint8_t first = b[i];
        if (first < 0x80) {
            i++;
            continue;
        }
        size_t width = first >= 0xC2 && first <= 0xDF   ? 2
                       : first >= 0xE0 && first <= 0xEF ? 3
                       : first >= 0xF0 && first <= 0xF4 ? 4
                                                        : 0;
        size_t bad = width ? 0 : 1; // the length of the invalid sequence, if any
        for (size_t k = 1; k < width && !bad; k++) {
            if (i + k >= n) {
                buf_puts(err, "not valid UTF-8: incomplete utf-8 byte sequence from index ");
                buf_put_uint(err, i);
                return true;
            }
            uint8_t lo = 0x80, hi = 0xBF;
            if (k == 1) {
                if (first == 0xE0) lo = 0xA0;
                else if (first == 0xED) hi = 0x9F;
                else if (first == 0xF0) lo = 0x90;
                else if (first == 0xF4) hi = 0x8F;
            }
            if (b[i + k] < lo || b[i + k] > hi) bad = k;
        }
        if (bad) {
            buf_puts(err, "not valid UTF-8: invalid utf-8 sequence of ");
            buf_put_uint(err, bad);
            buf_puts(err, " bytes from index ");
            buf_put_uint(err, i);
            return true;
        }
        i += width;
    }
    return false;
}

static bool fail(parser *p, const char *what) {
    buf_puts(p->err, "not valid JSON: ");
    buf_puts(p->err, what);
    buf_puts(p->err, " at position ");
    buf_put_uint(p->err, p->i);
    return false;
}

static void ws(parser *p) {
    while (p->i < p->len) {
        char c = p->s[p->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
        p->i++;
    }
}

static int peek(parser *p) { return p->i < p->len ? (unsigned char)p->s[p->i] : -1; }

static bool word(parser *p, const char *w) {
    size_t n = strlen(w);
    if (p->len - p->i < n || memcmp(p->s + p->i, w, n) != 0) return fail(p, "expected ident");
    p->i += n;
    return true;
}

static bool is_digit(int c) { return c >= '0' && c <= '9'; }

static bool digits(parser *p) {
    if (!is_digit(peek(p))) return fail(p, "invalid number");
    while (is_digit(peek(p))) p->i++;
    return true;
}

// A number's syntax; with `check`, also that it is within f64's range, as serde_json decodes it.
static bool number(parser *p, bool check) {
    size_t start = p->i;
    if (peek(p) == '-') p->i++;
    if (peek(p) == '0') p->i++;
    else if (is_digit(peek(p))) digits(p);
    else return fail(p, "expected value");
    if (peek(p) == '.') {
        p->i++;
        if (!digits(p)) return false;
    }
    if (peek(p) == 'e' || peek(p) == 'E') {
        p->i++;
        if (peek(p) == '+' || peek(p) == '-') p->i++;
        if (!digits(p)) return false;
    }
    if (check) {
        // strtod needs a terminated copy; numbers are short, and checked only on the paths.
        size_t n = p->i - start;
        char *copy = xmalloc(n + 1);
        memcpy(copy, p->s + start, n);
        copy[n] = '\0';
        bool inf = isinf(strtod(copy, NULL));
        free(copy);
        if (inf) return fail(p, "number out of range");
    }
    return true;
}

static int hex_digit(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// The four hex digits at s[at], or -1.
static int32_t hex4(const parser *p, size_t at) {
    if (at > p->len || p->len - at < 4) return -1;
    int32_t v = 0;
    for (size_t k = 0; k < 4; k++) {
        int d = hex_digit((unsigned char)p->s[at + k]);
        if (d < 0) return -1;
        v = v << 4 | d;
    }
    return v;
}

// A string, the opening quote next. With `decode`, its text goes to p->text and a lone
// surrogate escape fails it (serde_json checks surrogates only in strings it decodes).
static bool string(parser *p, bool decode) {
    p->i++;
    p->text.len = 0;
    for (;;) {
        size_t start = p->i;
        while (p->i < p->len) {
            unsigned char c = (unsigned char)p->s[p->i];
            if (c == '"' || c == '\\' || c < 0x20) break;
            p->i++;
        }
        if (decode) buf_put(&p->text, p->s + start, p->i - start);
        int c = peek(p);
        if (c < 0) return fail(p, "EOF while parsing a string");
        if (c == '"') {
            p->i++;
            return true;
        }
        if (c < 0x20) return fail(p, "control character found while parsing a string");
        if (p->i + 1 >= p->len) return fail(p, "EOF while parsing a string");
        char e = p->s[p->i + 1];
        p->i += 2;
        static const char escapes[] = "\"\\/bfnrt", decoded[] = "\"\\/\b\f\n\r\t";
        const char *plain = e ? strchr(escapes, e) : NULL;
        if (plain) {
            if (decode) buf_putc(&p->text, decoded[plain - escapes]);
            continue;
        }
        if (e != 'u') return fail(p, "invalid escape");
        int32_t cp = hex4(p, p->i);
        if (cp < 0) return fail(p, "invalid escape");
        p->i += 4;
        if (!decode) continue;
        if (cp >= 0xD800 && cp <= 0xDBFF && p->len - p->i >= 6 && p->s[p->i] == '\\' &&
            p->s[p->i + 1] == 'u') {
            int32_t low = hex4(p, p->i + 2);
            if (low >= 0xDC00 && low <= 0xDFFF) {
                p->i += 6;
                uint32_t pair = (uint32_t)(((cp - 0xD800) << 10) + (low - 0xDC00)) + 0x10000;
                buf_put_rune(&p->text, pair);
                continue;
            }
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) return fail(p, "lone surrogate in hex escape");
        buf_put_rune(&p->text, (uint32_t)cp);
    }
}

// After an object's `{` or `,`: a key (checked, not decoded) and its colon.
static bool skip_key(parser *p) {
    ws(p);
    if (peek(p) != '"') return fail(p, "key must be a string");
    if (!string(p, false)) return false;
    ws(p);
    if (peek(p) != ':') return fail(p, "expected `:`");
    p->i++;
    return true;
}

// A value that no path reaches: syntax only, and iterative, because serde_json skips a value
// of any depth. p->stack holds the open containers' brackets.
static bool skip(parser *p) {
    size_t base = p->stack.len;
    for (;;) {
        ws(p);
        int c = peek(p);
        if (c == '{' || c == '[') {
            p->i++;
            ws(p);
            if (peek(p) == (c == '{' ? '}' : ']')) {
                p->i++; // empty: a complete value
            } else {
                buf_putc(&p->stack, (char)c);
                if (c == '{' && !skip_key(p)) return false;
                continue;
            }
        } else if (c == '"') {
            if (!string(p, false)) return false;
        } else if (c == 't' || c == 'f' || c == 'n') {
            if (!word(p, c == 't' ? "true" : c == 'f' ? "false" : "null")) return false;
        } else if (c < 0) {
            return fail(p, "EOF while parsing a value");
        } else if (!number(p, false)) {
            return false;
        }
        // A value is complete: close what it completes, up to the next value.
        for (;;) {
            if (p->stack.len == base) return true;
            bool in_object = p->stack.ptr[p->stack.len - 1] == '{';
            ws(p);
            int next = peek(p);
            if (next == (in_object ? '}' : ']')) {
                p->i++;
                p->stack.len--;
                continue;
            }
            if (next == ',') {
                p->i++;
                if (in_object && !skip_key(p)) return false;
                break;
            }
            if (next < 0)
                return fail(p, in_object ? "EOF while parsing an object" : "EOF while parsing a list");
            return fail(p, in_object ? "expected `,` or `}`" : "expected `,` or `]`");
        }
    }
}

static bool value(parser *p, walk_state s);

// Entering an object or array that is deserialized (and so counts towards the nesting limit).
static bool enter(parser *p) {
    p->i++;
    if (--p->depth_left == 0) return fail(p, "recursion limit exceeded");
    return true;
}

// An object's members, after the `{`; `alive` is scratch for the members' path states.
static bool members(parser *p, walk_state s, bool *alive) {
    ws(p);
    if (peek(p) == '}') {
        p->i++;
        return true;
    }
    for (;;) {
        ws(p);
        if (peek(p) != '"') return fail(p, "key must be a string");
        // serde_json decodes the key of every member of an object it visits (and can fail on
        // it there), even where the key chooses nothing.
        if (!string(p, true)) return false;
        walk_state next = s;
        if (s.kind == WALK_SOME) next = path_child(p->paths, s, buf_view(&p->text), alive);
        ws(p);
        if (peek(p) != ':') return fail(p, "expected `:`");
        p->i++;
        if (!(next.kind == WALK_NONE ? skip(p) : value(p, next))) return false;
        ws(p);
        int c = peek(p);
        if (c == '}') {
            p->i++;
            return true;
        }
        if (c < 0) return fail(p, "EOF while parsing an object");
        if (c != ',') return fail(p, "expected `,` or `}`");
        p->i++;
    }
}

static bool object(parser *p, walk_state s) {
    if (!enter(p)) return false;
    bool *alive = s.kind == WALK_SOME ? xmalloc(p->paths->n * sizeof(bool)) : NULL;
    bool ok = members(p, s, alive);
    free(alive);
    p->depth_left++;
    return ok;
}

// An array's elements, after the `[`: they are where the array is (arrays are transparent).
static bool elements(parser *p, walk_state s) {
    ws(p);
    if (peek(p) == ']') {
        p->i++;
        return true;
    }
    for (;;) {
        if (!value(p, s)) return false;
        ws(p);
        int c = peek(p);
        if (c == ']') {
            p->i++;
            return true;
        }
        if (c < 0) return fail(p, "EOF while parsing a list");
        if (c != ',') return fail(p, "expected `,` or `]`");
        p->i++;
    }
}

static bool array(parser *p, walk_state s) {
    if (!enter(p)) return false;
    bool ok = elements(p, s);
    p->depth_left++;
    return ok;
}

// A value some path reaches (s is WALK_SOME or WALK_ALL): decoded and checked.
static bool value(parser *p, walk_state s) {
    ws(p);
    switch (peek(p)) {
    case -1: return fail(p, "EOF while parsing a value");
    case '{': return object(p, s);
    case '[': return array(p, s);
    case '"':
        if (!string(p, true)) return false;
        if (s.kind == WALK_ALL) p->f(p->ctx, buf_view(&p->text));
        return true;
    case 't': return word(p, "true");
    case 'f': return word(p, "false");
    case 'n': return word(p, "null");
    default: return number(p, true);
    }
}

bool json_walk(const uint8_t *bytes, size_t len, const path_list *paths, string_fn f, void *ctx,
               buf *err) {
    if (utf8_error(bytes, len, err)) return false;
    parser p = {.s = (const char *)bytes, .len = len, .paths = paths, .f = f, .ctx = ctx,
                .depth_left = MAX_DEPTH, .err = err};
    ws(&p);
    int first = peek(&p);
    bool ok;
    if (first == '{') {
        bool *alive = xmalloc(paths->n * sizeof(bool));
        for (size_t i = 0; i < paths->n; i++) alive[i] = true;
        ok = value(&p, (walk_state){WALK_SOME, alive, 0});
        free(alive);
    } else {
        ok = skip(&p);
    }
    if (ok) {
        ws(&p);
        if (p.i != p.len) ok = fail(&p, "trailing characters");
    }
    if (ok && first != '{') {
        buf_puts(err, "not a JSON object: the document is ");
        buf_puts(err, first == '[' ? "an array"
                      : first == '"' ? "a string"
                      : first == 't' || first == 'f' ? "a boolean"
                      : first == 'n' ? "null"
                                     : "a number");
        ok = false;
    }
    buf_free(&p.text);
    buf_free(&p.stack);
    return ok;
}
