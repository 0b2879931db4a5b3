#include "path.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "unicode.h"

static void push_segment(path *p, const buf *key, bool star) {
    p->segs = xrealloc(p->segs, (p->n + 1) * sizeof(segment));
    segment *s = &p->segs[p->n++];
    if (star) {
        *s = (segment){NULL, 0};
        return;
    }
    s->key = xmalloc(key->len);
    if (key->len) memcpy(s->key, key->ptr, key->len);
    s->len = key->len;
}

static void path_free(path *p) {
    for (size_t i = 0; i < p->n; i++) free(p->segs[i].key);
    free(p->segs);
    *p = (path){0};
}

static bool path_error(buf *err, str raw, const char *what) {
    buf_puts(err, "path ");
    rust_debug(err, raw);
    buf_puts(err, what);
    return false;
}

bool path_parse(str raw, path *out, buf *err) {
    *out = (path){0};
    str s = trim(raw);
    buf key = {0};
    bool escaped = false, ok = true;
    for (size_t i = 0;;) {
        if (i < s.len && s.ptr[i] == '\\') {
            i++;
            if (i >= s.len) {
                ok = path_error(err, raw, ": ends with a lone backslash");
                break;
            }
            size_t start = i;
            uint32_t c = utf8_next(s.ptr, &i);
            if (c == '.' || c == '*' || c == '\\' || c == ',') {
                buf_putc(&key, (char)c);
                escaped = true;
                continue;
            }
            ok = path_error(err, raw, ": unknown escape `\\");
            buf_put(err, s.ptr + start, i - start);
            buf_puts(err, "` (use \\. \\* or \\\\)");
            break;
        }
        if (i >= s.len || s.ptr[i] == '.') {
            if (key.len == 0) {
                ok = path_error(err, raw, ": empty segment");
                break;
            }
            push_segment(out, &key, key.len == 1 && key.ptr[0] == '*' && !escaped);
            key.len = 0;
            escaped = false;
            if (i >= s.len) break;
            i++;
            continue;
        }
        size_t start = i;
        utf8_next(s.ptr, &i);
        buf_put(&key, s.ptr + start, i - start);
    }
    buf_free(&key);
    if (!ok) path_free(out);
    return ok;
}

void path_write(buf *out, const path *p) {
    for (size_t i = 0; i < p->n; i++) {
        if (i) buf_putc(out, '.');
        const segment *seg = &p->segs[i];
        if (!seg->key) {
            buf_putc(out, '*');
            continue;
        }
        for (size_t j = 0; j < seg->len; j++) {
            char c = seg->key[j];
            if (c == '.' || c == '*' || c == '\\') buf_putc(out, '\\');
            buf_putc(out, c);
        }
    }
}

void path_list_push(path_list *list, path p) {
    list->items = xrealloc(list->items, (list->n + 1) * sizeof(path));
    list->items[list->n++] = p;
}

void path_list_free(path_list *list) {
    for (size_t i = 0; i < list->n; i++) path_free(&list->items[i]);
    free(list->items);
    *list = (path_list){0};
}

void default_paths(path_list *out) {
    static const char *const statuses[] = {"", "retweeted_status.", "quoted_status.",
                                           "retweeted_status.quoted_status."};
    static const char *const v1[] = {"text", "full_text", "extended_tweet.full_text",
                                     "entities.hashtags.text",
                                     "extended_tweet.entities.hashtags.text"};
    static const char *const v2[] = {"data.text",
                                     "data.note_tweet.text",
                                     "data.entities.hashtags.tag",
                                     "data.note_tweet.entities.hashtags.tag",
                                     "includes.tweets.text",
                                     "includes.tweets.note_tweet.text",
                                     "includes.tweets.entities.hashtags.tag"};
    buf raw = {0}, err = {0};
    path p;
    for (size_t s = 0; s < sizeof statuses / sizeof *statuses; s++) {
        for (size_t f = 0; f < sizeof v1 / sizeof *v1; f++) {
            raw.len = 0;
            buf_puts(&raw, statuses[s]);
            buf_puts(&raw, v1[f]);
            if (path_parse(buf_view(&raw), &p, &err)) path_list_push(out, p);
        }
    }
    for (size_t f = 0; f < sizeof v2 / sizeof *v2; f++)
        if (path_parse(str_of(v2[f]), &p, &err)) path_list_push(out, p);
    buf_free(&raw);
    buf_free(&err);
}

walk_state path_child(const path_list *paths, walk_state s, str key, bool *scratch) {
    bool any = false;
    for (size_t i = 0; i < paths->n; i++) {
        scratch[i] = false;
        if (!s.alive[i]) continue;
        const path *p = &paths->items[i];
        const segment *seg = &p->segs[s.depth];
        if (seg->key && !str_eq((str){seg->key, seg->len}, key)) continue;
        if (s.depth + 1 == p->n) return (walk_state){WALK_ALL, NULL, 0};
        scratch[i] = any = true;
    }
    if (!any) return (walk_state){WALK_NONE, NULL, 0};
    return (walk_state){WALK_SOME, scratch, s.depth + 1};
}
