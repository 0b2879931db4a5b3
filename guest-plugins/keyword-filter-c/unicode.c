#include "unicode.h"

#include "unicode_tables.h"

uint32_t utf8_next(const char *s, size_t *i) {
    const unsigned char *u = (const unsigned char *)s + *i;
    if (u[0] < 0x80) {
        *i += 1;
        return u[0];
    }
    if (u[0] < 0xE0) {
        *i += 2;
        return (uint32_t)(u[0] & 0x1F) << 6 | (u[1] & 0x3F);
    }
    if (u[0] < 0xF0) {
        *i += 3;
        return (uint32_t)(u[0] & 0x0F) << 12 | (uint32_t)(u[1] & 0x3F) << 6 | (u[2] & 0x3F);
    }
    *i += 4;
    return (uint32_t)(u[0] & 0x07) << 18 | (uint32_t)(u[1] & 0x3F) << 12 |
           (uint32_t)(u[2] & 0x3F) << 6 | (u[3] & 0x3F);
}

uint32_t utf8_prev(const char *s, size_t end) {
    size_t start = end - 1;
    while (start > 0 && ((unsigned char)s[start] & 0xC0) == 0x80) start--;
    return utf8_next(s, &start);
}

bool is_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

str trim(str s) {
    size_t start = 0, end = s.len;
    while (start < end) {
        size_t next = start;
        if (!is_space(utf8_next(s.ptr, &next))) break;
        start = next;
    }
    while (end > start) {
        size_t prev = end - 1;
        while (((unsigned char)s.ptr[prev] & 0xC0) == 0x80) prev--;
        size_t at = prev;
        if (!is_space(utf8_next(s.ptr, &at))) break;
        end = prev;
    }
    return (str){s.ptr + start, end - start};
}

// Whether c falls in one of the flattened half-open ranges: the count of bounds <= c is odd.
static bool in_ranges(const uint32_t *ranges, size_t len, uint32_t c) {
    size_t lo = 0, hi = len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ranges[mid] <= c) lo = mid + 1;
        else hi = mid;
    }
    return lo % 2 == 1;
}

typedef struct {
    uint32_t lo, hi;
} span;

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

// Scripts that do not separate words with spaces: a keyword is a substring of the surrounding
// run of letters there (Korean particles, Japanese and Chinese text, Thai, ...).
static const span unspaced[] = {
    {0x0E00, 0x0EFF},   {0x1000, 0x109F}, {0x1100, 0x11FF}, {0x1780, 0x17FF}, {0x3000, 0x303F},
    {0x3040, 0x30FF},   {0x3130, 0x318F}, {0x31F0, 0x31FF}, {0x3400, 0x4DBF}, {0x4E00, 0x9FFF},
    {0xA960, 0xA97F},   {0xAC00, 0xD7FF}, {0xF900, 0xFAFF}, {0xFF66, 0xFFDC},
    {0x20000, 0x3FFFF},
};

// Combining marks that decorate a letter without changing the word (Unicode counts some as
// alphabetic): Latin combining accents, Hebrew points, Arabic harakat.
static const span diacritic[] = {
    {0x0300, 0x036F}, {0x0591, 0x05C7}, {0x0610, 0x061A}, {0x064B, 0x065F}, {0x0670, 0x0670},
    {0x06D6, 0x06ED}, {0x1AB0, 0x1AFF}, {0x1DC0, 0x1DFF}, {0x20D0, 0x20FF}, {0xFE20, 0xFE2F},
};

static bool in_spans(const span *spans, size_t n, uint32_t c) {
    for (size_t i = 0; i < n; i++)
        if (spans[i].lo <= c && c <= spans[i].hi) return true;
    return false;
}

bool is_bounded(uint32_t c) {
    if (c < 0x80)
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_';
    return in_ranges(alnum_ranges, alnum_ranges_len, c) &&
           !in_spans(unspaced, COUNT(unspaced), c) && !in_spans(diacritic, COUNT(diacritic), c);
}

bool is_caseless(uint32_t c) {
    if (c < 0x80) return !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'));
    return !in_ranges(cased_ranges, cased_ranges_len, c);
}

bool is_debug_escaped(uint32_t c) {
    if (c < 0x80) return c < 0x20 || c == 0x7F;
    return in_ranges(debug_escaped_ranges, debug_escaped_ranges_len, c);
}

// The entry of lower_map for c, or NULL.
static const uint32_t *lower_entry(uint32_t c) {
    size_t lo = 0, hi = lower_map_len / 3;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t key = lower_map[mid * 3];
        if (key == c) return &lower_map[mid * 3];
        if (key < c) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

// Final sigma folds to sigma, so that "ΟΔΟΣ" and "οδος" compare equal whichever form was typed.
static uint32_t sigma(uint32_t c) { return c == 0x3C2 ? 0x3C3 : c; }

void fold(buf *out, str s) {
    for (size_t i = 0; i < s.len;) {
        unsigned char b = (unsigned char)s.ptr[i];
        if (b < 0x80) {
            buf_putc(out, (char)(b >= 'A' && b <= 'Z' ? b + 32 : b));
            i++;
            continue;
        }
        uint32_t c = utf8_next(s.ptr, &i);
        const uint32_t *e = lower_entry(c);
        if (!e) {
            buf_put_rune(out, sigma(c));
            continue;
        }
        buf_put_rune(out, sigma(e[1]));
        if (e[2]) buf_put_rune(out, sigma(e[2]));
    }
}
