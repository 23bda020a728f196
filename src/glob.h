/*
 * glob.h: what the Lua binding of the matcher (glob.c) offers the other bindings: core.watch
 * builds its ignore rules from the same options as core.ignore.
 */
#ifndef RELOAD_GLOB_H
#define RELOAD_GLOB_H

#include <lua.h>

#include "ignore.h"

/* Builds an rl_ignore_t from the options table at idx (patterns_key, defaults, gitignore) and
 * pushes the reload.Ignore userdata that owns it. Raises on misuse. */
rl_ignore_t *rl_glob_options(lua_State *L, int idx, const char *patterns_key, const char *root);

#endif
