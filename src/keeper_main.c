/*
 * keeper_main.c: main() of lib/reload/reload-keeper, the keeper alone (see keeper.h). Plain C
 * and libc only, linked statically where the toolchain allows.
 */
#include <stdio.h>
#include <string.h>

#include "keeper.h"
#include "keeper_proto.h"

int main(int argc, char **argv)
{
  if (argc > 1 && strcmp(argv[1], RL_KEEPER_MODE) == 0)
    return rl_keeper_main(argc, argv);
  fprintf(stderr,
          "reload-keeper: started by reload, not by hand "
          "(usage: reload-keeper " RL_KEEPER_MODE " [OPTIONS] -- COMMAND [ARG...])\n");
  return 2;
}
