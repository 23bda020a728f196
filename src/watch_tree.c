/*
 * watch_tree.c: the watcher's tree of directory records and its batch of events (watch.h).
 * Records know their name, parent and children, and which backend covers them; a record
 * dropped is forgotten by its backend. Pure C on the loop thread: no Lua, no system calls but
 * reading .gitignore files through ignore.c.
 */
#include "watch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const rl_event_kinds[RL_EV_COUNT] = {"create", "modify",   "remove",    "rename",
                                                 "close",  "overflow", "root-gone", "root-back"};

/* Helpers -------------------------------------------------------------------------------------- */

int rl_grow(void **p, size_t *cap, size_t need, size_t size)
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

int rl_buf_set(rl_buf_t *b, size_t len, const char *add, size_t addlen)
{
  if (rl_grow((void **)&b->s, &b->cap, len + addlen + 2, 1) < 0)
    return -1;
  memcpy(b->s + len, add, addlen);
  b->len = len + addlen;
  b->s[b->len] = '\0';
  return 0;
}

void rl_watch_problem(rl_watcher_t *w, const char *fmt, const char *a, const char *b)
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

int rl_buf_abs(rl_buf_t *b, const rl_watcher_t *w, const char *rel, size_t rellen)
{
  /* For the root "/" (rootlen 0) the root itself is "" and a child "/name". */
  if (rl_buf_set(b, 0, w->root, w->rootlen) < 0)
    return -1;
  if (rellen && (rl_buf_set(b, b->len, "/", 1) < 0 || rl_buf_set(b, b->len, rel, rellen) < 0))
    return -1;
  return 0;
}

/* Events --------------------------------------------------------------------------------------- */

void rl_watch_emit(rl_watcher_t *w, int kind, const char *path, int is_dir, const char *from)
{
  rl_watch_emit_as(w, kind, path, is_dir, from, 1);
}

void rl_watch_emit_as(rl_watcher_t *w, int kind, const char *path, int is_dir, const char *from,
                      int settled)
{
  size_t len = path ? strlen(path) : 0;
  if (kind == RL_EV_ROOT_GONE || kind == RL_EV_ROOT_BACK) {
    path = kind == RL_EV_ROOT_GONE ? "\n-" : "\n+"; /* once each per batch, like overflow */
    len = 2;
  } else if (kind == RL_EV_OVERFLOW) {
    path = "\n"; /* one overflow per batch: a key no path can have */
    len = 1;
  }
  uintptr_t prev = (uintptr_t)rl_map_get(w->seen, path, len);
  if (prev) {
    rl_event_t *p = &w->ev[prev - 1];
    /* Within one batch a modify adds nothing to an earlier event for the same path that still
     * stands (create, modify, rename to it), unless the file was closed since (a writer opened
     * it again); a second close adds nothing to a close. Anything else is kept: never lose a
     * distinct fact. */
    if ((kind == RL_EV_MODIFY && p->kind != RL_EV_REMOVE && p->kind != RL_EV_CLOSE) ||
        kind == RL_EV_OVERFLOW || kind == RL_EV_ROOT_GONE || kind == RL_EV_ROOT_BACK ||
        (kind == p->kind && (kind == RL_EV_CREATE || kind == RL_EV_CLOSE)))
      return;
  }
  if (rl_grow((void **)&w->ev, &w->evcap, w->nev + 1, sizeof *w->ev) < 0)
    return;
  rl_event_t *e = &w->ev[w->nev];
  e->kind = kind;
  e->is_dir = is_dir;
  e->settled = settled;
  e->path = kind >= RL_EV_OVERFLOW ? NULL : strdup(path);
  e->from = from ? strdup(from) : NULL;
  int oom;
  w->nev++;
  rl_map_put(w->seen, path, len, (void *)(uintptr_t)w->nev, &oom);
}

void rl_watch_clear_batch(rl_watcher_t *w)
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

/* Records -------------------------------------------------------------------------------------- */

rl_wdir_t *rl_wdir_new(rl_wdir_t *parent, const char *name, size_t namelen)
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

rl_wdir_t *rl_wdir_child(rl_wdir_t *d, const char *name, size_t len)
{
  for (rl_wdir_t *c = d->child; c; c = c->next)
    if (c->namelen == len && !memcmp(c->name, name, len))
      return c;
  return NULL;
}

void rl_wdir_unlink(rl_wdir_t *d)
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

int rl_wdir_path(const rl_wdir_t *d, rl_buf_t *b)
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

int rl_wdir_move(rl_wdir_t *d, rl_wdir_t *parent, const char *name)
{
  char *copy = strdup(name);
  if (!copy)
    return -1;
  rl_wdir_unlink(d);
  free(d->name);
  d->name = copy;
  d->namelen = strlen(copy);
  d->parent = parent;
  d->next = parent->child;
  parent->child = d;
  return 0;
}

void rl_wdir_drop(rl_watcher_t *w, rl_wdir_t *d, int rm)
{
  while (d->child)
    rl_wdir_drop(w, d->child, rm);
  rl_wdir_unlink(d);
  if (d->by)
    d->by->forget(w, d, rm);
  if (d == w->top)
    w->top = NULL;
  free(d->name);
  free(d);
}

size_t rl_watch_stack(rl_watcher_t *w, const char *rel, size_t len)
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

int rl_watch_ignored_in(rl_watcher_t *w, const rl_buf_t *dpath, const char *rel, size_t len,
                        int is_dir)
{
  size_t depth = rl_watch_stack(w, dpath->s, dpath->len);
  return rl_ignore_decide(w->ig, w->stack, depth, rel, len, is_dir);
}
