/*
 * watch_inotify.c: the inotify backend (watch.h): one watch per directory, read in batches from
 * a uv_poll on the inotify fd. The walk (watch_walk.c) adds the watches; this file turns the
 * kernel's events into the tree's records and the batch's events: the halves of a move paired
 * by cookie, a new directory watched and read at once (what was created before its watch
 * existed is reported), a .gitignore edit walked again, a queue overflow reported once and
 * repaired by a walk. A directory it cannot watch (ENOSPC) is handed to polling.
 *
 * The root itself can go (rm -rf, a move, an unmount). Its own watch says so (IN_DELETE_SELF)
 * only once nothing holds the directory, and a process whose working directory it is (reload
 * itself, the commands it runs) does: so the root's parent is watched too, for removals and
 * renames of the root's name alone (RL_PARENT_MASK: no creations, no writes beside the project).
 * When the root is gone, the tree is forgotten, "root-gone" reported, and a timer looks for a
 * directory at the root's path every RL_ROOT_POLL_MS; once there is one, it is watched and
 * walked like a new tree, and "root-back" and an overflow (anything may have changed) are
 * reported. A timer rather than creations in the parent: it sees the root come back whichever
 * of its ancestors went with it, and runs only while the root is missing. The price is up to
 * RL_ROOT_POLL_MS of latency, once, which the walk makes safe: what was created before the
 * watch is found.
 */
#include "watch.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "binding.h"
#include "longpath.h"

#define RL_WATCH_MASK                                                                             \
  (IN_CREATE | IN_DELETE | IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | \
   IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)
/* Reads per fd wake-up before the batch is delivered: bounds the time spent in one callback
 * while a tool floods the tree. */
#define RL_READS_PER_BATCH 64
/* While the root is gone: how often its path is looked at. */
#define RL_ROOT_POLL_MS 100
/* The root's parent: an entry removed or renamed away, or one renamed over it; the parent's
 * own removal or move. IN_MASK_ADD: should the parent be a directory of the tree too (a bind
 * mount), its watch keeps what the tree needs. */
#define RL_PARENT_MASK                                                                    \
  (IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | \
   IN_MASK_ADD)

/* The first half of a move (IN_MOVED_FROM), waiting for its IN_MOVED_TO. */
typedef struct rl_pending {
  uint32_t cookie;
  int is_dir, wd; /* wd of the moved directory's own watch, or -1 */
  char *path;
} rl_pending_t;

/* The wd table: wd -> record ------------------------------------------------------------------- */

static size_t rl_wd_slot(const rl_watcher_t *w, int wd)
{
  return ((size_t)wd * 2654435761u) & (w->in.wdcap - 1);
}

static rl_wdir_t *rl_wd_get(const rl_watcher_t *w, int wd)
{
  if (!w->in.wdcap || wd < 0)
    return NULL;
  for (size_t i = rl_wd_slot(w, wd);; i = (i + 1) & (w->in.wdcap - 1)) {
    if (!w->in.wdtab[i])
      return NULL;
    if (w->in.wdtab[i]->wd == wd)
      return w->in.wdtab[i];
  }
}

static void rl_wd_insert(rl_watcher_t *w, rl_wdir_t *d)
{
  size_t i = rl_wd_slot(w, d->wd);
  while (w->in.wdtab[i])
    i = (i + 1) & (w->in.wdcap - 1);
  w->in.wdtab[i] = d;
}

static int rl_wd_put(rl_watcher_t *w, rl_wdir_t *d)
{
  if ((w->in.wdcount + 1) * 2 > w->in.wdcap) {
    size_t cap = w->in.wdcap ? w->in.wdcap * 2 : 256;
    rl_wdir_t **tab = calloc(cap, sizeof *tab);
    if (!tab)
      return -1;
    rl_wdir_t **old = w->in.wdtab;
    size_t oldcap = w->in.wdcap;
    w->in.wdtab = tab;
    w->in.wdcap = cap;
    for (size_t i = 0; i < oldcap; i++)
      if (old[i])
        rl_wd_insert(w, old[i]);
    free(old);
  }
  rl_wd_insert(w, d);
  w->in.wdcount++;
  return 0;
}

