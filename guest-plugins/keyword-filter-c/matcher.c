// Case-insensitive matching compares Unicode lowercase forms. Keywords made only of ASCII and
// caseless characters (Hangul, CJK, Arabic, emoji, ...) are matched on the raw UTF-8 bytes,
// ASCII letters compared without case; only keywords with non-ASCII cased letters (`Café`)
// fold the text first. The search order follows the Rust matcher, whose candidates decide
// which boundary checks run: every position in the ASCII case-insensitive scan, and
// non-overlapping occurrences (memchr's memmem::find_iter) otherwise.
#include "matcher.h"

#include <stdlib.h>
#include <string.h>

#include "unicode.h"

void matcher_init(matcher *m, const str_list *words, bool case_sensitive, bool whole_word) {
    *m = (matcher){.whole_word = whole_word};
    for (size_t w = 0; w < words->n; w++) {
        str original = str_of(words->items[w]);
        keyword k = {0};
        if (case_sensitive) {
            buf_put_str(&k.needle, original);
        } else {
            for (size_t i = 0; i < original.len && !k.needs_folding;) {
                uint32_t c = utf8_next(original.ptr, &i);
                k.needs_folding = c >= 0x80 && !is_caseless(c);
            }
            fold(&k.needle, original);
        }
        bool duplicate = k.needle.len == 0;
        for (size_t i = 0; i < m->n && !duplicate; i++)
            duplicate = str_eq(buf_view(&m->keywords[i].needle), buf_view(&k.needle));
        if (duplicate) {
            buf_free(&k.needle);
            continue;
        }
        k.original = xmalloc(original.len + 1);
        memcpy(k.original, original.ptr, original.len + 1);
        k.ascii_ci = !case_sensitive && !k.needs_folding;
        size_t at = 0;
        k.check_left = whole_word && is_bounded(utf8_next(k.needle.ptr, &at));
        k.check_right = whole_word && is_bounded(utf8_prev(k.needle.ptr, k.needle.len));
        m->keywords = xrealloc(m->keywords, (m->n + 1) * sizeof(keyword));
        m->keywords[m->n++] = k;
    }
}

void matcher_free(matcher *m) {
    for (size_t i = 0; i < m->n; i++) {
        free(m->keywords[i].original);
        buf_free(&m->keywords[i].needle);
    }
    free(m->keywords);
    buf_free(&m->folded);
    *m = (matcher){0};
}

static char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c; }

// The first position at or after `from` where the needle occurs.
static const char *find(const keyword *k, const char *from, const char *end) {
    size_t n = k->needle.len;
    for (; (size_t)(end - from) >= n; from++) {
        if (k->ascii_ci) {
            // UTF-8 lead and continuation bytes are never ASCII, so a byte-wise comparison
            // only matches at character boundaries and compares caseless characters exactly.
            size_t j = 0;
            while (j < n && ascii_lower(from[j]) == k->needle.ptr[j]) j++;
            if (j == n) return from;
        } else {
            const char *hit = memchr(from, k->needle.ptr[0], (size_t)(end - from) - n + 1);
            if (!hit) return NULL;
            from = hit;
            if (memcmp(from, k->needle.ptr, n) == 0) return from;
        }
    }
    return NULL;
}

static bool boundaries_ok(const keyword *k, str text, size_t start) {
    if (k->check_left && start > 0 && is_bounded(utf8_prev(text.ptr, start))) return false;
    size_t end = start + k->needle.len;
    if (k->check_right && end < text.len) {
        size_t at = end;
        if (is_bounded(utf8_next(text.ptr, &at))) return false;
    }
    return true;
}

static bool keyword_in(const keyword *k, str text) {
    const char *end = text.ptr + text.len;
    for (const char *at = text.ptr; (at = find(k, at, end)) != NULL;) {
        if (boundaries_ok(k, text, (size_t)(at - text.ptr))) return true;
        at += k->ascii_ci ? 1 : k->needle.len;
    }
    return false;
}

bool matcher_any(matcher *m, str text) {
    bool folded = false;
    for (size_t i = 0; i < m->n; i++) {
        const keyword *k = &m->keywords[i];
        str hay = text;
        if (k->needs_folding) {
            if (!folded) {
                m->folded.len = 0;
                fold(&m->folded, text);
                folded = true;
            }
            hay = buf_view(&m->folded);
        }
        if (keyword_in(k, hay)) return true;
    }
    return false;
}

void matcher_describe(const matcher *m, buf *out) {
    buf_put_uint(out, m->n);
    buf_puts(out, " keyword(s) [");
    for (size_t i = 0; i < m->n; i++) {
        if (i) buf_puts(out, ", ");
        buf_puts(out, m->keywords[i].original);
    }
    buf_puts(out, "], whole_word=");
    buf_puts(out, m->whole_word ? "true" : "false");
}
