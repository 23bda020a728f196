/*
 * glob.c: the Lua binding of the matcher (ignore.c, wildmatch.c): core.glob, core.glob_match
 * and core.ignore, metatables reload.Glob and reload.Ignore. Arguments are checked here (a NUL
 * byte in a pattern or a path raises); every decision is ignore.c's.
 */
#include "glob.h"

#include <string.h>

#include "core.h"

#define RL_GLOB_MT "reload.Glob"
#define RL_IGNORE_MT "reload.Ignore"

/* Adds one program pattern or raises with the reason. */
static void rl_glob_add_or_raise(lua_State *L, rl_ignore_t *ig, int idx, int braces)
{
  char err[256];
  size_t len;
  const char *pattern = lua_tolstring(L, idx, &len);
  if (rl_ignore_add(ig, pattern, len, braces, err, sizeof err) < 0)
    luaL_error(L, "bad glob: %s", err);
}

/* Adds the strings of the list at idx (a string or a table of strings). */
static void rl_glob_add_list(lua_State *L, rl_ignore_t *ig, int idx, int braces, const char *what)
{
  if (lua_type(L, idx) == LUA_TSTRING) {
    rl_glob_add_or_raise(L, ig, idx, braces);
    return;
  }
  if (lua_isnoneornil(L, idx))
    return;
  luaL_argexpected(L, lua_istable(L, idx), idx, what);
  lua_Integer n = luaL_len(L, idx);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, idx, i);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "bad glob: entry %d of the list is a %s, not a string", (int)i,
                 luaL_typename(L, -1));
    rl_glob_add_or_raise(L, ig, lua_gettop(L), braces);
    lua_pop(L, 1);
  }
}

static rl_ignore_t *rl_check_glob(lua_State *L, int idx, const char *mt)
{
  return rl_box_check(L, idx, mt, "freed matcher");
}

/* core.glob(pattern | {pattern, ...}) -> Glob   (raises on a malformed pattern)
 * gitignore syntax plus {a,b} alternatives; in a list the last matching pattern decides and
 * "!" excludes again. */
static int rl_glob_new(lua_State *L)
{
  if (lua_type(L, 1) != LUA_TSTRING)
    luaL_checktype(L, 1, LUA_TTABLE);
  if (lua_type(L, 1) == LUA_TSTRING && lua_tostring(L, 1)[0] == '!')
    return luaL_error(L,
                      "bad glob: '%s' only excludes; put it in a list after the patterns it "
                      "excludes from (or write '\\!' for a literal '!')",
                      lua_tostring(L, 1));
  void **box = rl_box_new(L, RL_GLOB_MT, rl_ignore_new(NULL, 0, 0), 0);
  if (!*box)
    return luaL_error(L, "out of memory");
  rl_glob_add_list(L, *box, 1, 1, "string or list of strings");
  return 1;
}

/* A path argument: a string without NUL bytes (no file name has one). */
static const char *rl_check_path(lua_State *L, int idx, size_t *len)
{
  const char *path = luaL_checklstring(L, idx, len);
  if (memchr(path, '\0', *len))
    luaL_argerror(L, idx, "path contains a NUL byte");
  return path;
}

/* handle:method(path[, is_dir]) -> boolean for a handle of metatable mt. */
static int rl_glob_decide(lua_State *L, const char *mt)
{
  rl_ignore_t *ig = rl_check_glob(L, 1, mt);
  size_t len;
  const char *path = rl_check_path(L, 2, &len);
  lua_pushboolean(L, rl_ignore_path(ig, path, len, lua_toboolean(L, 3)));
  return 1;
}

/* glob:match(path[, is_dir]) -> boolean   (path relative, '/'-separated) */
static int rl_glob_match(lua_State *L)
{
  return rl_glob_decide(L, RL_GLOB_MT);
}

