/*
 * keeper_proto.h: the protocol between reload (proc.c) and a keeper (keeper.c), in one place.
 * Both sides include it; nothing else spells a verb, an option or the mode flag.
 *
 * reload starts a keeper as `KEEPER --keeper-v1 [OPTIONS] -- COMMAND...` with a socketpair on
 * fd 3. Over it each side writes text lines, a verb and its arguments separated by one space:
 *
 *   keeper -> reload                         reload -> keeper
 *   held               ready for go          term SIG GRACE_MS   polite stop, then SIGKILL
 *   started PID PGID   the command runs      kill                SIGKILL sweeps at once
 *   error STAGE ERRNO  it never ran          signal SIG SCOPE    SCOPE: main, group, tree
 *   main-exit CODE SIG CODE -1 if killed     go                  start the command given
 *   stopping           polite signal sent    go N                N bytes follow: argv NUL...,
 *   forcing            SIGKILL phase              an empty string, env NUL..., an empty string
 *   tree-empty FORCED US   all reaped        prime N             as "go N", but the command
 *   cancelled          stopped while held         waits for the gate (below) or for "go"
 *   dropped            the next run is not   next N              the next run's command (below)
 *                      going to run          drop-next           the next run is not wanted
 *                                            bye                 no next run: exit
 *                                            ack                 "started" of a next run read
 *                                            termed SIG GRACE_MS as "term", but reload has sent
 *                                                 SIG and SIGCONT to the command's group itself
 *   survivor PID ERRNO     a process the SIGKILL sweeps could not end: ERRNO 1 (EPERM) when
 *                          kill() was refused, 0 when it was sent and the process stays
 *   gave-up COUNT US       instead of tree-empty: the stop gave up on the COUNT survivors
 *                          just listed, US after it began; the keeper exits
 *
 * The gate (--gate-out FD, --gate-in FD): a keeper started with --gate-out writes one byte to
 * that pipe once its tree is empty or given up on (just before "tree-empty" or "gave-up"; or
 * with "cancelled"), then exits; reload passes the pipe's read end to the keeper it spawns next
 * as --gate-in. A keeper primed with "prime N" starts its command the moment that byte arrives,
 * without a round trip through reload: the next generation then starts at the instant the old
 * one is known gone. EOF without the byte (the old keeper killed) opens nothing: reload's "go"
 * does, once reload has seen the old tree gone itself.
 *
 * The next run: while a run is under way, "next N" (N bytes follow, as for "go N") queues the
 * command of the run after it. Once the tree is empty the keeper starts it itself, then says
 * "tree-empty" for the old run and "started" for the new one: the old run's end and the new
 * run's start are one step of one process, with no other process to wake. Until reload says
 * "ack" (it has read that "started"), the keeper ignores term, termed, kill and signal: reload
 * sent them for the run before, which is gone. "drop-next" takes the
 * queued run back ("dropped"), or stops it if it started already. A keeper whose tree is empty
 * with no run queued says "tree-empty", opens its gate, and waits for "bye" (or a late "next":
 * reload says "bye" as soon as it reads "tree-empty" without having queued one, or with the
 * stop when no next run is to follow), EOF or a signal, then exits. One that gave up on
 * survivors runs nothing more: "dropped", "gave-up".
 *
 * STAGE is setup (the keeper itself could not be set up), fork or exec. Plain C and libc: the
 * keeper links it statically.
 */
#ifndef RELOAD_KEEPER_PROTO_H
#define RELOAD_KEEPER_PROTO_H

#include <stddef.h>

/* argv[1] of a keeper; bump the number when a verb changes meaning. */
#define RL_KEEPER_MODE "--keeper-v1"
#define RL_KEEPER_CTL_FD 3

