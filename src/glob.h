/*
 * glob.h: the compiled gitignore matcher that glob.c implements and watch.c prunes its walk
 * with. Pure computation and file reading; no Lua, no loop.
 */
#ifndef RELOAD_GLOB_H
#define RELOAD_GLOB_H

#include <stddef.h>

/* A string-keyed hash map (keys copied, values borrowed), shared with watch.c. */
typedef struct rl_map rl_map_t;
rl_map_t *rl_map_new(void);
void rl_map_free(rl_map_t *m, void (*free_value)(void *));
void *rl_map_get(const rl_map_t *m, const char *key, size_t len);
/* Returns the previous value (NULL if none); -1 on allocation failure is reported by *oom. */
void *rl_map_put(rl_map_t *m, const char *key, size_t len, void *value, int *oom);
void *rl_map_del(rl_map_t *m, const char *key, size_t len);
/* Calls fn for each entry (do not modify the map meanwhile). */
void rl_map_each(const rl_map_t *m, void (*fn)(const char *key, size_t len, void *value, void *ud),
                 void *ud);

/* One list of gitignore rules with its base directory (a .gitignore file, or a list given
 * by the program). */
typedef struct rl_ilist rl_ilist_t;

/* The whole decision: program patterns, nested .gitignore files, .git/info/exclude, defaults. */
typedef struct rl_ignore rl_ignore_t;

/* root: absolute directory the paths are relative to (NULL: no files are read). */
rl_ignore_t *rl_ignore_new(const char *root, int gitignore, int defaults);
void rl_ignore_free(rl_ignore_t *ig);

/* Adds one gitignore-syntax pattern (len bytes) to the program's list (highest precedence).
 * braces: expand {a,b} alternatives first. Returns 0, or -1 with a message in err for a
 * malformed pattern (a NUL byte, over 4096 bytes, too many or too deep braces). */
int rl_ignore_add(rl_ignore_t *ig, const char *pattern, size_t len, int braces, char *err,
                  size_t errlen);

/* The rules of dir/.gitignore (dir relative, "" the root), read once and cached; NULL when the
 * directory has none. exists: 0 = known not to exist, 1 = exists or unknown. */
const rl_ilist_t *rl_ignore_dir(rl_ignore_t *ig, const char *dir, size_t len, int exists);

/* Sets the rules of dir from a gitignore-format buffer (modified in place), as if read from
 * dir/.gitignore: for tests and the fuzzer. Returns 0 or -1 (out of memory). */
int rl_ignore_set_rules(rl_ignore_t *ig, const char *dir, size_t len, char *buf, size_t size);

/* Forgets the cached rules of dir (its .gitignore changed); the next rl_ignore_dir reads it. */
void rl_ignore_forget(rl_ignore_t *ig, const char *dir, size_t len);

/* The decision for path (relative, '/'-separated) whose parent directories are known not to be
 * ignored, with stack[0..depth) the .gitignore lists of its ancestors, root first (NULL entries
 * allowed). path[len] must be NUL. Returns 1 when ignored. */
int rl_ignore_decide(const rl_ignore_t *ig, const rl_ilist_t *const *stack, size_t depth,
                     const char *path, size_t len, int is_dir);

/* The full decision for a path: a path inside an ignored directory is ignored, as in git. A path
 * holding a NUL byte is never ignored (no file has such a name). */
int rl_ignore_path(rl_ignore_t *ig, const char *path, size_t len, int is_dir);

/* Lua side (glob.c): builds an rl_ignore_t from the options table at idx (patterns_key, defaults,
 * gitignore) and pushes the reload.Ignore userdata that owns it. Raises on misuse. */
struct lua_State;
rl_ignore_t *rl_glob_options(struct lua_State *L, int idx, const char *patterns_key,
                             const char *root);

#endif
