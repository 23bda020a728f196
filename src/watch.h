/*
 * watch.h: the parts of the recursive watcher (core.watch) and the one interface between them.
 *
 *   watch.c          the Lua binding: options, lifetime, handing each batch to Lua
 *   watch_tree.c     the tree of directory records, the batch of events, queued problems
 *   watch_walk.c     reading a subtree and deciding, with the ignore rules, what is watched
 *   watch_inotify.c  the inotify backend: a watch per directory, events read from its fd
 *   watch_poll.c     the polling backend: snapshots of a subtree compared on a timer
 *
 * One way through: a backend learns of a change (an inotify event, a difference between two
 * snapshots) -> it updates the tree and puts an event in the batch (rl_watch_emit, which
 * coalesces) -> at the end of a read or a scan it calls rl_watch_deliver (watch.c), which calls
 * Lua once with the whole batch. A new field of an event goes in rl_event_t, rl_watch_emit and
 * rl_watch_deliver; a step between a change and its delivery (settling, say) goes before
 * rl_watch_deliver, where the batch is complete.
 *
 * A backend covers directory records (rl_backend_t, d->by). inotify covers each directory of
 * the tree with a watch and hands a subtree it cannot watch (ENOSPC) to polling, which covers
 * it from its top record alone. The tree asks a record's backend to rescan or forget it; it
 * never knows what a watch or a snapshot is.
 *
 * Threads: everything runs on the loop thread, except the directory reads of the first walk
 * (watch_walk.c says how they are shared).
 */
#ifndef RELOAD_WATCH_H
#define RELOAD_WATCH_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <uv.h>

#include "ignore.h"
#include "map.h"

typedef struct rl_watcher rl_watcher_t;
typedef struct rl_wdir rl_wdir_t;

/* Events --------------------------------------------------------------------------------------- */

enum {
  RL_EV_CREATE,
  RL_EV_MODIFY,
  RL_EV_REMOVE,
  RL_EV_RENAME,
  RL_EV_CLOSE, /* a writer closed the file (IN_CLOSE_WRITE) */
  RL_EV_OVERFLOW,
  RL_EV_ROOT_GONE, /* the root itself was deleted, moved away or unmounted: nothing is watched */
  RL_EV_ROOT_BACK, /* a directory is at the root's path again: watched and walked anew */
  RL_EV_COUNT
};
extern const char *const rl_event_kinds[RL_EV_COUNT]; /* "create", ... */

typedef struct {
  char *path, *from; /* relative; from: a rename's old path */
  int kind, is_dir;
  int settled; /* 0 while a writer may still hold the file (an inotify create or modify) */
} rl_event_t;

/* Backends ------------------------------------------------------------------------------------- */

typedef struct {
  const char *name;
  /* Starts covering the tree from w->top (the first walk, or the first snapshot). 0, or a
   * negative errno with *what the step that failed (the watcher is then closed). */
  int (*start)(rl_watcher_t *w, uv_loop_t *loop, const char **what);
  /* Covers the new record d (abs: its absolute path, rel: relative; report: it is new, so what
   * it holds is reported as created). 0, or -1 when d is not covered by this backend: handed to
   * another, or dropped (already watched elsewhere, gone). */
  int (*cover)(rl_watcher_t *w, rl_wdir_t *d, const char *abs, const char *rel, int report);
  /* Takes d's subtree again: its .gitignore rules changed (reread), events were lost, it moved.
   * report: what is found is new. */
  void (*rescan)(rl_watcher_t *w, rl_wdir_t *d, int report, int reread);
  /* d is being forgotten; rm: also what the kernel holds for it (a deleted directory's watch
   * is gone already). */
  void (*forget)(rl_watcher_t *w, rl_wdir_t *d, int rm);
  /* No callback after this; handles are closed with rl_watch_handle_closed. */
  void (*stop)(rl_watcher_t *w);
} rl_backend_t;

extern const rl_backend_t rl_inotify_backend; /* watch_inotify.c */
extern const rl_backend_t rl_poll_backend;    /* watch_poll.c */

/* The tree ------------------------------------------------------------------------------------- */

/* A directory of the tree that a backend covers (or the top of a polled part). */
struct rl_wdir {
  const rl_backend_t *by; /* NULL: not covered (its watch was dropped by the kernel) */
  int wd;                 /* inotify: its watch, else -1 */
  struct rl_snap *snap;   /* polling: the subtree's last snapshot */
  uint32_t gen;           /* last walk that saw it (mark and sweep) */
  struct rl_wdir *parent, *child, *next;
  size_t namelen;
  char *name;
};

