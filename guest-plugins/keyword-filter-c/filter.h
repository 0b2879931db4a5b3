// The keyword filter: keeps the tweets that mention a keyword (or, with `invert`, drops them).
#ifndef FILTER_H
#define FILTER_H

#include "buf.h"
#include "config.h"
#include "matcher.h"
#include "path.h"

typedef struct {
    matcher matcher;
    path_list paths;   // where to search
    bool custom_fields; // `fields` was given (else the default tweet text fields)
    bool case_sensitive, invert;
} filter;

// Builds the filter from its config; on error appends the message to err.
bool filter_init(filter *f, config c, buf *err);
void filter_free(filter *f);
// The one-line description logged at init.
void filter_summary(const filter *f, buf *out);

typedef enum { KEEP, DROP, FAIL } verdict;

// The verdict for one record value; FAIL appends the reason to `reason`.
verdict filter_apply(filter *f, const uint8_t *value, size_t len, buf *reason);

#endif
