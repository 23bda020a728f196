/*
 * core.c: the reload.core module table: each primitive's registration (proc.c, glob.c, watch.c,
 * file.c), the version, and two entries for tests (_stats, _timer_probe). This file knows only
 * that the primitives exist.
 */
#include "core.h"

#include <stdlib.h>

const char *rl_self_exe = NULL;

/* core._stats() -> { handles = n, refs = n } */
static int rl_core_stats(lua_State *L)
{
  lua_createtable(L, 0, RL_STAT_COUNT);
  lua_pushinteger(L, rl_stat(RL_STAT_HANDLES));
  lua_setfield(L, -2, "handles");
  lua_pushinteger(L, rl_stat(RL_STAT_REFS));
  lua_setfield(L, -2, "refs");
  return 1;
}

/* A one-shot timer on the core's loop, for the spec that proves luv and the core share one loop
 * (both must fire in the same uv.run()). core._timer_probe(ms, fn) */
typedef struct {
  uv_timer_t timer;
  lua_State *L;
  int ref;
} rl_probe_t;

static void rl_probe_closed(uv_handle_t *h)
{
  free(h->data);
  rl_stat_add(RL_STAT_HANDLES, -1);
}

static void rl_probe_fire(uv_timer_t *t)
{
  rl_probe_t *p = t->data;
  lua_State *L = p->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, p->ref);
  rl_unref(L, &p->ref);
  uv_close((uv_handle_t *)t, rl_probe_closed);
  rl_call(L, 0);
}

static int rl_core_timer_probe(lua_State *L)
{
  lua_Integer ms = luaL_checkinteger(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  rl_probe_t *p = malloc(sizeof *p);
  if (!p)
    return luaL_error(L, "out of memory");
  int err = uv_timer_init(rl_loop(L), &p->timer);
  if (err) {
    free(p);
    return rl_push_error(L, err);
  }
  p->L = rl_main_thread(L);
  p->ref = rl_ref(L, 2);
  p->timer.data = p;
  rl_stat_add(RL_STAT_HANDLES, 1);
  uv_timer_start(&p->timer, rl_probe_fire, (uint64_t)(ms < 0 ? 0 : ms), 0);
  lua_pushboolean(L, 1);
  return 1;
}

/* clang-format off */
static const luaL_Reg rl_core_functions[] = {
  {"_timer_probe",  rl_core_timer_probe},
  {"_stats",        rl_core_stats},
  {NULL, NULL},
};
/* clang-format on */

int luaopen_reload_core(lua_State *L)
{
  /* luv owns the loop: make sure it is loaded (and so has its loop) before anything uses it. */
  lua_getglobal(L, "require");
  lua_pushstring(L, "luv");
  lua_call(L, 1, 0);

  luaL_newlib(L, rl_core_functions);
  lua_pushstring(L, RELOAD_VERSION);
  lua_setfield(L, -2, "version");
  rl_proc_open(L);
  rl_glob_open(L);
  rl_watch_open(L);
  rl_http_open(L);
  rl_file_open(L);
  rl_pty_open(L);
  return 1;
}
