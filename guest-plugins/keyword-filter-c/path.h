// Field paths (`entities.hashtags.text`, `*` for any key) and the walk over many at once.
#ifndef PATH_H
#define PATH_H

#include "buf.h"

typedef struct {
    char *key; // NULL: `*`, any key
    size_t len;
} segment;

typedef struct {
    segment *segs;
    size_t n;
} path;

typedef struct {
    path *items;
    size_t n;
} path_list;

// Parses one path, with `\.`, `\*`, `\\` (and `\,`) for those characters inside a key. On
// error appends the message to err and returns false.
bool path_parse(str raw, path *out, buf *err);
// Appends the path as it would be written in the config.
void path_write(buf *out, const path *p);
void path_list_push(path_list *list, path p);
void path_list_free(path_list *list);
// Every place a tweet's text can be, in both API shapes.
void default_paths(path_list *out);

// Where a walk stands, for every path at once. All live paths are at the same depth (arrays
// are transparent), so the state is which paths are alive and that depth.
typedef enum { WALK_NONE, WALK_SOME, WALK_ALL } walk_kind;

typedef struct {
    walk_kind kind;   // NONE: no path goes here; ALL: a path ended, every string below counts
    const bool *alive; // WALK_SOME: alive[i] for each path i
    size_t depth;
} walk_state;

// The state under `key` of a WALK_SOME state; `scratch` (one bool per path) receives the
// alive set of a WALK_SOME result.
walk_state path_child(const path_list *paths, walk_state s, str key, bool *scratch);

#endif
