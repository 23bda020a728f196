/*
 * binding.c: the shared layer of binding.h. Lua C API, luv's context and libuv only.
 */
#include "binding.h"

#include <string.h>

#include <luv/luv.h>

static int rl_stats[RL_STAT_COUNT];

uv_loop_t *rl_loop(lua_State *L)
{
  return luv_loop(L);
}

lua_State *rl_main_thread(lua_State *L)
{
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  lua_State *main = lua_tothread(L, -1);
  lua_pop(L, 1);
  return main;
}

int rl_push_error_what(lua_State *L, int err, const char *what)
{
  const char *name = uv_err_name(err);
  lua_pushnil(L);
  if (what)
    lua_pushfstring(L, "%s: %s (%s)", name, uv_strerror(err), what);
  else
    lua_pushfstring(L, "%s: %s", name, uv_strerror(err));
  lua_pushstring(L, name);
  return 3;
}

int rl_push_error(lua_State *L, int err)
{
  return rl_push_error_what(L, err, NULL);
}

void rl_stat_add(int which, int delta)
{
  rl_stats[which] += delta;
}

int rl_stat(int which)
{
  return rl_stats[which];
}

int rl_ref(lua_State *L, int idx)
{
  lua_pushvalue(L, idx);
  rl_stat_add(RL_STAT_REFS, 1);
  return luaL_ref(L, LUA_REGISTRYINDEX);
}

void rl_unref(lua_State *L, int *ref)
{
  if (*ref == LUA_NOREF)
    return;
  luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
  rl_stat_add(RL_STAT_REFS, -1);
}

void rl_call(lua_State *L, int nargs)
{
  /* luv's own protected call, which reload's main() replaces with one that reports and goes on.
   * NOEXIT keeps stock luv (lua5.4 + busted) from exit()ing on an error in a core callback. */
  luv_ctx_t *ctx = luv_context(L);
  ctx->cb_pcall(L, nargs, 0, LUVF_CALLBACK_NOEXIT);
}

void rl_call_ref(lua_State *L, int ref, int nargs)
{
  if (ref == LUA_NOREF) {
    lua_pop(L, nargs);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  lua_insert(L, -nargs - 1);
  rl_call(L, nargs);
}

void **rl_box_new(lua_State *L, const char *mt, void *state, int nuv)
{
  void **box = lua_newuserdatauv(L, sizeof *box, nuv);
  *box = state;
  luaL_setmetatable(L, mt);
  return box;
}

void **rl_box_at(lua_State *L, int idx, const char *mt)
{
  return luaL_checkudata(L, idx, mt);
}

void *rl_box_check(lua_State *L, int idx, const char *mt, const char *closed)
{
  void **box = luaL_checkudata(L, idx, mt);
  if (!*box)
    luaL_argerror(L, idx, closed);
  return *box;
}

void rl_class(lua_State *L, const char *mt, const luaL_Reg *meta, const luaL_Reg *methods)
{
  if (luaL_newmetatable(L, mt)) {
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
}

void rl_opt_keys(lua_State *L, int idx, const char *const keys[])
{
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    int known = 0;
    if (lua_type(L, -1) == LUA_TSTRING)
      for (int i = 0; keys[i] && !known; i++)
        known = strcmp(lua_tostring(L, -1), keys[i]) == 0;
    if (!known)
      luaL_error(L, "unknown option '%s'", luaL_tolstring(L, -1, NULL));
  }
}

int rl_opt(lua_State *L, int idx, const char *key, int type)
{
  int t = lua_getfield(L, idx, key);
  if (t == LUA_TNIL)
    return 0;
  if (t != type)
    luaL_error(L, "option '%s': %s expected, got %s", key, lua_typename(L, type),
               luaL_typename(L, -1));
  return lua_gettop(L);
}

int rl_opt_boolean(lua_State *L, int idx, const char *key, int dflt)
{
  int v = rl_opt(L, idx, key, LUA_TBOOLEAN) ? lua_toboolean(L, -1) : dflt;
  lua_pop(L, 1);
  return v;
}

int rl_opt_choice(lua_State *L, int idx, const char *key, const char *const names[], int dflt)
{
  if (!rl_opt(L, idx, key, LUA_TSTRING))
    return dflt;
  const char *v = lua_tostring(L, -1);
  for (int i = 0; names[i]; i++)
    if (strcmp(v, names[i]) == 0)
      return i;
  return luaL_error(L, "option '%s': invalid value '%s'", key, v);
}

lua_Integer rl_opt_integer(lua_State *L, int idx, const char *key, lua_Integer dflt,
                           lua_Integer min)
{
  if (!rl_opt(L, idx, key, LUA_TNUMBER)) {
    lua_pop(L, 1);
    return dflt;
  }
  lua_Integer v = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : min - 1;
  if (v < min)
    luaL_error(L, "option '%s': an integer >= %d expected", key, (int)min);
  lua_pop(L, 1);
  return v;
}

int rl_opt_function(lua_State *L, int idx, const char *key, int required)
{
  int at = rl_opt(L, idx, key, LUA_TFUNCTION);
  if (!at && required)
    luaL_error(L, "option '%s': function expected, got nil", key);
  int ref = at ? rl_ref(L, at) : LUA_NOREF;
  lua_pop(L, 1);
  return ref;
}

void rl_opt_strings(lua_State *L, int idx, const char *what, int need_one)
{
  lua_Integer n = luaL_len(L, idx);
  if (need_one && n < 1)
    luaL_error(L, "option '%s': empty", what);
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_geti(L, idx, i) != LUA_TSTRING)
      luaL_error(L, "option '%s': item %d is not a string", what, (int)i);
    lua_pop(L, 1);
  }
}