static void rl_wd_del(rl_watcher_t *w, int wd)
{
  if (!w->in.wdcap || wd < 0)
    return;
  size_t i = rl_wd_slot(w, wd);
  while (w->in.wdtab[i] && w->in.wdtab[i]->wd != wd)
    i = (i + 1) & (w->in.wdcap - 1);
  if (!w->in.wdtab[i])
    return;
  w->in.wdtab[i] = NULL;
  w->in.wdcount--;
  /* Re-insert the rest of the cluster (linear probing deletion). */
  for (size_t j = (i + 1) & (w->in.wdcap - 1); w->in.wdtab[j]; j = (j + 1) & (w->in.wdcap - 1)) {
    rl_wdir_t *d = w->in.wdtab[j];
    w->in.wdtab[j] = NULL;
    rl_wd_insert(w, d);
  }
}

/* Watches -------------------------------------------------------------------------------------- */

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
  if (w->in.enospc_reported)
    return;
  w->in.enospc_reported = 1;
  /* The machine's limit, and this user namespace's own (a container's may be lower: the
   * lowest on the way up is the one that was hit). */
  char global[32], ns[32], limit[160];
  rl_read_limit("/proc/sys/fs/inotify/max_user_watches", global, sizeof global);
  rl_read_limit("/proc/sys/user/max_inotify_watches", ns, sizeof ns);
  if (strtoull(ns, NULL, 10) && strtoull(ns, NULL, 10) < strtoull(global, NULL, 10))
    snprintf(limit, sizeof limit, "%s; this user namespace's user.max_inotify_watches = %s", global,
             ns);
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
static int rl_inotify_cover(rl_watcher_t *w, rl_wdir_t *d, const char *abs, const char *rel,
                            int report)
{
  int wd = rl_inotify_add(w->in.fd, abs, RL_WATCH_MASK);
  if (wd < 0) {
    if (errno == ENOSPC) {
      rl_watch_enospc(w, rel);
      rl_poll_backend.cover(w, d, abs, rel, report);
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
  d->by = &rl_inotify_backend;
  rl_wd_put(w, d);
  w->in.watches++;
  return 0;
}

/* Events --------------------------------------------------------------------------------------- */

static void rl_root_check(uv_timer_t *t);

/* Watches the root's parent (none for "/", or when it cannot be watched: then the root's own
 * watch alone tells). */
static void rl_parent_watch(rl_watcher_t *w)
{
  w->in.parent_wd = -1;
  const char *slash = w->rootlen ? strrchr(w->root, '/') : NULL;
  if (!slash)
    return;
  size_t len = slash == w->root ? 1 : (size_t)(slash - w->root);
  char *parent = strndup(w->root, len);
  int wd = parent ? rl_inotify_add(w->in.fd, parent, RL_PARENT_MASK) : -1;
  free(parent);
  if (wd >= 0 && !rl_wd_get(w, wd))
    w->in.parent_wd = wd;
}

/* An event of the parent's watch: is it the root going (or being replaced)? */
static int rl_parent_says_gone(rl_watcher_t *w, const struct inotify_event *ev)
{
  if (ev->mask & IN_IGNORED) {
    w->in.parent_wd = -1;
    return 0;
  }
  if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF))
    return 1; /* the root went with it, or is no longer at its path */
  const char *name = strrchr(w->root, '/') + 1;
  return ev->len && !strcmp(ev->name, name);
}

/* A directory appeared (created, or moved in from outside): watch it and report what is in it
 * already, since files created before its watch existed produce no event. */
