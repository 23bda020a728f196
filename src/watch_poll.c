/*
 * watch_poll.c: the polling backend (watch.h), for filesystems that deliver no events (network
 * mounts, some container volumes) and for the parts of a tree that inotify cannot watch
 * (ENOSPC). A polled part is covered from its top record alone: every interval a snapshot (an
 * lstat of every entry that is not ignored) is taken and compared with the last; a file counts
 * as modified when its mtime, size or inode changed. Between scans nothing runs.
 */
#include "watch.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "longpath.h"

/* A polled snapshot entry: what a later scan compares. */
typedef struct {
  size_t path; /* offset into the snapshot's strings */
  int is_dir;
  int64_t mtime_ns, size;
  uint64_t ino;
} rl_pent_t;

struct rl_snap {
  rl_pent_t *e;
  size_t n, cap;
  char *strs;
  size_t slen, scap;
  size_t dirs;
};

static void rl_snap_free(struct rl_snap *s)
{
  if (!s)
    return;
  free(s->e);
  free(s->strs);
  free(s);
}

/* d is being forgotten: its part is no longer scanned. */
static void rl_poll_forget(rl_watcher_t *w, rl_wdir_t *d, int rm)
{
  (void)rm; /* nothing is held in the kernel */
  for (size_t i = 0; i < w->poll.n; i++)
    if (w->poll.tops[i] == d) {
      w->poll.tops[i] = w->poll.tops[--w->poll.n];
      break;
    }
  if (d->snap)
    w->poll.dirs -= d->snap->dirs;
  rl_snap_free(d->snap);
  d->snap = NULL;
  d->by = NULL;
}

