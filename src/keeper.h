/*
 * keeper.h: the keeper (keeper.c), the process between reload and each user command. It is
 * built twice: into the reload executable (`reload --keeper-v1 ...`, the multi-call fallback)
 * and as the small static program lib/reload/reload-keeper (keeper_main.c), which reload
 * prefers: a restart waits for a keeper's exec, and a static binary with libc alone starts in
 * a fraction of the time the reload executable needs to map liblua, libuv and luv.
 */
#ifndef RELOAD_KEEPER_H
#define RELOAD_KEEPER_H

/* argv[1] is RL_KEEPER_MODE; options and the command follow (keeper_proto.h). */
int rl_keeper_main(int argc, char **argv);

#endif