/* core.glob_match(pattern, path[, is_dir]) -> boolean */
static int rl_glob_match_once(lua_State *L)
{
  luaL_checkstring(L, 1);
  size_t len;
  const char *path = rl_check_path(L, 2, &len);
  lua_pushcfunction(L, rl_glob_new);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  rl_ignore_t *ig = rl_check_glob(L, -1, RL_GLOB_MT);
  lua_pushboolean(L, rl_ignore_path(ig, path, len, lua_toboolean(L, 3)));
  return 1;
}

static int rl_glob_gc(lua_State *L)
{
  void **box = lua_touserdata(L, 1);
  rl_ignore_free(*box);
  *box = NULL;
  return 0;
}

/* Builds the matcher that core.ignore and core.watch share from the options table at idx
 * (root, patterns/ignore, defaults, gitignore). Raises on misuse. */
rl_ignore_t *rl_glob_options(lua_State *L, int idx, const char *patterns_key, const char *root)
{
  int defaults = rl_opt_boolean(L, idx, "defaults", 1);
  int gitignore = rl_opt_boolean(L, idx, "gitignore", 1);
  if (gitignore && !root)
    luaL_error(L, "option 'root' is required when gitignore is on");
  /* Anchored in a userdata so that a raise while adding patterns does not leak it. */
  void **box = rl_box_new(L, RL_IGNORE_MT, rl_ignore_new(root, gitignore, defaults), 0);
  if (!*box)
    luaL_error(L, "out of memory");
  lua_getfield(L, idx, patterns_key);
  rl_glob_add_list(L, *box, lua_gettop(L), 0, "list of gitignore patterns");
  lua_pop(L, 1);
  return *box;
}

/* core.ignore{ root=, patterns=, defaults=true, gitignore=true } -> Ignore */
static int rl_glob_ignore_new(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "root");
  const char *root = lua_tostring(L, -1);
  if (!lua_isnil(L, -1) && (lua_type(L, -1) != LUA_TSTRING || root[0] != '/'))
    return luaL_error(L, "option 'root' must be an absolute path");
  rl_glob_options(L, 1, "patterns", root);
  return 1;
}

/* ignore:ignored(path[, is_dir]) -> boolean */
static int rl_glob_ignored(lua_State *L)
{
  return rl_glob_decide(L, RL_IGNORE_MT);
}

/* ignore:forget(dir) -> true   (re-read dir/.gitignore next time; "" is the root) */
static int rl_glob_forget(lua_State *L)
{
  rl_ignore_t *ig = rl_check_glob(L, 1, RL_IGNORE_MT);
  size_t len;
  const char *dir = luaL_checklstring(L, 2, &len);
  rl_ignore_forget(ig, dir, len);
  lua_pushboolean(L, 1);
  return 1;
}

/* clang-format off */
static const luaL_Reg rl_glob_methods[] = {
  {"match",    rl_glob_match},
  {NULL, NULL},
};
/* clang-format on */

/* clang-format off */
static const luaL_Reg rl_ignore_methods[] = {
  {"ignored",  rl_glob_ignored},
  {"forget",   rl_glob_forget},
  {NULL, NULL},
};
/* clang-format on */

/* clang-format off */
static const luaL_Reg rl_glob_meta[] = {
  {"__gc",     rl_glob_gc},
  {"__close",  rl_glob_gc},
  {NULL, NULL},
};
/* clang-format on */

/* clang-format off */
static const luaL_Reg rl_glob_functions[] = {
  {"glob",        rl_glob_new},
  {"glob_match",  rl_glob_match_once},
  {"ignore",      rl_glob_ignore_new},
  {NULL, NULL},
};
/* clang-format on */

void rl_glob_open(lua_State *L)
{
  rl_class(L, RL_GLOB_MT, rl_glob_meta, rl_glob_methods);
  rl_class(L, RL_IGNORE_MT, rl_glob_meta, rl_ignore_methods);
  luaL_setfuncs(L, rl_glob_functions, 0);
}
