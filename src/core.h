/*
 * core.h: what the files of reload.core share. Each primitive lives in its own file and adds
 * its functions to the module table through an rl_<file>_open() function; core.c calls them.
 */
#ifndef RELOAD_CORE_H
#define RELOAD_CORE_H

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

/* The loop that luv runs; every core handle lives on it. */
uv_loop_t *rl_loop(lua_State *L);

/* Error contract: an OS failure returns nil, "ECODE: message", "ECODE". err is a negative
 * libuv/errno value (libuv's codes are -errno on Unix). Returns 3 (values pushed). */
int rl_push_error(lua_State *L, int err);
/* The same with extra context: nil, "ECODE: message (what)", "ECODE". */
int rl_push_error_what(lua_State *L, int err, const char *what);

/* Calls the function under nargs arguments on the stack of the main thread, as luv calls its
 * callbacks: an error is printed with its traceback and the program goes on. */
void rl_call(lua_State *L, int nargs);

/* Live references held by the core (callbacks and handles in the registry), by kind, so that
 * tests can see a leak: core._stats(). */
enum { RL_STAT_HANDLES, RL_STAT_REFS, RL_STAT_COUNT };
void rl_stat_add(int which, int delta);

/* Set by main.c to "/proc/self/exe" in the reload executable (which is also a keeper); NULL in
 * the loadable module. proc.c looks for the static reload-keeper first (see keeper.h). */
extern const char *rl_self_exe;

/* Registration of each primitive: adds its functions to the table on the top of the stack. */
void rl_proc_open(lua_State *L);
void rl_glob_open(lua_State *L);
void rl_watch_open(lua_State *L);
void rl_file_open(lua_State *L);

/* Keeper mode of the multi-call executable (keeper.c): `reload --keeper-v1 ...`. */
#include "keeper.h"

int luaopen_reload_core(lua_State *L);

#endif
