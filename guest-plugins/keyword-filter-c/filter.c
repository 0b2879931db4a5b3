// A port of the Rust KeywordFilter (guest-plugins/transforms/src/keyword.rs), held to the same
// test vectors (guest-plugins/vectors).
#include "filter.h"

#include <string.h>

#include "json.h"

static const char *const known_keys[] = {"keywords", "fields", "case_sensitive", "whole_word",
                                         "invert"};

// Rust's unescape_plain: `\\` in a keyword is one backslash.
static void unescape_plain(char *s) {
    char *out = s;
    for (char *in = s; *in; in++) {
        if (in[0] == '\\' && in[1] == '\\') in++;
        *out++ = *in;
    }
    *out = '\0';
}

bool filter_init(filter *f, config c, buf *err) {
    *f = (filter){0};
    bool whole_word, ok = false;
    str_list fields = {0}, keywords = {0};
    if (!config_check(c, known_keys, sizeof known_keys / sizeof *known_keys, err) ||
        !config_bool(c, "case_sensitive", false, &f->case_sensitive, err) ||
        !config_bool(c, "whole_word", true, &whole_word, err) ||
        !config_list(c, "fields", &fields, err))
        goto done;
    for (size_t i = 0; i < fields.n; i++) {
        path p;
        buf why = {0};
        if (!path_parse(str_of(fields.items[i]), &p, &why)) {
            buf_puts(err, "config key `fields`: ");
            buf_put_str(err, buf_view(&why));
            buf_free(&why);
            goto done;
        }
        path_list_push(&f->paths, p);
    }
    if (!config_list(c, "keywords", &keywords, err)) goto done;
    if (keywords.n == 0) {
        buf_puts(err, config_get(c, "fields")
                          ? "config key `fields` needs `keywords`"
                          : "config key `keywords` is required: comma-separated keywords, e.g. "
                            "\"bts,방탄소년단\"");
        goto done;
    }
    for (size_t i = 0; i < keywords.n; i++) unescape_plain(keywords.items[i]);
    f->custom_fields = fields.n > 0;
    if (!f->custom_fields) default_paths(&f->paths);
    matcher_init(&f->matcher, &keywords, f->case_sensitive, whole_word);
    ok = config_bool(c, "invert", false, &f->invert, err);
done:
    str_list_free(&fields);
    str_list_free(&keywords);
    if (!ok) filter_free(f);
    return ok;
}

void filter_free(filter *f) {
    matcher_free(&f->matcher);
    path_list_free(&f->paths);
    *f = (filter){0};
}

void filter_summary(const filter *f, buf *out) {
    buf_puts(out, f->invert ? "drops" : "keeps only");
    buf_puts(out, " tweets matching ");
    matcher_describe(&f->matcher, out);
    buf_puts(out, ", case_sensitive=");
    buf_puts(out, f->case_sensitive ? "true" : "false");
    buf_puts(out, ", in ");
    if (!f->custom_fields) {
        buf_puts(out, "the default tweet text fields");
        return;
    }
    for (size_t i = 0; i < f->paths.n; i++) {
        if (i) buf_puts(out, ", ");
        path_write(out, &f->paths.items[i]);
    }
}

typedef struct {
    matcher *matcher;
    bool found;
} search;

// Every string at a searched path; once one matches, the rest are only read for errors.
static void on_string(void *ctx, str text) {
    search *s = ctx;
    if (!s->found) s->found = matcher_any(s->matcher, text);
}

verdict filter_apply(filter *f, const uint8_t *value, size_t len, buf *reason) {
    search s = {&f->matcher, false};
    if (!json_walk(value, len, &f->paths, on_string, &s, reason)) return FAIL;
    return s.found != f->invert ? KEEP : DROP;
}
