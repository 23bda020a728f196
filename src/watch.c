/*
 * watch.c: the recursive watcher. Linux inotify with one watch per directory, read in batches
 * from a uv_poll on the inotify fd; the ignore rules (glob.c) are applied during the walk, so
 * an ignored directory never gets a watch. A stat-based polling backend covers filesystems
 * without events, and takes over the part of a tree that inotify cannot watch (ENOSPC). The
 * first walk of a tree shares its directory reads with a helper thread; everything else runs on
 * the loop thread.
 *
 * It reports facts: paths that were created, modified, removed or renamed, one batch per read
 * of the fd (or per poll scan). What a change means (debounce, rebuild) is the engine's.
 *
 * Lua: core.watch{...} -> Watcher (metatable reload.Watcher).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"
#include "glob.h"
#include "map.h"
#include "longpath.h"

#define RL_WATCHER_MT "reload.Watcher"
#define RL_WATCH_MASK                                                                          \
  (IN_CREATE | IN_DELETE | IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO |              \
   IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)
/* Reads per fd wake-up before the batch is delivered: bounds the time spent in one callback
 * while a tool floods the tree. */
#define RL_READS_PER_BATCH 64

enum { RL_EV_CREATE, RL_EV_MODIFY, RL_EV_REMOVE, RL_EV_RENAME, RL_EV_OVERFLOW };
static const char *const rl_kind_names[] = {"create", "modify", "remove", "rename", "overflow"};

typedef struct {
  char *path, *from;
  int kind, is_dir;
} rl_event_t;

/* A polled snapshot entry: what a later scan compares. */
typedef struct {
  size_t path; /* offset into the snapshot's strings */
  int is_dir;
  int64_t mtime_ns, size;
  uint64_t ino;
} rl_pent_t;

typedef struct {
  rl_pent_t *e;
  size_t n, cap;
  char *strs;
  size_t slen, scap;
  size_t dirs;
} rl_snap_t;

/* A directory of the tree that is watched (by inotify, or as the top of a polled part). */
typedef struct rl_wdir {
  int wd; /* -1: not an inotify watch */
  uint32_t gen; /* last walk that saw it (mark and sweep) */
  struct rl_wdir *parent, *child, *next;
  rl_snap_t *snap; /* polled: the subtree's last snapshot */
  size_t namelen;
  char *name;
} rl_wdir_t;

typedef struct {
  uint32_t cookie;
  int is_dir, wd; /* wd of the moved directory's own watch, or -1 */
  char *path;
} rl_pending_t;

typedef struct {
  lua_State *L;
  int fd;
  int inotify; /* backend */
  uv_poll_t poll;
  uv_timer_t timer;
  int open_handles;
  int poll_inited;
  int closed;
  int timer_repeat; /* the timer runs polling scans (not only a one-shot flush) */
  uint64_t interval;
  rl_ignore_t *ig;
  char *root;
  size_t rootlen;
  rl_wdir_t *top;
  rl_wdir_t **wdtab; /* wd -> dir, open addressing */
  size_t wdcap, wdcount;
  rl_wdir_t **polled; /* tops of polled parts */
  size_t npolled, polledcap;
  size_t ndirs, nfiles, npolled_dirs, nevents;
  uint32_t gen;
  rl_event_t *ev;
  size_t nev, evcap;
  rl_map_t *seen; /* path -> index + 1 in ev, for coalescing */
  char **errors;
  size_t nerrors, errorcap, errors_total;
  char *last_error;
  int enospc_reported;
  rl_pending_t *pend;
  size_t npend, pendcap;
  int *redo; /* watches of directories to walk again after this batch (.gitignore changed) */
  size_t nredo, redocap;
  const rl_ilist_t **stack;
  size_t stackcap;
  char *dents; /* the main thread's getdents64 buffer */
  int ref_events, ref_error, ref_self;
} rl_watcher_t;

typedef struct {
  rl_watcher_t *w;
} rl_watch_ud_t;

/* Small helpers --------------------------------------------------------------------------- */

static int rl_grow(void **p, size_t *cap, size_t need, size_t size)
{
  if (need <= *cap)
    return 0;
  size_t cap2 = *cap ? *cap * 2 : 16;
  while (cap2 < need)
    cap2 *= 2;
  void *q = realloc(*p, cap2 * size);
  if (!q)
    return -1;
  *p = q;
  *cap = cap2;
  return 0;
}

/* A growable string: the path being walked. */
typedef struct {
  char *s;
  size_t len, cap;
} rl_buf_t;

static int rl_buf_set(rl_buf_t *b, size_t len, const char *add, size_t addlen)
{
  if (rl_grow((void **)&b->s, &b->cap, len + addlen + 2, 1) < 0)
    return -1;
  memcpy(b->s + len, add, addlen);
  b->len = len + addlen;
  b->s[b->len] = '\0';
  return 0;
}

/* Queues a non-fatal problem for on_error (delivered with the next batch, never from inside a
 * walk, so that a callback that closes the watcher cannot pull the tree from under it). */
static void rl_watch_problem(rl_watcher_t *w, const char *fmt, const char *a, const char *b)
{
  char msg[1024];
  snprintf(msg, sizeof msg, fmt, a, b ? b : "");
  w->errors_total++;
  free(w->last_error);
  w->last_error = strdup(msg);
  if (rl_grow((void **)&w->errors, &w->errorcap, w->nerrors + 1, sizeof(char *)) == 0 &&
      (w->errors[w->nerrors] = strdup(msg)))
    w->nerrors++;
}

/* Events and coalescing ------------------------------------------------------------------ */

static void rl_watch_emit(rl_watcher_t *w, int kind, const char *path, int is_dir,
                          const char *from)
{
  size_t len = path ? strlen(path) : 0;
  if (kind == RL_EV_OVERFLOW) {
    path = "\n"; /* one overflow per batch: a key no path can have */
    len = 1;
  }
  uintptr_t prev = (uintptr_t)rl_map_get(w->seen, path, len);
  if (prev) {
    rl_event_t *p = &w->ev[prev - 1];
    /* Within one batch a modify adds nothing to an earlier event for the same path that still
     * stands (create, modify, rename to it); anything else is kept: never lose a distinct fact. */
    if ((kind == RL_EV_MODIFY && p->kind != RL_EV_REMOVE) || kind == RL_EV_OVERFLOW ||
        (kind == p->kind && kind == RL_EV_CREATE))
      return;
  }
  if (rl_grow((void **)&w->ev, &w->evcap, w->nev + 1, sizeof *w->ev) < 0)
    return;
  rl_event_t *e = &w->ev[w->nev];
  e->kind = kind;
  e->is_dir = is_dir;
  e->path = kind == RL_EV_OVERFLOW ? NULL : strdup(path);
  e->from = from ? strdup(from) : NULL;
  int oom;
  w->nev++;
  rl_map_put(w->seen, path, len, (void *)(uintptr_t)w->nev, &oom);
}

static void rl_watch_clear_batch(rl_watcher_t *w)
{
  for (size_t i = 0; i < w->nev; i++) {
    free(w->ev[i].path);
    free(w->ev[i].from);
  }
  w->nev = 0;
  rl_map_free(w->seen, NULL);
  w->seen = rl_map_new();
  for (size_t i = 0; i < w->nerrors; i++)
    free(w->errors[i]);
  w->nerrors = 0;
}

