/*
 * watch.c: the Lua binding of the recursive watcher: core.watch{...} -> Watcher (metatable
 * reload.Watcher). It reads the options, starts the chosen backend, hands each batch of events
 * (and each queued problem) to Lua, and closes. How a tree is watched is watch.h's parts' job.
 *
 * The watcher reports facts: paths that were created, modified, removed or renamed, and files
 * whose writer closed them, one batch per read of the inotify fd or per polling scan. An event
 * is `settled` unless a writer may still hold the file (an inotify create or modify of a file,
 * until its close): the engine's save model waits for those. What a change means (debounce,
 * rebuild) is the engine's.
 *
 * Lifetime: the handle is held in the registry while open (its callbacks may fire); the C state
 * is freed by the close callback of its last libuv handle.
 */
#include "watch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core.h"
#include "glob.h"

#define RL_WATCHER_MT "reload.Watcher"

/* Delivery ------------------------------------------------------------------------------------- */

int rl_watch_deliver(rl_watcher_t *w)
{
  lua_State *L = w->L;
  for (size_t i = 0; i < w->nerrors && !w->closed; i++) {
    lua_pushstring(L, w->errors[i]);
    rl_call_ref(L, w->ref_error, 1);
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
    lua_pushstring(L, rl_event_kinds[e->kind]);
    lua_setfield(L, -2, "kind");
    if (e->path) {
      lua_pushstring(L, e->path);
      lua_setfield(L, -2, "path");
      lua_pushboolean(L, e->is_dir);
      lua_setfield(L, -2, "dir");
      lua_pushboolean(L, e->settled);
      lua_setfield(L, -2, "settled");
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

/* Problems met during start-up go out on the next loop turn, not from inside core.watch. */
static void rl_watch_deliver_cb(uv_timer_t *t)
{
  rl_watch_deliver(t->data);
}

/* Lifetime ------------------------------------------------------------------------------------- */

void rl_watch_handle_closed(uv_handle_t *h)
{
  rl_watcher_t *w = h->data;
  rl_stat_add(RL_STAT_HANDLES, -1);
  if (--w->open_handles == 0)
    free(w);
}

static void rl_watch_close_now(rl_watcher_t *w)
{
  if (w->closed)
    return;
  w->closed = 1;
  if (w->top)
    rl_wdir_drop(w, w->top, 0);
  /* Both: inotify may have handed parts of the tree to polling. */
  rl_inotify_backend.stop(w);
  rl_poll_backend.stop(w);
  rl_watch_clear_batch(w);
  rl_map_free(w->seen, NULL);
  free(w->errors);
  free(w->last_error);
  free(w->stack);
  free(w->dents);
  free(w->ev);
  free(w->root);
  rl_unref(w->L, &w->ref_events);
  rl_unref(w->L, &w->ref_error);
  rl_unref(w->L, &w->ref_self);
  uv_close((uv_handle_t *)&w->timer, rl_watch_handle_closed);
}

/* Lua ------------------------------------------------------------------------------------------ */

static rl_watcher_t *rl_check_watcher(lua_State *L, int idx)
{
  return rl_box_check(L, idx, RL_WATCHER_MT, "closed watcher");
}

static const char *const rl_watch_keys[] = {"root",      "ignore",   "defaults",
                                            "gitignore", "backend",  "poll_interval_ms",
                                            "on_events", "on_error", NULL};

/* Reads and checks every option; raises on misuse. Leaves the Ignore userdata on the stack. */
static void rl_watch_options(lua_State *L, rl_watcher_t *w)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  rl_opt_keys(L, 1, rl_watch_keys);
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
  static const char *const backends[] = {"inotify", "poll", NULL};
  w->backend = rl_opt_choice(L, 1, "backend", backends, 0) ? &rl_poll_backend : &rl_inotify_backend;
  lua_pop(L, 1);
  w->poll.interval = (uint64_t)rl_opt_integer(L, 1, "poll_interval_ms", 500, 1);
  w->ig = rl_glob_options(L, 1, "ignore", w->root);
  w->ref_events = rl_opt_function(L, 1, "on_events", 1);
  w->ref_error = rl_opt_function(L, 1, "on_error", 0);
}

/* core.watch{ root=, ignore=, defaults=, gitignore=, backend=, poll_interval_ms=, on_events=,
 *             on_error= } -> Watcher | nil, err, code */
static int rl_watch_new(lua_State *L)
{
  void **box = rl_box_new(L, RL_WATCHER_MT, NULL, 1);
  rl_watcher_t *w = calloc(1, sizeof *w);
  if (!w)
    return luaL_error(L, "out of memory");
  w->in.fd = -1;
  w->in.parent_wd = -1;
  w->ref_events = w->ref_error = w->ref_self = LUA_NOREF;
  w->L = rl_main_thread(L);
  /* w is owned by the box from here, so a raise in the option checks frees it through __gc. */
  *box = w;
  w->closed = 1;
  rl_watch_options(L, w);
  lua_setiuservalue(L, -2, 1); /* the Ignore userdata lives as long as the watcher */
  struct stat st;
  if (stat(w->root, &st) < 0)
    return rl_push_error_what(L, -errno, w->root);
  if (!S_ISDIR(st.st_mode))
    return rl_push_error_what(L, UV_ENOTDIR, w->root);
  w->seen = rl_map_new();
  w->top = rl_wdir_new(NULL, "", 0);
  if (!w->seen || !w->top)
    return luaL_error(L, "out of memory");
  uv_loop_t *loop = rl_loop(L);
  uv_timer_init(loop, &w->timer);
  w->timer.data = w;
  w->open_handles = 1;
  rl_stat_add(RL_STAT_HANDLES, 1);
  w->closed = 0;
  w->ref_self = rl_ref(L, 2); /* the watcher itself, held while open (its callbacks may fire) */
  const char *what = NULL;
  int err = w->backend->start(w, loop, &what);
  if (err) {
    rl_watch_close_now(w);
    *box = NULL;
    return rl_push_error_what(L, err, what);
  }
  if (w->nerrors && !w->poll.repeating)
    uv_timer_start(&w->timer, rl_watch_deliver_cb, 0, 0);
  lua_pushvalue(L, 2);
  return 1;
}

/* watcher:stats() -> { backend=, dirs=, watches=, files=, polled_dirs=, events=, errors=,
 *                      last_error= } */
static int rl_watch_stats(lua_State *L)
{
  rl_watcher_t *w = rl_check_watcher(L, 1);
  lua_createtable(L, 0, 8);
  lua_pushstring(L, w->backend->name);
  lua_setfield(L, -2, "backend");
  lua_pushinteger(L, (lua_Integer)(w->in.watches + w->poll.dirs));
  lua_setfield(L, -2, "dirs");
  lua_pushinteger(L, (lua_Integer)w->in.watches);
  lua_setfield(L, -2, "watches");
  lua_pushinteger(L, (lua_Integer)w->poll.dirs);
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
  rl_box_at(L, 1, RL_WATCHER_MT);
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
  void **box = rl_box_at(L, 1, RL_WATCHER_MT);
  rl_watcher_t *w = *box;
  *box = NULL;
  if (w && !w->open_handles) {
    /* never started: only the options were read */
    rl_unref(L, &w->ref_events);
    rl_unref(L, &w->ref_error);
    if (w->top)
      rl_wdir_drop(w, w->top, 0);
    rl_map_free(w->seen, NULL);
    free(w->root);
    free(w);
  } else if (w) {
    rl_watch_close_now(w);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* clang-format off */
static const luaL_Reg rl_watch_methods[] = {
  {"stats",    rl_watch_stats},
  {"ignored",  rl_watch_ignored},
  {"close",    rl_watch_close},
  {NULL, NULL},
};
/* clang-format on */

/* clang-format off */
static const luaL_Reg rl_watch_meta[] = {
  {"__gc",     rl_watch_close},
  {"__close",  rl_watch_close},
  {NULL, NULL},
};
/* clang-format on */

/* clang-format off */
static const luaL_Reg rl_watch_functions[] = {
  {"watch",    rl_watch_new},
  {NULL, NULL},
};
/* clang-format on */

void rl_watch_open(lua_State *L)
{
  rl_class(L, RL_WATCHER_MT, rl_watch_meta, rl_watch_methods);
  luaL_setfuncs(L, rl_watch_functions, 0);
}
