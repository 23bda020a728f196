/*
 * watch_walk.c: the walk of a subtree that inotify covers (watch.h): every directory is read,
 * each entry decided with the ignore rules (an ignored directory is never entered, so it costs
 * nothing), a new directory gets its record and its watch before it is read, so that nothing
 * created between the read and the watch goes unseen; a record the walk did not reach is gone
 * or ignored now, and is forgotten (mark and sweep).
 *
 * The first walk of a tree shares its directory reads with a helper thread: on a large tree
 * the start-up is kernel time, and over half of it goes to reading directories (open,
 * getdents64, close), which a second CPU takes over while the loop thread decides and adds
 * watches. A visit copies the list of rules that apply to it, because its parent's visit is
 * freed before it is read. Every later walk runs on the loop thread alone.
 */
#include "watch.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "longpath.h"

typedef struct {
  char *buf;
  size_t len, cap;
  int has_gitignore;
} rl_listing_t;

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
    if (!fresh && c->by != &rl_inotify_backend)
      continue; /* polled: its snapshot covers it */
    if (fresh && rl_inotify_backend.cover(w, c, path->s, rel, v->report) < 0)
      continue; /* polled from now on, or gone */
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

void rl_watch_walk(rl_watcher_t *w, rl_wdir_t *d, int report, int reread, int helper)
{
  rl_buf_t rel = {0}, abs = {0};
  if (rl_wdir_path(d, &rel) == 0 && rl_buf_abs(&abs, w, rel.s, rel.len) == 0) {
    size_t depth = rl_watch_stack(w, rel.s, rel.len);
    w->gen++;
    rl_visit_t *v;
    if (depth && (v = rl_visit_new(d, abs.s, abs.len, w->stack, depth - 1, report)))
      rl_watch_visit_all(w, v, reread, helper);
  }
  free(rel.s);
  free(abs.s);
}
