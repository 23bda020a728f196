/* watch.c: placeholder until its primitive lands; registers nothing. */
#include "core.h"

void rl_watch_open(lua_State *L)
{
  (void)L;
}
