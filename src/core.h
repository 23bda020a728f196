/*
 * core.h: the module table reload.core. Each primitive lives in a file of its own and adds its
 * functions to the table through an rl_<file>_open() function; core.c calls them in turn. What
 * the bindings share (errors, references, handles, options) is binding.h.
 */
#ifndef RELOAD_CORE_H
#define RELOAD_CORE_H

#include "binding.h"

/* Set by main.c to "/proc/self/exe" in the reload executable (which is also a keeper); NULL in
 * the loadable module. proc.c looks for the static reload-keeper first (see keeper.h). */
extern const char *rl_self_exe;

/* Registration of each primitive: adds its functions to the table on the top of the stack. */
void rl_proc_open(lua_State *L);
void rl_glob_open(lua_State *L);
void rl_watch_open(lua_State *L);
void rl_http_open(lua_State *L);
void rl_file_open(lua_State *L);
void rl_pty_open(lua_State *L);

/* The module's entry point, the one symbol core.so exports. */
__attribute__((visibility("default"))) int luaopen_reload_core(lua_State *L);

#endif
