/*
 * main.c: the `reload` executable. One Lua state, one libuv loop shared with luv, `luv` and
 * `reload.core` preloaded, and require("reload.cli").main(arg) as the entry point. The same
 * binary is the per-run keeper (`reload --keeper-v1 ...`, keeper.c): that mode is entered before
 * any Lua or libuv state exists, so a keeper costs one exec and no interpreter.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <luv/luv.h>
#include <uv.h>

#include "core.h"
#include "keeper.h"
#include "keeper_proto.h"

/* An error raised inside a luv or core callback is reported with its traceback and the program
 * goes on: stock luv would exit(-1), which would leave every service tree to its keeper. */
static int rl_main_pcall(lua_State *L, int nargs, int nresults, int flags)
{
  int base = lua_gettop(L) - nargs; /* index of the function */
  lua_getglobal(L, "debug");
  lua_getfield(L, -1, "traceback");
  lua_remove(L, -2);
  lua_insert(L, base);
  int status = lua_pcall(L, nargs, nresults < 0 ? LUA_MULTRET : nresults, base);
  if (status != LUA_OK) {
    if (!(flags & LUVF_CALLBACK_NOERRMSG)) {
      const char *msg = lua_tostring(L, -1);
      fprintf(stderr, "reload: error in callback: %s\n",
              msg ? msg : "(error object is not a string)");
      fflush(stderr);
    }
    lua_settop(L, base - 1);
    return -status;
  }
  lua_remove(L, base);
  return lua_gettop(L) - (base - 1);
}

static int rl_file_exists(const char *path)
{
  return access(path, R_OK) == 0;
}

/* Where the Lua half lives: $RELOAD_LUA_DIR, else <exe>/../share/reload/lua (installed or build
 * tree), else the source tree this binary was built from. */
static void rl_find_lua_dir(char *out, size_t size)
{
  const char *env = getenv("RELOAD_LUA_DIR");
  if (env && *env) {
    snprintf(out, size, "%s", env);
    return;
  }
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = '\0';
      char probe[PATH_MAX + 64];
      snprintf(probe, sizeof probe, "%s/../share/reload/lua/reload/cli.lua", exe);
      if (rl_file_exists(probe)) {
        /* probe ends with "/reload/cli.lua": cut it off to get the directory. */
        probe[strlen(probe) - strlen("/reload/cli.lua")] = '\0';
        snprintf(out, size, "%.*s", (int)(size - 1), probe);
        return;
      }
    }
  }
  snprintf(out, size, "%s", RELOAD_SOURCE_LUA_DIR);
}

static void rl_set_package_path(lua_State *L)
{
  char dir[PATH_MAX];
  rl_find_lua_dir(dir, sizeof dir);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
}

static void rl_preload(lua_State *L, const char *name, lua_CFunction open)
{
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, open);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

/* Runs require("reload.cli").main(arg) and returns its exit status. */
static int rl_run_cli(lua_State *L)
{
  lua_getglobal(L, "require");
  lua_pushstring(L, "reload.cli");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "main");
  lua_getglobal(L, "arg");
  lua_call(L, 1, 1);
  lua_Integer code = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
  lua_pushinteger(L, code);
  return 1;
}

static int rl_traceback(lua_State *L)
{
  const char *msg = lua_tostring(L, 1);
  luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
  return 1;
}

int main(int argc, char **argv)
{
  if (argc > 1 && strcmp(argv[1], RL_KEEPER_MODE) == 0)
    return rl_keeper_main(argc, argv);

  uv_loop_t *loop = uv_default_loop();
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "reload: cannot create the Lua state (out of memory)\n");
    return 1;
  }
  luaL_openlibs(L);
  luv_set_loop(L, loop);
  luv_set_callback(L, rl_main_pcall);
  rl_self_exe = "/proc/self/exe";
  rl_preload(L, "luv", luaopen_luv);
  rl_preload(L, "reload.core", luaopen_reload_core);
  rl_set_package_path(L);

  lua_createtable(L, argc, 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_setglobal(L, "arg");

  lua_pushcfunction(L, rl_traceback);
  lua_pushcfunction(L, rl_run_cli);
  int code = 1;
  if (lua_pcall(L, 0, 1, -2) == LUA_OK) {
    code = (int)lua_tointeger(L, -1);
  } else {
    fprintf(stderr, "reload: %s\n", lua_tostring(L, -1));
  }
  fflush(stdout);
  lua_close(L);
  return code;
}