static void rl_watch_close_now(rl_watcher_t *w);

/* Delivers queued problems, then the batch. Returns -1 when a callback closed the watcher. */
static int rl_watch_flush(rl_watcher_t *w)
{
  lua_State *L = w->L;
  for (size_t i = 0; i < w->nerrors && !w->closed; i++) {
    if (w->ref_error == LUA_NOREF)
      continue;
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->ref_error);
    lua_pushstring(L, w->errors[i]);
    rl_call(L, 1);
  }
  if (w->closed)
    return -1;
  if (w->nev == 0) {
    rl_watch_clear_batch(w);
    return 0;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, w->ref_events);
  lua_createtable(L, (int)w->nev, 0);
  for (size_t i = 0; i < w->nev; i++) {
    rl_event_t *e = &w->ev[i];
    lua_createtable(L, 0, 4);
    lua_pushstring(L, rl_kind_names[e->kind]);
    lua_setfield(L, -2, "kind");
    if (e->path) {
      lua_pushstring(L, e->path);
      lua_setfield(L, -2, "path");
      lua_pushboolean(L, e->is_dir);
      lua_setfield(L, -2, "dir");
    }
    if (e->from) {
      lua_pushstring(L, e->from);
      lua_setfield(L, -2, "from");
    }
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  w->nevents += w->nev;
  rl_watch_clear_batch(w);
  rl_call(L, 1);
  return w->closed ? -1 : 0;
}

/* Directory records ---------------------------------------------------------------------- */

static size_t rl_wd_slot(const rl_watcher_t *w, int wd)
{
  return ((size_t)wd * 2654435761u) & (w->wdcap - 1);
}

static rl_wdir_t *rl_wd_get(const rl_watcher_t *w, int wd)
{
  if (!w->wdcap || wd < 0)
    return NULL;
  for (size_t i = rl_wd_slot(w, wd);; i = (i + 1) & (w->wdcap - 1)) {
    if (!w->wdtab[i])
      return NULL;
    if (w->wdtab[i]->wd == wd)
      return w->wdtab[i];
  }
}

static void rl_wd_insert(rl_watcher_t *w, rl_wdir_t *d)
{
  size_t i = rl_wd_slot(w, d->wd);
  while (w->wdtab[i])
    i = (i + 1) & (w->wdcap - 1);
  w->wdtab[i] = d;
}

static int rl_wd_put(rl_watcher_t *w, rl_wdir_t *d)
{
  if ((w->wdcount + 1) * 2 > w->wdcap) {
    size_t cap = w->wdcap ? w->wdcap * 2 : 256;
    rl_wdir_t **tab = calloc(cap, sizeof *tab);
    if (!tab)
      return -1;
    rl_wdir_t **old = w->wdtab;
    size_t oldcap = w->wdcap;
    w->wdtab = tab;
    w->wdcap = cap;
    for (size_t i = 0; i < oldcap; i++)
      if (old[i])
        rl_wd_insert(w, old[i]);
    free(old);
  }
  rl_wd_insert(w, d);
  w->wdcount++;
  return 0;
}

static void rl_wd_del(rl_watcher_t *w, int wd)
{
  if (!w->wdcap || wd < 0)
    return;
  size_t i = rl_wd_slot(w, wd);
  while (w->wdtab[i] && w->wdtab[i]->wd != wd)
    i = (i + 1) & (w->wdcap - 1);
  if (!w->wdtab[i])
    return;
  w->wdtab[i] = NULL;
  w->wdcount--;
  /* Re-insert the rest of the cluster (linear probing deletion). */
  for (size_t j = (i + 1) & (w->wdcap - 1); w->wdtab[j]; j = (j + 1) & (w->wdcap - 1)) {
    rl_wdir_t *d = w->wdtab[j];
    w->wdtab[j] = NULL;
    rl_wd_insert(w, d);
  }
}

static rl_wdir_t *rl_wdir_new(rl_wdir_t *parent, const char *name, size_t namelen)
{
  rl_wdir_t *d = calloc(1, sizeof *d);
  if (!d || !(d->name = strndup(name, namelen))) {
    free(d);
    return NULL;
  }
  d->wd = -1;
  d->namelen = namelen;
  d->parent = parent;
  if (parent) {
    d->next = parent->child;
    parent->child = d;
  }
  return d;
}

static rl_wdir_t *rl_wdir_child(rl_wdir_t *d, const char *name, size_t len)
{
  for (rl_wdir_t *c = d->child; c; c = c->next)
    if (c->namelen == len && !memcmp(c->name, name, len))
      return c;
  return NULL;
}

static void rl_wdir_unlink(rl_wdir_t *d)
{
  if (!d->parent)
    return;
  rl_wdir_t **pp = &d->parent->child;
  while (*pp && *pp != d)
    pp = &(*pp)->next;
  if (*pp)
    *pp = d->next;
  d->parent = NULL;
  d->next = NULL;
}

/* The path of d relative to the root into b ("" for the root). */
static int rl_wdir_path(const rl_wdir_t *d, rl_buf_t *b)
{
  size_t len = 0;
  for (const rl_wdir_t *p = d; p && p->parent; p = p->parent)
    len += p->namelen + (p->parent->parent ? 1 : 0);
  if (rl_grow((void **)&b->s, &b->cap, len + 2, 1) < 0)
    return -1;
  b->len = len;
  b->s[len] = '\0';
  for (const rl_wdir_t *p = d; p && p->parent; p = p->parent) {
    len -= p->namelen;
    memcpy(b->s + len, p->name, p->namelen);
    if (len)
      b->s[--len] = '/';
  }
  return 0;
}

static void rl_snap_free(rl_snap_t *s)
{
  if (!s)
    return;
  free(s->e);
  free(s->strs);
  free(s);
}

static void rl_polled_remove(rl_watcher_t *w, rl_wdir_t *d)
{
  for (size_t i = 0; i < w->npolled; i++)
    if (w->polled[i] == d) {
      w->polled[i] = w->polled[--w->npolled];
      break;
    }
  if (d->snap)
    w->npolled_dirs -= d->snap->dirs;
  rl_snap_free(d->snap);
  d->snap = NULL;
}

/* Forgets d and everything under it; rm: also remove the kernel watches (they still exist when
 * the directory moved away or became ignored; a deleted one is gone already). */
static void rl_wdir_drop(rl_watcher_t *w, rl_wdir_t *d, int rm)
{
  while (d->child)
    rl_wdir_drop(w, d->child, rm);
  rl_wdir_unlink(d);
  if (d->wd >= 0) {
    rl_wd_del(w, d->wd);
    if (rm)
      inotify_rm_watch(w->fd, d->wd);
    w->ndirs--;
  }
  if (d->snap || d->wd < 0)
    rl_polled_remove(w, d);
  if (d == w->top)
    w->top = NULL;
  free(d->name);
  free(d);
}

/* The .gitignore lists of every directory from the root down to rel (inclusive) into
 * w->stack; returns the depth. */
