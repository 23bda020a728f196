/*
 * longpath.h: opening and stat'ing paths of any length. Linux refuses a path of PATH_MAX (4096)
 * bytes or more in one system call (ENAMETOOLONG), but a tree can be deeper than that: such a
 * path is opened a part at a time, each part relative to the directory opened before it. Plain
 * libc, no allocation: safe on the watcher's helper thread and in the fuzzer.
 */
#ifndef RELOAD_LONGPATH_H
#define RELOAD_LONGPATH_H

#include <sys/stat.h>

/* open(path, flags | O_CLOEXEC) for a path of any length; the directories on the way are
 * followed as open() follows them, the last component as flags say. -1 and errno on failure. */
int rl_open_long(const char *path, int flags);

/* lstat(path, st) for a path of any length. */
int rl_lstat_long(const char *path, struct stat *st);

#endif
