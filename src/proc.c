/* proc.c: placeholder until its primitive lands; registers nothing. */
#include "core.h"

void rl_proc_open(lua_State *L)
{
  (void)L;
}