/* The watcher: each part's state in a section of its own. */
struct rl_watcher {
  lua_State *L; /* main thread */
  /* The tree (watch_tree.c, watch_walk.c). */
  char *root;     /* absolute, no trailing '/' */
  size_t rootlen; /* 0 for "/" */
  rl_ignore_t *ig;
  const rl_backend_t *backend; /* the one chosen: inotify or poll */
  rl_wdir_t *top;
  uint32_t gen;
  const rl_ilist_t **stack; /* the .gitignore lists of a path's ancestors */
  size_t stackcap;
  char *dents;   /* the loop thread's getdents64 buffer */
  size_t nfiles; /* approximate after start */
  /* The batch and queued problems (watch_tree.c), delivered by watch.c. */
  rl_event_t *ev;
  size_t nev, evcap;
  rl_map_t *seen; /* path -> index + 1 in ev, for coalescing */
  char **errors;
  size_t nerrors, errorcap, errors_total, nevents;
  char *last_error;
  /* inotify (watch_inotify.c). */
  struct {
    int fd;
    uv_poll_t handle;
    int handle_inited;
    rl_wdir_t **wdtab; /* wd -> record, open addressing */
    size_t wdcap, wdcount;
    struct rl_pending *pend; /* IN_MOVED_FROM halves waiting for their IN_MOVED_TO */
    size_t npend, pendcap;
    int *redo; /* watches of directories to walk again after this batch (.gitignore changed) */
    size_t nredo, redocap;
    size_t watches;
    int enospc_reported;
    uv_timer_t root_timer; /* while the root is gone: looks for its path again */
    int root_timer_inited, root_lost;
    int parent_wd; /* the watch on the root's parent (its removal, its replacement), or -1 */
  } in;
  /* Polling (watch_poll.c). */
  struct {
    rl_wdir_t **tops; /* tops of polled parts */
    size_t n, cap;
    size_t dirs; /* directories covered */
    uint64_t interval;
    int repeating; /* the timer runs scans */
  } poll;
  /* Lifetime (watch.c). The timer runs polling scans, or fires once to deliver problems met
   * during start-up. */
  uv_timer_t timer;
  int open_handles, closed;
  int ref_events, ref_error, ref_self;
};

/* Grows *p (an array of *cap items of size bytes) to hold need items. 0, or -1 (out of
 * memory, *p unchanged). */
int rl_grow(void **p, size_t *cap, size_t need, size_t size);

/* A growable string: a path being built. */
typedef struct {
  char *s;
  size_t len, cap;
} rl_buf_t;

/* b = b[0..len) + add[0..addlen), NUL-terminated. 0 or -1. */
int rl_buf_set(rl_buf_t *b, size_t len, const char *add, size_t addlen);
/* b = the absolute path of rel: root "/" rel, or root for "" ("" for the root "/"). */
int rl_buf_abs(rl_buf_t *b, const rl_watcher_t *w, const char *rel, size_t rellen);

rl_wdir_t *rl_wdir_new(rl_wdir_t *parent, const char *name, size_t namelen);
rl_wdir_t *rl_wdir_child(rl_wdir_t *d, const char *name, size_t len);
void rl_wdir_unlink(rl_wdir_t *d);
/* Makes d a child of parent under name (a directory moved within the tree). -1: no memory. */
int rl_wdir_move(rl_wdir_t *d, rl_wdir_t *parent, const char *name);
/* The path of d relative to the root into b ("" for the root). */
int rl_wdir_path(const rl_wdir_t *d, rl_buf_t *b);
/* Forgets d and everything below it, each through its backend (rm: see rl_backend_t.forget). */
void rl_wdir_drop(rl_watcher_t *w, rl_wdir_t *d, int rm);

/* The .gitignore lists of every directory from the root down to rel (inclusive) into w->stack;
 * returns the depth. */
size_t rl_watch_stack(rl_watcher_t *w, const char *rel, size_t len);
/* Is rel (a path inside the directory dpath, itself not ignored) ignored? */
int rl_watch_ignored_in(rl_watcher_t *w, const rl_buf_t *dpath, const char *rel, size_t len,
                        int is_dir);

/* Puts an event in the batch, coalesced: within one batch a modify adds nothing to an earlier
 * event of the same path that still stands, and there is one overflow at most. */
void rl_watch_emit(rl_watcher_t *w, int kind, const char *path, int is_dir, const char *from);
/* The same, saying whether a writer may still hold the file (settled = 0: an inotify create or
 * modify of a file, until its close). rl_watch_emit is settled = 1. */
void rl_watch_emit_as(rl_watcher_t *w, int kind, const char *path, int is_dir, const char *from,
                      int settled);
/* Empties the batch and the queued problems. */
void rl_watch_clear_batch(rl_watcher_t *w);
/* Queues a non-fatal problem for on_error (delivered with the next batch, never from inside a
 * walk, so that a callback that closes the watcher cannot pull the tree from under it). fmt
 * takes two strings; b may be NULL. */
void rl_watch_problem(rl_watcher_t *w, const char *fmt, const char *a, const char *b);

/* The walk (watch_walk.c) ---------------------------------------------------------------------- */

#define RL_DENTS_SIZE 65536

/* Walks the subtree of d, which inotify covers: covers every directory below that is not
 * ignored, and forgets the records of those that are gone or now ignored. report: emit
 * "create" for everything found (a new directory). reread: read .gitignore files again.
 * helper: share the reads with a second thread (the first walk of a tree, which may be
 * large). */
void rl_watch_walk(rl_watcher_t *w, rl_wdir_t *d, int report, int reread, int helper);

/* The binding (watch.c) ------------------------------------------------------------------------ */

/* Delivers the queued problems, then the batch, to Lua. Returns -1 when a callback closed the
 * watcher (the caller must not touch it further). */
int rl_watch_deliver(rl_watcher_t *w);
/* The close callback of every handle of a watcher: the last one frees it. */
void rl_watch_handle_closed(uv_handle_t *h);

#endif