static int rl_snap_add(struct rl_snap *s, const char *path, size_t len, const struct stat *st)
{
  if (rl_grow((void **)&s->e, &s->cap, s->n + 1, sizeof *s->e) < 0 ||
      rl_grow((void **)&s->strs, &s->scap, s->slen + len + 1, 1) < 0)
    return -1;
  memcpy(s->strs + s->slen, path, len + 1);
  s->e[s->n++] = (rl_pent_t){s->slen, S_ISDIR(st->st_mode),
                             (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec,
                             (int64_t)st->st_size, (uint64_t)st->st_ino};
  s->slen += len + 1;
  return 0;
}

/* Walks the directory in abs (rel inside it) for a snapshot: every entry that is not ignored,
 * lstat'ed; directories (not symlinks to them) recursed. at, name: the directory relative to its
 * parent's descriptor, so that no path is ever longer than a name (abs may pass PATH_MAX); at <
 * 0: open abs itself. */
static void rl_poll_walk(rl_watcher_t *w, struct rl_snap *s, rl_buf_t *abs, size_t rel_off,
                         size_t depth, int at, const char *name)
{
  size_t len = abs->len;
  const char *rel = abs->s + rel_off;
  size_t rellen = len > rel_off ? len - rel_off : 0;
  int fd = at < 0 ? rl_open_long(abs->len ? abs->s : "/", O_RDONLY | O_DIRECTORY)
                  : openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  DIR *dir = fd < 0 ? NULL : fdopendir(fd);
  if (!dir) {
    if (fd >= 0)
      close(fd);
    return;
  }
  s->dirs++;
  if (rl_grow((void **)&w->stack, &w->stackcap, depth + 2, sizeof *w->stack) < 0) {
    closedir(dir);
    return;
  }
  w->stack[depth] = rl_ignore_dir(w->ig, rellen ? rel : "", rellen, 1);
  struct dirent *de;
  while ((de = readdir(dir))) {
    if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
      continue;
    if (rl_buf_set(abs, len, "/", 1) < 0 ||
        rl_buf_set(abs, abs->len, de->d_name, strlen(de->d_name)) < 0)
      break;
    struct stat st;
    if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
      continue;
    int is_dir = S_ISDIR(st.st_mode);
    rel = abs->s + rel_off;
    if (rl_ignore_decide(w->ig, w->stack, depth + 1, rel, abs->len - rel_off, is_dir))
      continue;
    rl_snap_add(s, rel, abs->len - rel_off, &st);
    if (is_dir)
      rl_poll_walk(w, s, abs, rel_off, depth + 1, dirfd(dir), de->d_name);
  }
  closedir(dir);
  abs->len = len;
  abs->s[len] = '\0';
}

static const struct rl_snap *rl_sort_snap;

static int rl_pent_cmp(const void *a, const void *b)
{
  const rl_pent_t *x = a, *y = b;
  return strcmp(rl_sort_snap->strs + x->path, rl_sort_snap->strs + y->path);
}

/* Compares two sorted snapshots and emits the differences. A directory's own mtime is not a
 * change (its entries are); a file's mtime, size or inode is. */
static void rl_snap_diff(rl_watcher_t *w, const struct rl_snap *a, const struct rl_snap *b)
{
  size_t i = 0, j = 0;
  while (i < a->n || j < b->n) {
    const rl_pent_t *x = i < a->n ? &a->e[i] : NULL, *y = j < b->n ? &b->e[j] : NULL;
    int c = !x ? 1 : !y ? -1 : strcmp(a->strs + x->path, b->strs + y->path);
    if (c < 0) {
      rl_watch_emit(w, RL_EV_REMOVE, a->strs + x->path, x->is_dir, NULL);
      i++;
    } else if (c > 0) {
      rl_watch_emit(w, RL_EV_CREATE, b->strs + y->path, y->is_dir, NULL);
      j++;
    } else {
      if (x->is_dir != y->is_dir) {
        rl_watch_emit(w, RL_EV_REMOVE, a->strs + x->path, x->is_dir, NULL);
        rl_watch_emit(w, RL_EV_CREATE, b->strs + y->path, y->is_dir, NULL);
      } else if (!y->is_dir &&
                 (x->mtime_ns != y->mtime_ns || x->size != y->size || x->ino != y->ino)) {
        rl_watch_emit(w, RL_EV_MODIFY, b->strs + y->path, 0, NULL);
      }
      i++;
      j++;
    }
  }
}

/* Takes a new snapshot of the polled part under d; report: emit what changed since the last
 * one (a first snapshot reports everything as created when report is 2). */
static void rl_poll_scan(rl_watcher_t *w, rl_wdir_t *d, int report)
{
  rl_buf_t abs = {0};
  rl_buf_t rel = {0};
  if (rl_wdir_path(d, &rel) < 0 || rl_buf_abs(&abs, w, rel.s, rel.len) < 0) {
    free(abs.s);
    free(rel.s);
    return;
  }
  struct rl_snap *s = calloc(1, sizeof *s);
  if (s) {
    size_t depth = rl_watch_stack(w, rel.s, rel.len);
    size_t rel_off = w->rootlen + 1;
    /* depth - 1: rl_poll_walk pushes d's own list itself */
    rl_poll_walk(w, s, &abs, rel_off, depth ? depth - 1 : 0, -1, NULL);
    rl_sort_snap = s;
    if (s->n) /* an empty directory has no array, and qsort's may not be NULL */
      qsort(s->e, s->n, sizeof *s->e, rl_pent_cmp);
    struct rl_snap empty = {0};
    if (d->snap && report)
      rl_snap_diff(w, d->snap, s);
    else if (report == 2)
      rl_snap_diff(w, &empty, s);
    size_t files = 0;
    for (size_t k = 0; k < s->n; k++)
      files += !s->e[k].is_dir;
    if (d->snap) {
      w->poll.dirs -= d->snap->dirs;
      for (size_t k = 0; k < d->snap->n; k++)
        w->nfiles -= !d->snap->e[k].is_dir;
    }
    w->poll.dirs += s->dirs;
    w->nfiles += files;
    rl_snap_free(d->snap);
    d->snap = s;
  }
  free(abs.s);
  free(rel.s);
}

/* A .gitignore that changed in a polled part: its rules are read again at the next scan. */
static void rl_poll_forget_rules(rl_watcher_t *w)
{
  for (size_t i = 0; i < w->nev; i++) {
    const char *p = w->ev[i].path;
    if (!p)
      continue;
    const char *slash = strrchr(p, '/');
    const char *base = slash ? slash + 1 : p;
    if (!strcmp(base, ".gitignore"))
      rl_ignore_forget(w->ig, p, slash ? (size_t)(slash - p) : 0);
  }
}

/* Every interval: each polled part scanned, then the batch delivered. */
static void rl_poll_timer_cb(uv_timer_t *t)
{
  rl_watcher_t *w = t->data;
  for (size_t i = 0; i < w->poll.n; i++)
    rl_poll_scan(w, w->poll.tops[i], 1);
  rl_poll_forget_rules(w);
  rl_watch_deliver(w);
}

/* Covers d and everything under it (the whole tree, or a part inotify could not watch) from
 * its record alone; report: what is in it is new. */
static int rl_poll_cover(rl_watcher_t *w, rl_wdir_t *d, const char *abs, const char *rel,
                         int report)
{
  (void)abs;
  (void)rel;
  if (rl_grow((void **)&w->poll.tops, &w->poll.cap, w->poll.n + 1, sizeof *w->poll.tops) < 0) {
    rl_wdir_drop(w, d, 0);
    return -1;
  }
  w->poll.tops[w->poll.n++] = d;
  d->by = &rl_poll_backend;
  rl_poll_scan(w, d, report ? 2 : 0);
  if (!w->poll.repeating && !w->closed) {
    w->poll.repeating = 1;
    uv_timer_start(&w->timer, rl_poll_timer_cb, w->poll.interval, w->poll.interval);
  }
  return 0;
}

static int rl_poll_start(rl_watcher_t *w, uv_loop_t *loop, const char **what)
{
  (void)loop; /* the watcher's timer runs the scans */
  (void)what;
  rl_poll_cover(w, w->top, NULL, "", 0);
  return 0;
}

static void rl_poll_rescan(rl_watcher_t *w, rl_wdir_t *d, int report, int reread)
{
  (void)report;
  (void)reread; /* every scan reads the rules that changed (rl_poll_forget_rules) */
  rl_poll_scan(w, d, 1);
}

/* The timer is the watcher's (watch.c closes it); only the list of parts is polling's. */
static void rl_poll_stop(rl_watcher_t *w)
{
  free(w->poll.tops);
  w->poll.tops = NULL;
  w->poll.n = w->poll.cap = 0;
}

const rl_backend_t rl_poll_backend = {
    .name = "poll",
    .start = rl_poll_start,
    .cover = rl_poll_cover,
    .rescan = rl_poll_rescan,
    .forget = rl_poll_forget,
    .stop = rl_poll_stop,
};
