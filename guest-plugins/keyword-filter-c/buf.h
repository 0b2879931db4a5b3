// Growable byte buffers and borrowed byte strings.
#ifndef BUF_H
#define BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// A view of bytes owned elsewhere (UTF-8 text unless said otherwise).
typedef struct {
    const char *ptr;
    size_t len;
} str;

// Bytes owned by the buffer. A zeroed buf is empty and ready to use.
typedef struct {
    char *ptr;
    size_t len, cap;
} buf;

str str_of(const char *cstr);
bool str_eq(str a, str b);

// Allocation failure traps: a plugin has nothing better to do than let the host see it.
void *xmalloc(size_t n);
void *xrealloc(void *p, size_t n);

void buf_put(buf *b, const void *bytes, size_t n);
void buf_puts(buf *b, const char *cstr);
void buf_putc(buf *b, char c);
void buf_put_str(buf *b, str s);
void buf_put_uint(buf *b, size_t v);
void buf_put_rune(buf *b, uint32_t cp);
str buf_view(const buf *b);
void buf_free(buf *b);

#endif