static void rl_watch_new_dir(rl_watcher_t *w, rl_wdir_t *parent, const char *name, const char *rel)
{
  rl_wdir_t *c = rl_wdir_child(parent, name, strlen(name));
  if (c)
    rl_wdir_drop(w, c, 1); /* a stale record of the same name */
  c = rl_wdir_new(parent, name, strlen(name));
  if (!c)
    return;
  rl_buf_t abs = {0};
  if (rl_buf_abs(&abs, w, rel, strlen(rel)) == 0) {
    if (rl_inotify_cover(w, c, abs.s, rel, 1) == 0) {
      free(abs.s);
      rl_watch_walk(w, c, 1, 0, 0);
      return;
    }
  } else {
    rl_wdir_drop(w, c, 0);
  }
  free(abs.s);
}

static void rl_watch_redo(rl_watcher_t *w, rl_wdir_t *d)
{
  for (size_t i = 0; i < w->in.nredo; i++)
    if (w->in.redo[i] == d->wd)
      return;
  if (rl_grow((void **)&w->in.redo, &w->in.redocap, w->in.nredo + 1, sizeof *w->in.redo) == 0)
    w->in.redo[w->in.nredo++] = d->wd;
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
  rl_pending_t *p = &w->in.pend[i];
  if (as_remove) {
    rl_watch_emit(w, RL_EV_REMOVE, p->path, p->is_dir, NULL);
    rl_wdir_t *d = rl_wd_get(w, p->wd);
    if (d && d != w->top)
      rl_wdir_drop(w, d, 1);
  }
  free(p->path);
  w->in.pend[i] = w->in.pend[--w->in.npend];
}

static void rl_watch_moved_to(rl_watcher_t *w, rl_wdir_t *d, const struct inotify_event *ev,
                              const char *rel, int ignored)
{
  size_t i = 0;
  while (i < w->in.npend && w->in.pend[i].cookie != ev->cookie)
    i++;
  int is_dir = (ev->mask & IN_ISDIR) != 0;
  if (i == w->in.npend) {
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
  rl_pending_t *p = &w->in.pend[i];
  rl_watch_emit(w, RL_EV_RENAME, rel, is_dir, p->path);
  rl_wdir_t *moved = rl_wd_get(w, p->wd);
  if (is_dir && moved && moved != w->top) {
    /* The watches moved with the directory: keep them, rename the record, and walk it again
     * for the rules that hold at its new place. */
    size_t namelen = strlen(ev->name);
    rl_wdir_t *stale = rl_wdir_child(d, ev->name, namelen);
    if (stale && stale != moved)
      rl_wdir_drop(w, stale, 1);
    if (rl_wdir_move(moved, d, ev->name) == 0) {
      free(p->path);
      w->in.pend[i] = w->in.pend[--w->in.npend];
      rl_watch_walk(w, moved, 0, 1, 0);
      return;
    }
  } else if (is_dir && !moved) {
    rl_watch_new_dir(w, d, ev->name, rel); /* it was not watched at its old place */
  }
  free(p->path);
  w->in.pend[i] = w->in.pend[--w->in.npend];
}

/* The root is gone. Every record below it is forgotten with its watch (a moved root's watches
 * would still follow it to its new name), and the timer looks for the path. */
static void rl_root_lost(rl_watcher_t *w)
{
  if (w->in.root_lost || !w->top)
    return;
  w->in.root_lost = 1;
  if (w->in.parent_wd >= 0)
    inotify_rm_watch(w->in.fd, w->in.parent_wd); /* its IN_IGNORED finds no watch: dropped */
  w->in.parent_wd = -1;
  while (w->top->child)
    rl_wdir_drop(w, w->top->child, 1);
  if (w->top->by)
    w->top->by->forget(w, w->top, 1);
  for (size_t i = 0; i < w->in.npend; i++) /* moves out of a tree that is no more */
    free(w->in.pend[i].path);
  w->in.npend = 0;
  w->in.nredo = 0;
  w->nfiles = 0;
  rl_watch_emit(w, RL_EV_ROOT_GONE, NULL, 1, NULL);
  if (!w->in.root_timer_inited) { /* the first time it is needed: most watchers never do */
    uv_timer_init(w->in.handle.loop, &w->in.root_timer);
    w->in.root_timer.data = w;
    w->in.root_timer_inited = 1;
    w->open_handles++;
    rl_stat_add(RL_STAT_HANDLES, 1);
  }
  uv_timer_start(&w->in.root_timer, rl_root_check, RL_ROOT_POLL_MS, RL_ROOT_POLL_MS);
}

static void rl_watch_event(rl_watcher_t *w, const struct inotify_event *ev, rl_buf_t *dpath,
                           rl_buf_t *path)
{
  if (ev->wd == w->in.parent_wd) {
    if (rl_parent_says_gone(w, ev))
      rl_root_lost(w);
    return;
  }
  rl_wdir_t *d = rl_wd_get(w, ev->wd);
  if (!d)
    return;
  if (d == w->top && (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF))) {
    rl_root_lost(w);
    return;
  }
  if (ev->mask & IN_IGNORED) {
    /* The kernel dropped the watch (directory deleted or unmounted). */
    rl_wdir_drop(w, d, 0);
    return;
  }
  if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF))
    return; /* reported through the parent's event */
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
    if (rl_grow((void **)&w->in.pend, &w->in.pendcap, w->in.npend + 1, sizeof *w->in.pend) == 0) {
      rl_wdir_t *c = is_dir ? rl_wdir_child(d, ev->name, namelen) : NULL;
      w->in.pend[w->in.npend++] =
          (rl_pending_t){ev->cookie, is_dir, c ? c->wd : -1, strdup(path->s)};
    }
  } else if (ev->mask & IN_CREATE) {
    /* A file created through open() is closed later; one made by link(), symlink() or mknod()
     * never is, and settles by the engine's cap. */
    rl_watch_emit_as(w, RL_EV_CREATE, path->s, is_dir, NULL, is_dir);
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
    rl_watch_emit_as(w, RL_EV_MODIFY, path->s, is_dir, NULL, is_dir);
  } else if (ev->mask & IN_CLOSE_WRITE) {
    if (!is_dir)
      rl_watch_emit(w, RL_EV_CLOSE, path->s, 0, NULL);
  } else if ((ev->mask & IN_ATTRIB) && !is_dir && rl_mtime_changed(w->root, path->s)) {
    rl_watch_emit(w, RL_EV_MODIFY, path->s, 0, NULL);
  }
  if (!strcmp(ev->name, ".gitignore") && !is_dir)
    rl_watch_redo(w, d);
}

