/* keeper.c: placeholder until the keeper lands. */
#include <stdio.h>

#include "core.h"

int rl_keeper_main(int argc, char **argv)
{
  (void)argc;
  (void)argv;
  fprintf(stderr, "reload: keeper mode is not built yet\n");
  return 127;
}
