/*
 * binding.h: the small layer every Lua binding of reload.core shares, so that each primitive
 * (proc.c, watch.c, glob.c, file.c) holds only its own logic. luv's lhandle.c and util.c are
 * the model: the loop, the error tuple, references held in the registry (counted, so that tests
 * see a leak through core._stats()), callbacks into Lua, handle userdata, and option tables.
 *
 * Boundary: Lua C API and libuv only; nothing here knows a primitive.
 */
#ifndef RELOAD_BINDING_H
#define RELOAD_BINDING_H

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

/* The loop that luv runs; every core handle lives on it. */
uv_loop_t *rl_loop(lua_State *L);

/* The main thread of L's state: callbacks run there, never on a coroutine that may be gone. */
lua_State *rl_main_thread(lua_State *L);

/* Error contract ------------------------------------------------------------------------------
 * An OS failure returns nil, "ECODE: message", "ECODE" (or "ECODE: message (what)"); err is a
 * negative libuv/errno value (libuv's codes are -errno on Unix). Returns 3, the values pushed.
 * Misuse raises instead (luaL_argerror, luaL_error). */
int rl_push_error(lua_State *L, int err);
int rl_push_error_what(lua_State *L, int err, const char *what);

/* References and callbacks --------------------------------------------------------------------- */

/* Live registry references and handles, by kind: core._stats(). */
enum { RL_STAT_HANDLES, RL_STAT_REFS, RL_STAT_COUNT };
void rl_stat_add(int which, int delta);
int rl_stat(int which);

/* A counted registry reference to the value at idx. */
int rl_ref(lua_State *L, int idx);
/* Releases *ref (idempotent: it is LUA_NOREF afterwards). */
void rl_unref(lua_State *L, int *ref);

/* Calls the function under nargs arguments on the stack of the main thread L, as luv calls its
 * callbacks: an error is reported with its traceback and the program goes on. */
void rl_call(lua_State *L, int nargs);
/* Calls the function held in ref with the nargs values on top of the stack; with ref LUA_NOREF
 * the values are popped and nothing is called. */
void rl_call_ref(lua_State *L, int ref, int nargs);

/* Handles --------------------------------------------------------------------------------------
 * A handle is a userdata box holding a pointer to its C state, with the metatable mt (and nuv
 * user values). The C state may outlive the box (libuv closes asynchronously) or go first
 * (close()): a box holding NULL is a closed handle. */
void **rl_box_new(lua_State *L, const char *mt, void *state, int nuv);
/* The box at idx (raises unless it has metatable mt). */
void **rl_box_at(lua_State *L, int idx, const char *mt);
/* The state of the box at idx; raises argerror(closed) when the handle is closed. */
void *rl_box_check(lua_State *L, int idx, const char *mt, const char *closed);
/* Registers metatable mt: metamethods meta, methods as its __index table. */
void rl_class(lua_State *L, const char *mt, const luaL_Reg *meta, const luaL_Reg *methods);

/* Option tables --------------------------------------------------------------------------------
 * Every option is checked where it is read: an unknown key, a wrong type or value raises an
 * error naming the option ("option 'stdin': invalid value 'tty'"). */

/* Raises "unknown option 'k'" for a key of the table at idx that is not in keys (NULL-ended). */
void rl_opt_keys(lua_State *L, int idx, const char *const keys[]);
/* Pushes t[key]; returns its stack index, or 0 when it is nil (the nil stays pushed). Raises
 * when it is neither nil nor of the type. */
int rl_opt(lua_State *L, int idx, const char *key, int type);
int rl_opt_boolean(lua_State *L, int idx, const char *key, int dflt);
/* t[key] as the index of one of names (NULL-ended), dflt when nil. */
int rl_opt_choice(lua_State *L, int idx, const char *key, const char *const names[], int dflt);
/* t[key], an integer >= min, dflt when nil. */
lua_Integer rl_opt_integer(lua_State *L, int idx, const char *key, lua_Integer dflt,
                           lua_Integer min);
/* A counted reference to the function t[key]; LUA_NOREF when nil and not required. */
int rl_opt_function(lua_State *L, int idx, const char *key, int required);
/* Checks that the list at idx holds strings only (at least one with need_one). */
void rl_opt_strings(lua_State *L, int idx, const char *what, int need_one);

#endif