/* The fd is readable: read up to RL_READS_PER_BATCH buffers of events, then deliver the batch. */
static void rl_inotify_read(uv_poll_t *h, int status, int events)
{
  rl_watcher_t *w = h->data;
  (void)events;
  if (status < 0) {
    rl_watch_problem(w, "inotify: %s%s", uv_strerror(status), NULL);
    rl_watch_deliver(w);
    return;
  }
  char buf[65536] __attribute__((aligned(__alignof__(struct inotify_event))));
  rl_buf_t dpath = {0}, path = {0};
  int overflow = 0;
  for (int reads = 0; reads < RL_READS_PER_BATCH; reads++) {
    ssize_t n = read(w->in.fd, buf, sizeof buf);
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
  while (w->in.npend)
    rl_pending_resolve(w, w->in.npend - 1, 1);
  for (size_t i = 0; i < w->in.nredo; i++) {
    rl_wdir_t *d = rl_wd_get(w, w->in.redo[i]);
    if (d)
      rl_watch_walk(w, d, 0, 1, 0);
  }
  w->in.nredo = 0;
  if (overflow) {
    /* Events were lost: say so once, and bring the watches back in line with the tree. */
    rl_watch_emit(w, RL_EV_OVERFLOW, NULL, 0, NULL);
    if (w->top && w->top->by == &rl_inotify_backend)
      rl_watch_walk(w, w->top, 0, 1, 0);
  }
  free(dpath.s);
  free(path.s);
  rl_watch_deliver(w);
}

/* The root's return ------------------------------------------------------------------------------
 */

/* A directory is at the root's path again (a new one, or the old one moved back): watch it,
 * walk it as a new tree, and say so with an overflow. Until then, try again at the next tick. */
static void rl_root_check(uv_timer_t *t)
{
  rl_watcher_t *w = t->data;
  const char *abs = w->rootlen ? w->root : "/";
  struct stat st;
  if (!w->top || stat(abs, &st) < 0 || !S_ISDIR(st.st_mode))
    return;
  int wd = rl_inotify_add(w->in.fd, abs, RL_WATCH_MASK);
  if (wd < 0)
    return; /* gone again in between, or no watch to be had yet */
  uv_timer_stop(t);
  w->in.root_lost = 0;
  w->top->wd = wd;
  w->top->by = &rl_inotify_backend;
  rl_wd_put(w, w->top);
  w->in.watches++;
  rl_parent_watch(w);
  rl_watch_emit(w, RL_EV_ROOT_BACK, NULL, 1, NULL);
  rl_watch_walk(w, w->top, 0, 1, 0);
  rl_watch_emit(w, RL_EV_OVERFLOW, NULL, 0, NULL);
  rl_watch_deliver(w);
}

/* The backend ---------------------------------------------------------------------------------- */

static int rl_inotify_start(rl_watcher_t *w, uv_loop_t *loop, const char **what)
{
  w->in.fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (w->in.fd < 0) {
    *what = "inotify_init1";
    return -errno;
  }
  if (!(w->dents = malloc(RL_DENTS_SIZE))) {
    *what = "the walk's buffer";
    return UV_ENOMEM;
  }
  int err = uv_poll_init(loop, &w->in.handle, w->in.fd);
  if (err) {
    *what = "uv_poll_init";
    return err;
  }
  w->in.handle_inited = 1;
  w->in.handle.data = w;
  w->open_handles++;
  rl_stat_add(RL_STAT_HANDLES, 1);
  if (rl_inotify_cover(w, w->top, w->rootlen ? w->root : "/", "", 0) == 0)
    rl_watch_walk(w, w->top, 0, 0, 1);
  rl_parent_watch(w);
  uv_poll_start(&w->in.handle, UV_READABLE, rl_inotify_read);
  return 0;
}

static void rl_inotify_rescan(rl_watcher_t *w, rl_wdir_t *d, int report, int reread)
{
  rl_watch_walk(w, d, report, reread, 0);
}

static void rl_inotify_forget(rl_watcher_t *w, rl_wdir_t *d, int rm)
{
  if (d->wd < 0)
    return;
  rl_wd_del(w, d->wd);
  if (rm)
    inotify_rm_watch(w->in.fd, d->wd);
  w->in.watches--;
  d->wd = -1;
  d->by = NULL;
}

static void rl_inotify_stop(rl_watcher_t *w)
{
  if (w->in.handle_inited) {
    uv_poll_stop(&w->in.handle);
    uv_close((uv_handle_t *)&w->in.handle, rl_watch_handle_closed);
    w->in.handle_inited = 0;
  }
  if (w->in.root_timer_inited) {
    uv_close((uv_handle_t *)&w->in.root_timer, rl_watch_handle_closed);
    w->in.root_timer_inited = 0;
  }
  if (w->in.fd >= 0)
    close(w->in.fd); /* after uv_close of the poll handle: libuv must stop watching it first */
  w->in.fd = -1;
  for (size_t i = 0; i < w->in.npend; i++)
    free(w->in.pend[i].path);
  free(w->in.pend);
  free(w->in.redo);
  free(w->in.wdtab);
  w->in.pend = NULL;
  w->in.redo = NULL;
  w->in.wdtab = NULL;
  w->in.npend = w->in.nredo = w->in.wdcap = w->in.wdcount = 0;
}

const rl_backend_t rl_inotify_backend = {
    .name = "inotify",
    .start = rl_inotify_start,
    .cover = rl_inotify_cover,
    .rescan = rl_inotify_rescan,
    .forget = rl_inotify_forget,
    .stop = rl_inotify_stop,
};