/* Options, in the order reload passes them. */
#define RL_KOPT_PARENT_PID "--parent-pid"     /* PID: reload; another parent = setup failure */
#define RL_KOPT_RUN_ID "--run-id"             /* ID: RELOAD_RUN=ID in the command's env */
#define RL_KOPT_SIGNAL "--signal"             /* N: the polite signal (reload gone, kill-tree) */
#define RL_KOPT_GRACE "--grace"               /* MS */
#define RL_KOPT_ORPHAN_GRACE "--orphan-grace" /* MS: grace once reload is gone */
#define RL_KOPT_SETSID "--setsid"             /* a new session instead of a new group */
#define RL_KOPT_KILL_TREE "--kill-tree"       /* the main command's exit tears the tree down */
#define RL_KOPT_HOLD "--hold"                 /* wait for go before starting the command */
#define RL_KOPT_TTY "--tty"                   /* fd 1 is a pty: the command's controlling tty */
#define RL_KOPT_FOREGROUND "--foreground"     /* the command's group takes the terminal on fd 0 */
#define RL_KOPT_LISTEN_FDS "--listen-fds"     /* N: sockets at fds 4.., see below */
#define RL_KOPT_GATE_OUT "--gate-out"         /* FD: written once the tree is gone */
#define RL_KOPT_GATE_IN "--gate-in"           /* FD: the previous keeper's gate */

/* --listen-fds N: fds 4..3+N of the keeper are listening sockets, which the command gets as fds
 * 3..2+N with LISTEN_FDS=N and LISTEN_PID=its pid (systemd's protocol, sd_listen_fds(3)). The
 * first fd of them in the keeper (after the control socket), in the command, and how many. */
#define RL_KEEPER_LISTEN_FD 4
#define RL_LISTEN_FDS_START 3
#define RL_MAX_LISTEN 64

/* Environment switches for tests, read by the keeper and never passed to a command. */
#define RL_KEEPER_HOOK_PREFIX "RELOAD_KEEPER_"
#define RL_HOOK_NO_PDEATHSIG "RELOAD_KEEPER_NO_PDEATHSIG"   /* =1: no parent-death signal */
#define RL_HOOK_NO_EOF "RELOAD_KEEPER_NO_EOF"               /* =1: EOF on fd 3 is not a stop */
#define RL_HOOK_ENUM "RELOAD_KEEPER_ENUM"                   /* =scan: /proc scan, not children */
#define RL_HOOK_DELAY "RELOAD_KEEPER_DELAY_BEFORE_PRCTL_MS" /* =N: open the PDEATHSIG race */

typedef enum {
  RL_MSG_NONE, /* not a line of the protocol */
  /* keeper -> reload */
  RL_MSG_HELD,
  RL_MSG_STARTED,
  RL_MSG_ERROR,
  RL_MSG_MAIN_EXIT,
  RL_MSG_STOPPING,
  RL_MSG_FORCING,
  RL_MSG_TREE_EMPTY,
  RL_MSG_CANCELLED,
  RL_MSG_SURVIVOR,
  RL_MSG_GAVE_UP,
  /* reload -> keeper */
  RL_MSG_TERM,
  RL_MSG_TERMED,
  RL_MSG_KILL,
  RL_MSG_SIGNAL,
  RL_MSG_GO,
  RL_MSG_GO_DATA,
  RL_MSG_PRIME,
  /* the next run (below) */
  RL_MSG_DROPPED,   /* keeper -> reload */
  RL_MSG_NEXT,      /* reload -> keeper */
  RL_MSG_DROP_NEXT, /* reload -> keeper */
  RL_MSG_BYE,       /* reload -> keeper */
  RL_MSG_ACK,       /* reload -> keeper */
  RL_MSG_COUNT
} rl_verb_t;

/* Stages of RL_MSG_ERROR, and scopes of RL_MSG_SIGNAL (word arguments). */
enum { RL_STAGE_SETUP, RL_STAGE_FORK, RL_STAGE_EXEC, RL_STAGE_COUNT };
enum { RL_SCOPE_MAIN, RL_SCOPE_GROUP, RL_SCOPE_TREE, RL_SCOPE_COUNT };
extern const char *const rl_stage_names[RL_STAGE_COUNT];
extern const char *const rl_scope_names[RL_SCOPE_COUNT];

/* One line: its verb and up to two arguments. A word argument (STAGE, SCOPE) is carried as its
 * index in rl_stage_names or rl_scope_names, in arg[] like a number. */
typedef struct {
  rl_verb_t verb;
  long long arg[2];
} rl_msg_t;

/* Parses one line (without its newline). Returns the verb; RL_MSG_NONE for anything that is not
 * exactly a line of the protocol (unknown verb, wrong arguments, trailing text). */
rl_verb_t rl_msg_parse(const char *line, rl_msg_t *msg);

/* Writes the line of msg, newline included, into buf. Returns its length, or 0 when it does
 * not fit. */
size_t rl_msg_format(char *buf, size_t size, const rl_msg_t *msg);

#endif
