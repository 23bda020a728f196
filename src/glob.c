/* glob.c: placeholder until its primitive lands; registers nothing. */
#include "core.h"

void rl_glob_open(lua_State *L)
{
  (void)L;
}