static size_t rl_watch_stack(rl_watcher_t *w, const char *rel, size_t len)
{
  size_t depth = 0;
  if (rl_grow((void **)&w->stack, &w->stackcap, 2, sizeof *w->stack) < 0)
    return 0;
  w->stack[depth++] = rl_ignore_dir(w->ig, "", 0, 1);
  for (size_t i = 1; len && i <= len; i++) {
    if (i < len && rel[i] != '/')
      continue;
    if (rl_grow((void **)&w->stack, &w->stackcap, depth + 2, sizeof *w->stack) < 0)
      return depth;
    w->stack[depth++] = rl_ignore_dir(w->ig, rel, i, 1);
  }
  return depth;
}

/* Polling ------------------------------------------------------------------------------------ */

static int rl_snap_add(rl_snap_t *s, const char *path, size_t len, const struct stat *st)
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
static void rl_poll_walk(rl_watcher_t *w, rl_snap_t *s, rl_buf_t *abs, size_t rel_off,
                         size_t depth, int at, const char *name)
{
  size_t len = abs->len;
  const char *rel = abs->s + rel_off;
  size_t rellen = len > rel_off ? len - rel_off : 0;
  int fd = at < 0 ? rl_open_long(abs->s, O_RDONLY | O_DIRECTORY)
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
    if (rl_buf_set(abs, len, "/", 1) < 0 || rl_buf_set(abs, abs->len, de->d_name,
                                                       strlen(de->d_name)) < 0)
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

static const rl_snap_t *rl_sort_snap;

static int rl_pent_cmp(const void *a, const void *b)
{
  const rl_pent_t *x = a, *y = b;
  return strcmp(rl_sort_snap->strs + x->path, rl_sort_snap->strs + y->path);
}

/* Compares two sorted snapshots and emits the differences. A directory's own mtime is not a
 * change (its entries are); a file's mtime, size or inode is. */
static void rl_snap_diff(rl_watcher_t *w, const rl_snap_t *a, const rl_snap_t *b)
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
      } else if (!y->is_dir && (x->mtime_ns != y->mtime_ns || x->size != y->size ||
                                x->ino != y->ino)) {
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
  if (rl_wdir_path(d, &rel) < 0 || rl_buf_set(&abs, 0, w->root, w->rootlen) < 0 ||
      (rel.len && rl_buf_set(&abs, abs.len, "/", 1) < 0) ||
      rl_buf_set(&abs, abs.len, rel.s, rel.len) < 0) {
    free(abs.s);
    free(rel.s);
    return;
  }
  rl_snap_t *s = calloc(1, sizeof *s);
  if (s) {
    size_t depth = rl_watch_stack(w, rel.s, rel.len);
    size_t rel_off = w->rootlen + 1;
    /* depth - 1: rl_poll_walk pushes d's own list itself */
    rl_poll_walk(w, s, &abs, rel_off, depth ? depth - 1 : 0, -1, NULL);
    rl_sort_snap = s;
    if (s->n) /* an empty directory has no array, and qsort's may not be NULL */
      qsort(s->e, s->n, sizeof *s->e, rl_pent_cmp);
    rl_snap_t empty = {0};
    if (d->snap && report)
      rl_snap_diff(w, d->snap, s);
    else if (report == 2)
      rl_snap_diff(w, &empty, s);
    size_t files = 0;
    for (size_t k = 0; k < s->n; k++)
      files += !s->e[k].is_dir;
    if (d->snap) {
      w->npolled_dirs -= d->snap->dirs;
      for (size_t k = 0; k < d->snap->n; k++)
        w->nfiles -= !d->snap->e[k].is_dir;
    }
    w->npolled_dirs += s->dirs;
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

static void rl_watch_timer_cb(uv_timer_t *t)
{
  rl_watcher_t *w = t->data;
  for (size_t i = 0; i < w->npolled; i++)
    rl_poll_scan(w, w->polled[i], 1);
  rl_poll_forget_rules(w);
  rl_watch_flush(w);
}

/* Covers d (whose watch failed) and everything under it by polling. */
static void rl_poll_adopt(rl_watcher_t *w, rl_wdir_t *d, int report)
{
  if (rl_grow((void **)&w->polled, &w->polledcap, w->npolled + 1, sizeof *w->polled) < 0)
    return;
  w->polled[w->npolled++] = d;
  rl_poll_scan(w, d, report ? 2 : 0);
  if (!w->timer_repeat && !w->closed) {
    w->timer_repeat = 1;
    uv_timer_start(&w->timer, rl_watch_timer_cb, w->interval, w->interval);
  }
}

/* The inotify walk ------------------------------------------------------------------------ */

/* The first line of a /proc file into buf ("unknown" if it cannot be read). */
static void rl_read_limit(const char *file, char *buf, size_t size)
{
  snprintf(buf, size, "unknown");
  FILE *f = fopen(file, "re");
  if (f) {
    if (fgets(buf, (int)size, f))
      buf[strcspn(buf, "\n")] = '\0';
    fclose(f);
  }
}

static void rl_watch_enospc(rl_watcher_t *w, const char *rel)
{
  if (w->enospc_reported)
    return;
  w->enospc_reported = 1;
  /* The machine's limit, and this user namespace's own (a container's may be lower: the
   * lowest on the way up is the one that was hit). */
  char global[32], ns[32], limit[160];
  rl_read_limit("/proc/sys/fs/inotify/max_user_watches", global, sizeof global);
  rl_read_limit("/proc/sys/user/max_inotify_watches", ns, sizeof ns);
  if (strtoull(ns, NULL, 10) && strtoull(ns, NULL, 10) < strtoull(global, NULL, 10))
    snprintf(limit, sizeof limit, "%s; this user namespace's user.max_inotify_watches = %s",
             global, ns);
  else
    snprintf(limit, sizeof limit, "%s", global);
  rl_watch_problem(w,
                   "inotify watch limit reached at '%s' (fs.inotify.max_user_watches = %s); "
                   "that part of the tree is polled instead. Raise the limit with "
                   "`sudo sysctl fs.inotify.max_user_watches=524288` (persist it in "
                   "/etc/sysctl.d/), or ignore more directories.",
                   *rel ? rel : ".", limit);
}

/* inotify_add_watch for a directory path of any length: past PATH_MAX, the directory is opened
 * in parts (O_NOFOLLOW in place of IN_DONT_FOLLOW) and watched through /proc/self/fd. */
static int rl_inotify_add(int ifd, const char *abs, uint32_t mask)
{
  if (strlen(abs) < PATH_MAX)
    return inotify_add_watch(ifd, abs, mask);
  int fd = rl_open_long(abs, O_PATH | O_DIRECTORY | O_NOFOLLOW);
  if (fd < 0)
    return -1;
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  int wd = inotify_add_watch(ifd, proc, mask & ~(uint32_t)IN_DONT_FOLLOW);
  int err = errno;
  close(fd);
  errno = err;
  return wd;
}

/* Adds the inotify watch of a new record d (abs is its path). Returns 0, or -1 when d is not
 * watched by inotify (then it is polled, or dropped: already watched elsewhere, gone). */
static int rl_watch_add(rl_watcher_t *w, rl_wdir_t *d, const char *abs, const char *rel,
                        int report)
{
  int wd = rl_inotify_add(w->fd, abs, RL_WATCH_MASK);
  if (wd < 0) {
    if (errno == ENOSPC) {
      rl_watch_enospc(w, rel);
      rl_poll_adopt(w, d, report);
      return -1;
    }
    if (errno != ENOENT && errno != ENOTDIR)
      rl_watch_problem(w, "cannot watch '%s': %s", *rel ? rel : ".", strerror(errno));
    rl_wdir_drop(w, d, 0);
    return -1;
  }
  if (rl_wd_get(w, wd)) {
    /* The same directory reached twice (a bind mount of a parent): watching it once is
     * enough, and not walking it again keeps a mount loop from running forever. */
    rl_wdir_drop(w, d, 0);
    return -1;
  }
  d->wd = wd;
  rl_wd_put(w, d);
  w->ndirs++;
  return 0;
}

/* A directory's entries as getdents64 returned them ("." and ".." left out, d_type known). */
typedef struct {
  char *buf;
  size_t len, cap;
  int has_gitignore;
} rl_listing_t;

#define RL_DENTS_SIZE 65536

static const struct dirent64 *rl_listing_at(const rl_listing_t *ls, size_t off)
{
  return (const struct dirent64 *)(const void *)(ls->buf + off);
}

/* Reads every entry of the directory at abs into ls (its buffer reused), at once: a walk holds
 * no directory open. getdents64 into dents (RL_DENTS_SIZE bytes) rather than readdir:
 * opendir costs an fstat and a 32 KiB allocation per directory, a tenth of a walk of small
 * ones. */
static int rl_read_dir(const char *abs, char *dents, rl_listing_t *ls)
{
  ls->len = 0;
  ls->has_gitignore = 0;
  int fd = rl_open_long(abs, O_RDONLY | O_DIRECTORY);
  if (fd < 0)
    return -1;
  ssize_t n;
  while ((n = getdents64(fd, dents, RL_DENTS_SIZE)) > 0) {
    if (rl_grow((void **)&ls->buf, &ls->cap, ls->len + (size_t)n, 1) < 0) {
      n = -1;
      errno = ENOMEM;
      break;
    }
    for (ssize_t off = 0; off < n;) {
      struct dirent64 *de = (struct dirent64 *)(void *)(dents + off);
      off += de->d_reclen;
      const char *nm = de->d_name;
      if (nm[0] == '.' && (!nm[1] || (nm[1] == '.' && !nm[2])))
        continue;
      if (de->d_type == DT_UNKNOWN) {
        /* Filesystems without d_type (some XFS, old reiserfs): ask, only then. */
        struct stat st;
        if (fstatat(fd, nm, &st, AT_SYMLINK_NOFOLLOW) == 0)
          de->d_type = S_ISDIR(st.st_mode) ? DT_DIR : DT_REG;
      }
      if (!strcmp(nm, ".gitignore"))
        ls->has_gitignore = 1;
      memcpy(ls->buf + ls->len, de, de->d_reclen);
      ls->len += de->d_reclen;
    }
  }
  int err = n < 0 ? errno : 0;
  close(fd);
  errno = err;
  return err ? -1 : 0;
}

/* A directory of a walk: watched, then read (by either thread), then visited (by the main
 * thread alone: records, watches, the wd table, ignore rules, problems). Its watch is added
 * before it is queued, so that nothing created between the read and the watch goes unseen. */
typedef struct rl_visit {
  struct rl_visit *next; /* in the walk's todo or read stack */
  rl_wdir_t *d;
  int report; /* emit "create" for what it holds (a new directory) */
  int err;    /* the read's errno, 0: read */
  rl_listing_t ls;
  size_t depth;             /* rules[depth] is its own .gitignore's, set by the visit */
  const rl_ilist_t **rules; /* the .gitignore lists that apply, root first (a copy: the
                             * parent's visit is freed before this one is read) */
  size_t len;
  char *abs;
} rl_visit_t;

/* A walk's queue, shared with a helper thread in the first walk. On a large tree the start-up
 * is kernel time, and over half of it goes to reading directories (open, getdents64, close),
 * which a second CPU takes over while the main thread decides and adds watches. Watches are not
 * shared: inotify_add_watch holds a per-instance mutex, so two threads adding wait for each
 * other. After the first walk the watcher runs on the loop thread alone. */
typedef struct {
  /* Shared, under mu. */
  pthread_mutex_t mu;
  pthread_cond_t more, ready; /* a visit was queued (or stop); one was read */
  rl_visit_t *todo;           /* to read: a stack, so that the walk goes depth first */
  rl_visit_t *read;           /* read, to visit */
  size_t reading;             /* reads running in the helper */
  int stop;
  /* Spent listings, whose buffers the next reads reuse: reads seldom allocate, and the main
   * thread does not free the helper's buffers one by one (glibc locks the arena of the thread
   * that made a block to free it, a lock the helper's reads then wait for). */
  rl_listing_t *spare;
  size_t nspare, sparecap;
  /* The helper's own. */
  pthread_t thread;
  int helper; /* it runs */
  char *dents;
  /* The main thread's. */
  rl_visit_t *found, *found_last; /* queued by the next rl_walk_next */
  int reread;
  size_t rel_off; /* where the relative path starts in an absolute one */
  rl_buf_t path;
} rl_walk_t;

static rl_visit_t *rl_visit_new(rl_wdir_t *d, const char *abs, size_t len,
                                const rl_ilist_t *const *rules, size_t depth, int report)
{
  rl_visit_t *v = malloc(sizeof *v + (depth + 1) * sizeof *rules + len + 1);
  if (!v)
    return NULL;
  *v = (rl_visit_t){.d = d, .report = report, .depth = depth, .len = len};
  v->rules = (const rl_ilist_t **)(void *)(v + 1);
  memcpy(v->rules, rules, depth * sizeof *rules);
  v->abs = (char *)(v->rules + depth + 1);
  memcpy(v->abs, abs, len + 1);
  return v;
}

/* Gives v a spare listing buffer, if any (under q->mu). */
static void rl_walk_reuse(rl_walk_t *q, rl_visit_t *v)
{
  if (q->nspare)
    v->ls = q->spare[--q->nspare];
}

static void rl_visit_read(rl_visit_t *v, char *dents)
{
  v->err = rl_read_dir(v->abs, dents, &v->ls) < 0 ? errno : 0;
}

static void rl_walk_found(rl_walk_t *q, rl_visit_t *v)
{
  v->next = q->found;
  q->found = v;
  if (!v->next)
    q->found_last = v;
}

/* Takes back the last visit's listing (spent) and queues what it found; returns the next visit:
 * one the helper read, else one read here; NULL when the walk is done. One lock per visit on
 * either side: with more, the threads mostly wait for each other. */
static rl_visit_t *rl_walk_next(rl_walk_t *q, rl_listing_t *spent, char *dents)
{
  rl_visit_t *v;
  pthread_mutex_lock(&q->mu);
  if (spent && spent->buf) {
    if (rl_grow((void **)&q->spare, &q->sparecap, q->nspare + 1, sizeof *q->spare) == 0)
      q->spare[q->nspare++] = *spent;
    else
      free(spent->buf);
  }
  if (q->found) {
    q->found_last->next = q->todo;
    q->todo = q->found;
    q->found = NULL;
    pthread_cond_signal(&q->more);
  }
  for (;;) {
    if ((v = q->read)) {
      q->read = v->next;
      break;
    }
    if ((v = q->todo)) {
      q->todo = v->next;
      rl_walk_reuse(q, v);
      pthread_mutex_unlock(&q->mu);
      rl_visit_read(v, dents);
      return v;
    }
    if (!q->reading)
      break;
    pthread_cond_wait(&q->ready, &q->mu);
  }
  pthread_mutex_unlock(&q->mu);
  return v;
}

static void *rl_helper_main(void *arg)
{
  rl_walk_t *q = arg;
  rl_visit_t *v = NULL;
  pthread_mutex_lock(&q->mu);
  for (;;) {
    if (v) {
      q->reading--;
      v->next = q->read;
      q->read = v;
      pthread_cond_signal(&q->ready);
    }
    if (q->stop)
      break;
    if (!(v = q->todo)) {
      pthread_cond_wait(&q->more, &q->mu);
      continue;
    }
    q->todo = v->next;
    rl_walk_reuse(q, v);
    q->reading++;
    pthread_mutex_unlock(&q->mu);
    rl_visit_read(v, q->dents);
    pthread_mutex_lock(&q->mu);
  }
  pthread_mutex_unlock(&q->mu);
  return NULL;
}

/* Starts the helper; without one (a single CPU, no memory, no thread) the walk runs alone.
 * The CPUs counted are those this thread may run on (taskset, cpusets): pinned to one, a
 * helper only takes turns with the main thread, 5% slower than none. */
static void rl_helper_start(rl_walk_t *q)
{
  cpu_set_t cpus;
  if (sched_getaffinity(0, sizeof cpus, &cpus) < 0 || CPU_COUNT(&cpus) < 2 ||
      !(q->dents = malloc(RL_DENTS_SIZE)))
    return;
  /* With every signal blocked, signals keep going to the loop thread, which handles them. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  q->helper = pthread_create(&q->thread, NULL, rl_helper_main, q) == 0;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void rl_helper_stop(rl_walk_t *q)
{
  if (q->helper) {
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_cond_signal(&q->more);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->thread, NULL);
  }
  free(q->dents);
}

/* Visits v (read): decides every entry, watches the new directories and queues them, sweeps
 * the records of directories that are gone or now ignored. */
static void rl_watch_visit(rl_watcher_t *w, rl_walk_t *q, rl_visit_t *v)
{
  rl_wdir_t *d = v->d;
  const char *rel = v->len > q->rel_off ? v->abs + q->rel_off : "";
  size_t rellen = v->len > q->rel_off ? v->len - q->rel_off : 0;
  d->gen = w->gen;
  if (v->err) {
    if (v->err != ENOENT && v->err != ENOTDIR)
      rl_watch_problem(w, "cannot read directory '%s': %s", *rel ? rel : ".", strerror(v->err));
    return;
  }
  if (q->reread)
    rl_ignore_forget(w->ig, rel, rellen);
  v->rules[v->depth] = rl_ignore_dir(w->ig, rel, rellen, v->ls.has_gitignore);
  rl_buf_t *path = &q->path;
  if (rl_buf_set(path, 0, v->abs, v->len) < 0 || rl_buf_set(path, v->len, "/", 1) < 0)
    return;
  for (size_t off = 0; off < v->ls.len;) {
    const struct dirent64 *de = rl_listing_at(&v->ls, off);
    off += de->d_reclen;
    const char *name = de->d_name;
    size_t namelen = strlen(name);
    if (rl_buf_set(path, v->len + 1, name, namelen) < 0)
      break;
    int is_dir = de->d_type == DT_DIR;
    rel = path->s + q->rel_off;
    if (rl_ignore_decide(w->ig, v->rules, v->depth + 1, rel, path->len - q->rel_off, is_dir))
      continue;
    if (!is_dir) {
      w->nfiles++;
      if (v->report)
        rl_watch_emit(w, RL_EV_CREATE, rel, 0, NULL);
      continue;
    }
    rl_wdir_t *c = d->child ? rl_wdir_child(d, name, namelen) : NULL;
    int fresh = !c;
    if (fresh) {
      if (!(c = rl_wdir_new(d, name, namelen)))
        break;
      if (v->report)
        rl_watch_emit(w, RL_EV_CREATE, rel, 1, NULL);
    }
    c->gen = w->gen;
    if (c->wd < 0 && !fresh)
      continue; /* polled: its snapshot covers it */
    if (fresh && rl_watch_add(w, c, path->s, rel, v->report) < 0)
      continue;
    rl_visit_t *cv =
        rl_visit_new(c, path->s, path->len, v->rules, v->depth + 1, fresh && v->report);
    if (!cv)
      break;
    rl_walk_found(q, cv);
  }
  /* Sweep: a record this visit did not reach is gone or ignored now. */
  for (rl_wdir_t *c = d->child, *next; c; c = next) {
    next = c->next;
    if (c->gen != w->gen)
      rl_wdir_drop(w, c, 1);
  }
}

/* Visits v and everything found below it, then frees it. helper: share the reads with a
 * second thread. */
static void rl_watch_visit_all(rl_watcher_t *w, rl_visit_t *v, int reread, int helper)
{
  rl_walk_t q = {.reread = reread, .rel_off = w->rootlen + 1};
  pthread_mutex_init(&q.mu, NULL);
  pthread_cond_init(&q.more, NULL);
  pthread_cond_init(&q.ready, NULL);
  if (helper)
    rl_helper_start(&q);
  rl_walk_found(&q, v);
  rl_listing_t spent = {0};
  while ((v = rl_walk_next(&q, &spent, w->dents))) {
    rl_watch_visit(w, &q, v);
    spent = v->ls;
    free(v);
  }
  rl_helper_stop(&q);
  for (size_t i = 0; i < q.nspare; i++)
    free(q.spare[i].buf);
  free(q.spare);
  pthread_cond_destroy(&q.ready);
  pthread_cond_destroy(&q.more);
  pthread_mutex_destroy(&q.mu);
  free(q.path.s);
}

/* Walks the subtree of d: watches every directory below that is not ignored, and forgets the
 * records of those that are gone or now ignored. report: emit "create" for everything found (a
 * new directory). reread: read .gitignore files again (they may have changed). helper: share
 * the reads with a second thread (the first walk of a tree, which may be large). */
static void rl_watch_walk(rl_watcher_t *w, rl_wdir_t *d, int report, int reread, int helper)
{
  rl_buf_t rel = {0}, abs = {0};
  if (rl_wdir_path(d, &rel) == 0 && rl_buf_set(&abs, 0, w->root, w->rootlen) == 0 &&
      (!rel.len || rl_buf_set(&abs, abs.len, "/", 1) == 0) &&
      rl_buf_set(&abs, abs.len, rel.s, rel.len) == 0) {
    size_t depth = rl_watch_stack(w, rel.s, rel.len);
    w->gen++;
    rl_visit_t *v;
    if (d->wd >= 0 && depth && (v = rl_visit_new(d, abs.s, abs.len, w->stack, depth - 1, report)))
      rl_watch_visit_all(w, v, reread, helper);
    else if (d->wd < 0 && d->snap)
      rl_poll_scan(w, d, 1);
  }
  free(rel.s);
  free(abs.s);
}

/* Walks the subtree of d again (after a .gitignore change, an overflow, a move). */
static void rl_watch_rewalk(rl_watcher_t *w, rl_wdir_t *d, int report, int reread)
{
  rl_watch_walk(w, d, report, reread, 0);
}

/* inotify events ------------------------------------------------------------------------- */

/* Is rel (inside directory d's path) ignored? d itself is known not to be. */
static int rl_watch_ignored_in(rl_watcher_t *w, rl_buf_t *dpath, const char *rel, size_t len,
                               int is_dir)
{
  size_t depth = rl_watch_stack(w, dpath->s, dpath->len);
  return rl_ignore_decide(w->ig, w->stack, depth, rel, len, is_dir);
}

/* A directory appeared (created, or moved in from outside): watch it and report what is in it
 * already, since files created before its watch existed produce no event. */
static void rl_watch_new_dir(rl_watcher_t *w, rl_wdir_t *parent, const char *name,
                             const char *rel)
{
  rl_wdir_t *c = rl_wdir_child(parent, name, strlen(name));
  if (c)
    rl_wdir_drop(w, c, 1); /* a stale record of the same name */
  c = rl_wdir_new(parent, name, strlen(name));
  if (!c)
    return;
  rl_buf_t abs = {0};
  if (rl_buf_set(&abs, 0, w->root, w->rootlen) == 0 && rl_buf_set(&abs, abs.len, "/", 1) == 0 &&
      rl_buf_set(&abs, abs.len, rel, strlen(rel)) == 0) {
    if (rl_watch_add(w, c, abs.s, rel, 1) == 0) {
      free(abs.s);
      rl_watch_rewalk(w, c, 1, 0);
      return;
    }
  } else {
    rl_wdir_drop(w, c, 0);
  }
  free(abs.s);
}

static void rl_watch_redo(rl_watcher_t *w, rl_wdir_t *d)
{
  for (size_t i = 0; i < w->nredo; i++)
    if (w->redo[i] == d->wd)
      return;
  if (rl_grow((void **)&w->redo, &w->redocap, w->nredo + 1, sizeof *w->redo) == 0)
    w->redo[w->nredo++] = d->wd;
}

/* touch counts, chmod does not: both only change attributes, but a change that set the mtime
 * set it to the same instant as the ctime. */
static int rl_mtime_changed(const char *root, const char *rel)
{
  char *abs = malloc(strlen(root) + strlen(rel) + 2);
  if (!abs)
    return 1;
  sprintf(abs, "%s/%s", root, rel);
  struct stat st;
  int r = rl_lstat_long(abs, &st);
  free(abs);
  if (r < 0)
    return 0;
  return st.st_mtim.tv_sec == st.st_ctim.tv_sec && st.st_mtim.tv_nsec == st.st_ctim.tv_nsec;
}

static void rl_pending_resolve(rl_watcher_t *w, size_t i, int as_remove)
{
  rl_pending_t *p = &w->pend[i];
  if (as_remove) {
    rl_watch_emit(w, RL_EV_REMOVE, p->path, p->is_dir, NULL);
    rl_wdir_t *d = rl_wd_get(w, p->wd);
    if (d && d != w->top)
      rl_wdir_drop(w, d, 1);
  }
  free(p->path);
  w->pend[i] = w->pend[--w->npend];
}

static void rl_watch_moved_to(rl_watcher_t *w, rl_wdir_t *d, const struct inotify_event *ev,
                              const char *rel, int ignored)
{
  size_t i = 0;
  while (i < w->npend && w->pend[i].cookie != ev->cookie)
    i++;
  int is_dir = (ev->mask & IN_ISDIR) != 0;
  if (i == w->npend) {
    /* Moved in from outside the tree (or from an ignored place that sent no event). */
    if (ignored)
      return;
    if (!is_dir)
      rl_watch_emit(w, RL_EV_CREATE, rel, 0, NULL);
    else {
      rl_watch_emit(w, RL_EV_CREATE, rel, 1, NULL);
      rl_watch_new_dir(w, d, ev->name, rel);
    }
    return;
  }
  if (ignored) {
    rl_pending_resolve(w, i, 1); /* renamed to an ignored name: gone as far as we care */
    return;
  }
  rl_pending_t *p = &w->pend[i];
  rl_watch_emit(w, RL_EV_RENAME, rel, is_dir, p->path);
  rl_wdir_t *moved = rl_wd_get(w, p->wd);
  if (is_dir && moved && moved != w->top) {
    /* The watches moved with the directory: keep them, rename the record, and walk it again
     * for the rules that hold at its new place. */
    size_t namelen = strlen(ev->name);
    rl_wdir_t *stale = rl_wdir_child(d, ev->name, namelen);
    if (stale && stale != moved)
      rl_wdir_drop(w, stale, 1);
    char *name = strdup(ev->name);
    if (name) {
      rl_wdir_unlink(moved);
      free(moved->name);
      moved->name = name;
      moved->namelen = namelen;
      moved->parent = d;
      moved->next = d->child;
      d->child = moved;
      free(p->path);
      w->pend[i] = w->pend[--w->npend];
      rl_watch_rewalk(w, moved, 0, 1);
      return;
    }
  } else if (is_dir && !moved) {
    rl_watch_new_dir(w, d, ev->name, rel); /* it was not watched at its old place */
  }
  free(p->path);
  w->pend[i] = w->pend[--w->npend];
}

static void rl_watch_event(rl_watcher_t *w, const struct inotify_event *ev, rl_buf_t *dpath,
                           rl_buf_t *path)
{
  rl_wdir_t *d = rl_wd_get(w, ev->wd);
  if (!d)
    return;
  if (ev->mask & IN_IGNORED) {
    /* The kernel dropped the watch (directory deleted or unmounted). */
    if (d == w->top) {
      rl_wd_del(w, d->wd);
      d->wd = -1;
      w->ndirs--;
      rl_watch_problem(w, "the watched root '%s' was removed%s", w->root, NULL);
    } else {
      rl_wdir_drop(w, d, 0);
    }
    return;
  }
  if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
    if (d == w->top && (ev->mask & IN_MOVE_SELF))
      rl_watch_problem(w, "the watched root '%s' was moved%s", w->root, NULL);
    return; /* reported through the parent's event */
  }
  if (!ev->len || rl_wdir_path(d, dpath) < 0)
    return;
  size_t namelen = strlen(ev->name);
  if (rl_buf_set(path, 0, dpath->s, dpath->len) < 0 ||
      (dpath->len && rl_buf_set(path, path->len, "/", 1) < 0) ||
      rl_buf_set(path, path->len, ev->name, namelen) < 0)
    return;
  int is_dir = (ev->mask & IN_ISDIR) != 0;
  int ignored = rl_watch_ignored_in(w, dpath, path->s, path->len, is_dir);
  if (ev->mask & IN_MOVED_TO) {
    rl_watch_moved_to(w, d, ev, path->s, ignored);
  } else if (ignored) {
    return;
  } else if (ev->mask & IN_MOVED_FROM) {
    if (rl_grow((void **)&w->pend, &w->pendcap, w->npend + 1, sizeof *w->pend) == 0) {
      rl_wdir_t *c = is_dir ? rl_wdir_child(d, ev->name, namelen) : NULL;
      w->pend[w->npend++] = (rl_pending_t){ev->cookie, is_dir, c ? c->wd : -1, strdup(path->s)};
    }
  } else if (ev->mask & IN_CREATE) {
    rl_watch_emit(w, RL_EV_CREATE, path->s, is_dir, NULL);
    if (is_dir)
      rl_watch_new_dir(w, d, ev->name, path->s);
    else
      w->nfiles++;
  } else if (ev->mask & IN_DELETE) {
    rl_watch_emit(w, RL_EV_REMOVE, path->s, is_dir, NULL);
    rl_wdir_t *c = is_dir ? rl_wdir_child(d, ev->name, namelen) : NULL;
    if (c)
      rl_wdir_drop(w, c, 1);
    if (!is_dir && w->nfiles)
      w->nfiles--;
  } else if (ev->mask & IN_MODIFY) {
    rl_watch_emit(w, RL_EV_MODIFY, path->s, is_dir, NULL);
  } else if ((ev->mask & IN_ATTRIB) && !is_dir && rl_mtime_changed(w->root, path->s)) {
    rl_watch_emit(w, RL_EV_MODIFY, path->s, 0, NULL);
  }
  if (!strcmp(ev->name, ".gitignore") && !is_dir)
    rl_watch_redo(w, d);
}

static void rl_watch_poll_cb(uv_poll_t *h, int status, int events)
{
  rl_watcher_t *w = h->data;
  (void)events;
  if (status < 0) {
    rl_watch_problem(w, "inotify: %s%s", uv_strerror(status), NULL);
    rl_watch_flush(w);
    return;
  }
  char buf[65536] __attribute__((aligned(__alignof__(struct inotify_event))));
  rl_buf_t dpath = {0}, path = {0};
  int overflow = 0;
  for (int reads = 0; reads < RL_READS_PER_BATCH; reads++) {
    ssize_t n = read(w->fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    for (char *p = buf; p < buf + n;) {
      const struct inotify_event *ev = (const struct inotify_event *)p;
      if (ev->mask & IN_Q_OVERFLOW)
        overflow = 1;
      else
        rl_watch_event(w, ev, &dpath, &path);
      p += sizeof *ev + ev->len;
    }
  }
  /* A move whose other half never came left the tree (or went to an ignored place). */
  while (w->npend)
    rl_pending_resolve(w, w->npend - 1, 1);
  for (size_t i = 0; i < w->nredo; i++) {
    rl_wdir_t *d = rl_wd_get(w, w->redo[i]);
    if (d)
      rl_watch_rewalk(w, d, 0, 1);
  }
  w->nredo = 0;
  if (overflow) {
    /* Events were lost: say so once, and bring the watches back in line with the tree. */
    rl_watch_emit(w, RL_EV_OVERFLOW, NULL, 0, NULL);
    if (w->top && w->top->wd >= 0)
      rl_watch_rewalk(w, w->top, 0, 1);
  }
  free(dpath.s);
  free(path.s);
  rl_watch_flush(w);
}

/* Lifetime ------------------------------------------------------------------------------- */

static void rl_watch_handle_closed(uv_handle_t *h)
{
  rl_watcher_t *w = h->data;
  rl_stat_add(RL_STAT_HANDLES, -1);
  if (--w->open_handles == 0)
    free(w);
}

static void rl_watch_unref(rl_watcher_t *w, int *ref)
{
  if (*ref == LUA_NOREF)
    return;
  luaL_unref(w->L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
  rl_stat_add(RL_STAT_REFS, -1);
}

static void rl_watch_close_now(rl_watcher_t *w)
{
  if (w->closed)
    return;
  w->closed = 1;
  if (w->top)
    rl_wdir_drop(w, w->top, 0);
  if (w->fd >= 0 && uv_is_active((uv_handle_t *)&w->poll))
    uv_poll_stop(&w->poll);
  rl_watch_clear_batch(w);
  rl_map_free(w->seen, NULL);
  for (size_t i = 0; i < w->npend; i++)
    free(w->pend[i].path);
  free(w->pend);
  free(w->errors);
  free(w->last_error);
  free(w->redo);
  free(w->stack);
  free(w->dents);
  free(w->wdtab);
  free(w->polled);
  free(w->ev);
  free(w->root);
  rl_watch_unref(w, &w->ref_events);
  rl_watch_unref(w, &w->ref_error);
  rl_watch_unref(w, &w->ref_self);
  uv_close((uv_handle_t *)&w->timer, rl_watch_handle_closed);
  if (w->poll_inited)
    uv_close((uv_handle_t *)&w->poll, rl_watch_handle_closed);
  if (w->fd >= 0)
    close(w->fd); /* after uv_close of the poll handle: libuv must stop watching it first */
  w->fd = -1;
}

/* Lua ------------------------------------------------------------------------------------- */

static rl_watcher_t *rl_check_watcher(lua_State *L, int idx)
{
  rl_watch_ud_t *ud = luaL_checkudata(L, idx, RL_WATCHER_MT);
  if (!ud->w)
    luaL_argerror(L, idx, "closed watcher");
  return ud->w;
}

static const char *const rl_watch_keys[] = {"root", "ignore", "defaults", "gitignore",
                                            "backend", "poll_interval_ms", "on_events",
                                            "on_error", NULL};

static void rl_watch_check_keys(lua_State *L, int idx)
{
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    int known = 0;
    if (lua_type(L, -1) == LUA_TSTRING)
      for (size_t i = 0; rl_watch_keys[i]; i++)
        known |= !strcmp(lua_tostring(L, -1), rl_watch_keys[i]);
    if (!known) {
      lua_pushfstring(L, "unknown option '%s'", luaL_tolstring(L, -1, NULL));
      luaL_argerror(L, idx, lua_tostring(L, -1));
    }
  }
}

static int rl_watch_ref_fn(lua_State *L, int idx, const char *key, int required)
{
  int t = lua_getfield(L, idx, key);
  if (t == LUA_TNIL && !required) {
    lua_pop(L, 1);
    return LUA_NOREF;
  }
  if (t != LUA_TFUNCTION) {
    lua_pushfstring(L, "option '%s' must be a function", key);
    luaL_argerror(L, idx, lua_tostring(L, -1));
  }
  rl_stat_add(RL_STAT_REFS, 1);
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Reads and checks every option; raises on misuse. Leaves the Ignore userdata on the stack. */
static void rl_watch_options(lua_State *L, rl_watcher_t *w)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  rl_watch_check_keys(L, 1);
  lua_getfield(L, 1, "root");
  size_t rootlen;
  const char *root = lua_tolstring(L, -1, &rootlen);
  if (lua_type(L, -1) != LUA_TSTRING || root[0] != '/')
    luaL_argerror(L, 1, "option 'root' must be an absolute path");
  while (rootlen > 1 && root[rootlen - 1] == '/')
    rootlen--;
  w->root = strndup(root, rootlen);
  w->rootlen = rootlen == 1 ? 0 : rootlen; /* "/" joins as "" + "/" + rel */
  lua_pop(L, 1);
  lua_getfield(L, 1, "backend");
  const char *backend = luaL_optstring(L, -1, "inotify");
  if (strcmp(backend, "inotify") && strcmp(backend, "poll"))
    luaL_argerror(L, 1, "option 'backend' must be \"inotify\" or \"poll\"");
  w->inotify = !strcmp(backend, "inotify");
  lua_pop(L, 1);
  lua_getfield(L, 1, "poll_interval_ms");
  lua_Integer ms = luaL_optinteger(L, -1, 500);
  if (ms < 1)
    luaL_argerror(L, 1, "option 'poll_interval_ms' must be at least 1");
  w->interval = (uint64_t)ms;
  lua_pop(L, 1);
  w->ig = rl_glob_options(L, 1, "ignore", w->root);
  w->ref_events = rl_watch_ref_fn(L, 1, "on_events", 1);
  w->ref_error = rl_watch_ref_fn(L, 1, "on_error", 0);
}

/* core.watch{ root=, ignore=, defaults=, gitignore=, backend=, poll_interval_ms=, on_events=,
 *             on_error= } -> Watcher | nil, err, code */
static int rl_watch_new(lua_State *L)
{
  rl_watch_ud_t *ud = lua_newuserdatauv(L, sizeof *ud, 1);
  ud->w = NULL;
  luaL_setmetatable(L, RL_WATCHER_MT);
  rl_watcher_t *w = calloc(1, sizeof *w);
  if (!w)
    return luaL_error(L, "out of memory");
  w->fd = -1;
  w->ref_events = w->ref_error = w->ref_self = LUA_NOREF;
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  w->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  /* w is owned by ud from here, so a raise in the option checks frees it through __gc. */
  ud->w = w;
  w->closed = 1;
  rl_watch_options(L, w);
  lua_setiuservalue(L, -2, 1); /* the Ignore userdata lives as long as the watcher */
  struct stat st;
  if (stat(w->root, &st) < 0)
    return rl_push_error_what(L, -errno, w->root);
  if (!S_ISDIR(st.st_mode))
    return rl_push_error_what(L, UV_ENOTDIR, w->root);
  if (w->inotify && (w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0)
    return rl_push_error_what(L, -errno, "inotify_init1");
  if (w->inotify && !(w->dents = malloc(RL_DENTS_SIZE)))
    return luaL_error(L, "out of memory");
  w->seen = rl_map_new();
  uv_loop_t *loop = rl_loop(L);
  uv_timer_init(loop, &w->timer);
  w->timer.data = w;
  w->open_handles = 1;
  rl_stat_add(RL_STAT_HANDLES, 1);
  if (w->inotify) {
    int err = uv_poll_init(loop, &w->poll, w->fd);
    if (err) {
      w->closed = 0;
      rl_watch_close_now(w);
      ud->w = NULL;
      return rl_push_error_what(L, err, "uv_poll_init");
    }
    w->poll_inited = 1;
    w->poll.data = w;
    w->open_handles++;
    rl_stat_add(RL_STAT_HANDLES, 1);
  }
  w->closed = 0;
  lua_pushvalue(L, 2); /* the watcher itself, held while open (its callbacks may fire) */
  w->ref_self = luaL_ref(L, LUA_REGISTRYINDEX);
  rl_stat_add(RL_STAT_REFS, 1);
  w->top = rl_wdir_new(NULL, "", 0);
  if (w->inotify) {
    if (rl_watch_add(w, w->top, w->rootlen ? w->root : "/", "", 0) == 0)
      rl_watch_walk(w, w->top, 0, 0, 1);
    uv_poll_start(&w->poll, UV_READABLE, rl_watch_poll_cb);
  } else {
    rl_poll_adopt(w, w->top, 0);
  }
  if (w->nerrors && !w->timer_repeat)
    uv_timer_start(&w->timer, rl_watch_timer_cb, 0, 0); /* deliver start-up problems */
  lua_pushvalue(L, 2);
  return 1;
}

/* watcher:stats() -> { backend=, dirs=, files=, polled_dirs=, events=, errors=, last_error= } */
static int rl_watch_stats(lua_State *L)
{
  rl_watcher_t *w = rl_check_watcher(L, 1);
  lua_createtable(L, 0, 8);
  lua_pushstring(L, w->inotify ? "inotify" : "poll");
  lua_setfield(L, -2, "backend");
  lua_pushinteger(L, (lua_Integer)(w->ndirs + w->npolled_dirs));
  lua_setfield(L, -2, "dirs");
  lua_pushinteger(L, (lua_Integer)w->ndirs);
  lua_setfield(L, -2, "watches");
  lua_pushinteger(L, (lua_Integer)w->npolled_dirs);
  lua_setfield(L, -2, "polled_dirs");
  lua_pushinteger(L, (lua_Integer)w->nfiles);
  lua_setfield(L, -2, "files");
  lua_pushinteger(L, (lua_Integer)w->nevents);
  lua_setfield(L, -2, "events");
  lua_pushinteger(L, (lua_Integer)w->errors_total);
  lua_setfield(L, -2, "errors");
  if (w->last_error) {
    lua_pushstring(L, w->last_error);
    lua_setfield(L, -2, "last_error");
  }
  return 1;
}

/* watcher:ignored(path[, is_dir]) -> boolean   (the decision the watcher applies) */
static int rl_watch_ignored(lua_State *L)
{
  luaL_checkudata(L, 1, RL_WATCHER_MT);
  size_t len;
  const char *path = luaL_checklstring(L, 2, &len);
  lua_getiuservalue(L, 1, 1);
  lua_getfield(L, -1, "ignored");
  lua_insert(L, -2);
  lua_pushlstring(L, path, len);
  lua_pushboolean(L, lua_toboolean(L, 3));
  lua_call(L, 3, 1);
  return 1;
}

/* watcher:close() -> true   (idempotent; also __gc and __close) */
static int rl_watch_close(lua_State *L)
{
  rl_watch_ud_t *ud = luaL_checkudata(L, 1, RL_WATCHER_MT);
  if (ud->w) {
    rl_watcher_t *w = ud->w;
    ud->w = NULL;
    if (!w->open_handles) {
      /* never started: only the options were read */
      rl_watch_unref(w, &w->ref_events);
      rl_watch_unref(w, &w->ref_error);
      if (w->fd >= 0)
        close(w->fd);
      free(w->root);
      free(w);
    } else {
      rl_watch_close_now(w);
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg rl_watch_methods[] = {
  {"stats",    rl_watch_stats},
  {"ignored",  rl_watch_ignored},
  {"close",    rl_watch_close},
  {NULL, NULL},
};

static const luaL_Reg rl_watch_meta[] = {
  {"__gc",     rl_watch_close},
  {"__close",  rl_watch_close},
  {NULL, NULL},
};

static const luaL_Reg rl_watch_functions[] = {
  {"watch",    rl_watch_new},
  {NULL, NULL},
};

void rl_watch_open(lua_State *L)
{
  luaL_newmetatable(L, RL_WATCHER_MT);
  luaL_setfuncs(L, rl_watch_meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, rl_watch_methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_setfuncs(L, rl_watch_functions, 0);
}
