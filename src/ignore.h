/*
 * ignore.h: the compiled gitignore matcher (ignore.c) that the watcher prunes its walk with and
 * core.glob / core.ignore wrap. Plain C and file reading; no Lua, no loop.
 */
#ifndef RELOAD_IGNORE_H
#define RELOAD_IGNORE_H

#include <stddef.h>

/* Patterns longer than this are refused (program) or never match (files): wildmatch
 * backtracks, and a bound keeps a hostile .gitignore from stalling the watcher. */
#define RL_PATTERN_MAX 4096

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

#endif
