#include "buf.h"

#include <stdlib.h>
#include <string.h>

str str_of(const char *cstr) { return (str){cstr, strlen(cstr)}; }

bool str_eq(str a, str b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) abort();
    return p;
}

void *xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p) abort();
    return p;
}

static void reserve(buf *b, size_t extra) {
    if (b->cap - b->len >= extra) return;
    size_t cap = b->cap ? b->cap * 2 : 64;
    while (cap - b->len < extra) cap *= 2;
    b->ptr = xrealloc(b->ptr, cap);
    b->cap = cap;
}

void buf_put(buf *b, const void *bytes, size_t n) {
    if (n == 0) return;
    reserve(b, n);
    memcpy(b->ptr + b->len, bytes, n);
    b->len += n;
}

void buf_puts(buf *b, const char *cstr) { buf_put(b, cstr, strlen(cstr)); }

void buf_putc(buf *b, char c) { buf_put(b, &c, 1); }

void buf_put_str(buf *b, str s) { buf_put(b, s.ptr, s.len); }

void buf_put_uint(buf *b, size_t v) {
    char digits[24];
    size_t n = 0;
    do {
        digits[sizeof digits - ++n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    buf_put(b, digits + sizeof digits - n, n);
}

void buf_put_rune(buf *b, uint32_t cp) {
    unsigned char out[4];
    size_t n;
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | cp >> 6);
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | cp >> 12);
        out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        out[0] = (unsigned char)(0xF0 | cp >> 18);
        out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        out[3] = (unsigned char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buf_put(b, out, n);
}

str buf_view(const buf *b) { return (str){b->ptr, b->len}; }

void buf_free(buf *b) {
    free(b->ptr);
    *b = (buf){0};
}
