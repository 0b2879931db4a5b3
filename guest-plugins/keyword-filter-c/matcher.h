// Keyword matching: substring search with optional case folding and whole-word boundaries,
// as guest-plugins/transforms/src/matcher.rs does it.
#ifndef MATCHER_H
#define MATCHER_H

#include "buf.h"
#include "config.h"

typedef struct {
    char *original;  // as configured
    buf needle;      // what is searched for: the folded keyword when case-insensitive
    bool needs_folding; // search the folded text (the keyword has non-ASCII cased letters)
    bool ascii_ci;   // compare ASCII letters case-insensitively on the raw text
    bool check_left, check_right; // whole-word boundary to check on each side
} keyword;

typedef struct {
    keyword *keywords;
    size_t n;
    bool whole_word;
    buf folded; // the current text, folded (scratch)
} matcher;

// Takes the keywords (duplicates, possibly differing only in case, are dropped).
void matcher_init(matcher *m, const str_list *words, bool case_sensitive, bool whole_word);
void matcher_free(matcher *m);
// Whether any keyword occurs in `text` (valid UTF-8).
bool matcher_any(matcher *m, str text);
// Appends e.g. `2 keyword(s) [bts, 방탄소년단], whole_word=true`.
void matcher_describe(const matcher *m, buf *out);

#endif
