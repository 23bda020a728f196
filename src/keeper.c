/*
 * keeper.c: keeper mode of the reload executable, `reload --keeper-v1 [OPTIONS] -- ARGV...`.
 *
 * One keeper sits between reload and each user command (notes/process-tree.md §3, §11). It is a
 * child subreaper, so every descendant of the command, however it forks, setsid()s or
 * double-forks, is reparented to it; `waitpid(-1)` answering ECHILD therefore means that nothing
 * of the tree is left anywhere. Enumerating the tree (children files, or a /proc scan) only
 * decides whom to signal; correctness rests on ECHILD.
 *
 * Boundary: plain C, no libuv, no Lua. It talks to reload over fd 3 (a socketpair made by
 * uv_spawn) in the text lines of keeper_proto.h, which also lists its options and test switches.
 * EOF on fd 3, or the parent-death signal (SIGHUP), means reload is gone: the tree is torn down
 * with the orphan grace.
 *
 * A process can outlive every SIGKILL: one that reload has no right to signal (a setuid program
 * or sudo that the command started: kill() answers EPERM), or one stuck in the kernel. The
 * forced phase gives up once every live process left refused the signal, or after
 * RL_FORCED_LIMIT_MS: it names each survivor ("survivor PID ERRNO", and on stderr when reload
 * is gone), says "gave-up" instead of "tree-empty", and exits, leaving them to init. Retrying
 * would change nothing and cost a CPU. The keeper exits with the main command's code, or
 * 128+signal; 125 when the command could not be started (its own setup or the fork failed: "error
 * setup|fork ERRNO", and a line on stderr), 126/127 when exec failed ("error exec ERRNO").
 *
 * --hold sets up, then waits for "go" before starting the command, which "go N" may give (so the
 * command after "--" is optional): reload keeps a keeper ready for the next run, so that a
 * restart does not wait for the keeper's own exec. The test switches (RELOAD_KEEPER_*) are read,
 * then removed from every environment a command gets, including one sent with "go N".
 *
 * The teardown path uses static buffers only: it must work when memory is short, and it runs
 * often enough that a leak would matter.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "keeper.h"
#include "keeper_proto.h"
#include "procfs.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

extern char **environ;

enum { RL_MAX_PIDS = 16384, RL_SEEN_SLOTS = 32768 };
/* How long the SIGKILL sweeps go on while processes stay, and nothing was reaped for the last
 * RL_STALLED_MS (a large tree takes longer to die, but keeps dying). One that SIGKILL reached
 * dies within milliseconds; one still there after this cannot be ended by us. Well below
 * reload's watchdog (grace + 2 s, proc.c), which would kill the keeper before it names them. */
#define RL_FORCED_LIMIT_MS 500
#define RL_STALLED_MS 100
enum { RL_RUNNING, RL_POLITE, RL_FORCED };
/* How long one polite fixpoint (rl_polite_fixpoint) may walk. */
#define RL_FIXPOINT_MS 5
/* After the stop signal, how long the first polite sweep waits for a death in the tree. */
#define RL_FIRST_SWEEP_NS 1000000

typedef struct {
  /* options */
  char **argv;
  const char *run_id;
  pid_t parent_pid;
  int stop_signal, grace_ms, orphan_grace_ms, use_setsid, kill_tree, nlisten;
  int gate_out, gate_in; /* the gate's pipe ends (keeper_proto.h), or -1 */
  /* hooks */
  int no_pdeathsig, no_eof, scan_only, delay_ms, hold, tty, foreground;
  /* state */
  pid_t self, main_pid, pgid;
  int ctl, sfd, phase, main_done, main_status, forced, empty, reaped, go, cancelled;
  int primed, gate_open; /* "prime N" came; the previous keeper's gate opened */
  /* "next N": the next run's command, next_have of next_len bytes; queued once complete. A
   * dropped one still arriving is skipped (discard bytes). "bye" came; the command's argv is
   * the heap's. */
  char *next_spec;
  size_t next_len, next_have, discard;
  int next_queued, bye, argv_owned;
  int unacked; /* a next run started, and reload has not said "ack": its stops are the last run's */
  int survivors; /* > 0: the stop gave up on that many processes */
  char *spec;    /* "go N": the command and environment as sent, spec_have of spec_len bytes */
  size_t spec_len, spec_have;
  int64_t stop_ns, deadline_ns, next_sweep_ns, forced_ns, reaped_ns;
  char line[512];
  size_t line_len;
} rl_keeper_t;

/* Teardown scratch space (static: no heap in the teardown path). */
static pid_t rl_queue[RL_MAX_PIDS];
static pid_t rl_seen[RL_SEEN_SLOTS];
static unsigned rl_seen_slot[RL_SEEN_SLOTS]; /* the slots in use, for rl_seen_clear */
static int rl_seen_count;
static pid_t rl_snap_pid[RL_MAX_PIDS], rl_snap_ppid[RL_MAX_PIDS];
static int rl_snap_count;
static char rl_dents[16384];
static char rl_text[65536];
/* The last SIGKILL sweep: whom kill() reached, and how many refused it (EPERM). */
static pid_t rl_killed[RL_MAX_PIDS];
static int rl_nkilled, rl_ndenied;

static int64_t rl_now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- control channel ------------------------------------------------------------------------- */

/* Lines for reload wait here until the keeper is about to block (rl_poll) or exit: a
 * teardown's news (stopping, main-exit, tree-empty) then goes in one write. Each write wakes
 * reload, which had slept and so preempts the keeper when they share a CPU: one wake-up between
 * the tree's deaths and the keeper's reaping cost the teardown ~0.1 ms. */
static char rl_out[4096];
static size_t rl_out_len;

static void rl_flush(rl_keeper_t *k)
{
  size_t off = 0;
  while (k->ctl >= 0 && off < rl_out_len) {
    /* MSG_NOSIGNAL: reload may be gone; a SIGPIPE must not kill the keeper mid-teardown. */
    ssize_t n = send(k->ctl, rl_out + off, rl_out_len - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      break; /* reload is gone: its EOF comes through the poll */
    off += (size_t)n;
  }
  rl_out_len = 0;
}

/* Queues one line of the protocol (a verb and up to two arguments). */
static void rl_send(rl_keeper_t *k, rl_verb_t verb, long long a, long long b)
{
  if (k->ctl < 0)
    return;
  char buf[128];
  rl_msg_t msg = {verb, {a, b}};
  size_t n = rl_msg_format(buf, sizeof buf, &msg);
  if (rl_out_len + n > sizeof rl_out)
    rl_flush(k);
  memcpy(rl_out + rl_out_len, buf, n);
  rl_out_len += n;
}

/* poll(), with the lines queued for reload sent before the keeper may sleep. */
static int rl_poll(rl_keeper_t *k, struct pollfd *fds, nfds_t nfds, int timeout_ms)
{
  rl_flush(k);
  return poll(fds, nfds, timeout_ms);
}

/* ---- enumeration ----------------------------------------------------------------------------- */

/* Children of pid through every thread's children file (procfs.c). */
static int rl_children_files(pid_t pid, pid_t *out, int max)
{
  return rl_proc_children((int)pid, out, max, rl_dents, sizeof rl_dents, rl_text, sizeof rl_text);
}

static int rl_snapshot_one(int pid, void *ud)
{
  (void)ud;
  rl_pstat_t st;
  if (rl_proc_stat(pid, &st) == 0) {
    rl_snap_pid[rl_snap_count] = (pid_t)pid;
    rl_snap_ppid[rl_snap_count] = (pid_t)st.ppid;
    rl_snap_count++;
  }
  return rl_snap_count >= RL_MAX_PIDS;
}

/* The fallback enumerator (kernels without CONFIG_PROC_CHILDREN): one scan of every
 * /proc/PID/stat per pass, parents looked up in that snapshot. */
static void rl_snapshot(void)
{
  rl_snap_count = 0;
  rl_proc_each_pid(rl_dents, sizeof rl_dents, rl_snapshot_one, NULL);
}

static int rl_children_snapshot(pid_t pid, pid_t *out, int max)
{
  int n = 0;
  for (int i = 0; i < rl_snap_count && n < max; i++)
    if (rl_snap_ppid[i] == pid)
      out[n++] = rl_snap_pid[i];
  return n;
}

/* Children of pid, newest first. Newest-first matters against fork loops: a short-lived
 * "hopper" is appended at the tail of the list, and reaching it first keeps a sweep from
 * chasing it for hundreds of passes (§3 "hopper chase"). */
static int rl_children(const rl_keeper_t *k, pid_t pid, pid_t *out, int max)
{
  int n = k->scan_only ? rl_children_snapshot(pid, out, max) : rl_children_files(pid, out, max);
  for (int i = 0, j = n - 1; i < j; i++, j--) {
    pid_t t = out[i];
    out[i] = out[j];
    out[j] = t;
  }
  return n;
}

/* Only the slots in use: a memset of the whole set faulted in 32 pages on each stop, on the
 * teardown's path, for a tree of a few processes. */
static void rl_seen_clear(void)
{
  for (int i = 0; i < rl_seen_count; i++)
    rl_seen[rl_seen_slot[i]] = 0;
  rl_seen_count = 0;
}

/* Adds pid to the seen set; returns 1 if it was new. A full set answers "new", which at worst
 * signals a process twice. */
static int rl_seen_add(pid_t pid)
{
  unsigned h = ((unsigned)pid * 2654435761u) % RL_SEEN_SLOTS;
  for (int i = 0; i < RL_SEEN_SLOTS; i++) {
    unsigned slot = (h + (unsigned)i) % RL_SEEN_SLOTS;
    if (rl_seen[slot] == pid)
      return 0;
    if (rl_seen[slot] == 0) {
      rl_seen[slot] = pid;
      rl_seen_slot[rl_seen_count++] = slot;
      return 1;
    }
  }
  return 1;
}

/* ---- teardown -------------------------------------------------------------------------------- */

static int rl_queued(pid_t pid, int tail)
{
  for (int i = 0; i < tail; i++)
    if (rl_queue[i] == pid)
      return 1;
  return 0;
}

/* SIGKILL for a process of the forced walk, counted for rl_forced_pass. */
static void rl_kill_one(pid_t pid)
{
  if (kill(pid, SIGKILL) == 0)
    rl_killed[rl_nkilled++] = pid;
  else if (errno == EPERM)
    rl_ndenied++;
}

/* For rl_proc_each_new_pid: a live process whose parent is the keeper or a process of the walk
 * (rl_queue up to *tail) joins the walk, killed. */
static int rl_kill_if_in_walk(int pid, void *ud)
{
  int *tail = ud;
  rl_pstat_t st;
  if (*tail < RL_MAX_PIDS && rl_proc_stat(pid, &st) == 0 && st.state != 'Z' && st.state != 'X' &&
      rl_queued(st.ppid, *tail)) {
    rl_queue[(*tail)++] = (pid_t)pid;
    rl_kill_one((pid_t)pid);
  }
  return 0;
}

/* The scan's forced walk: the snapshot is older than the kills, so a process may have forked
 * between the two (a fork-and-exit loop always has). The pids given out since the snapshot
 * began join the walk when their parent is in it (rl_kill_if_in_walk), again until no pid was
 * given out during a round: each kill comes before the read that follows it. Returns how many
 * joined. */
static int rl_sweep_since(long since, int *tail)
{
  int before = *tail;
  for (int round = 0;
       round < 64 && rl_proc_each_new_pid(&since, 4096, rl_kill_if_in_walk, tail) > 0; round++) {
  }
  return *tail - before;
}

/* One breadth-first walk from the keeper. Polite: each process outside the command's group not
 * seen before gets sig + SIGCONT (the group got them by kill(-pgid)). Forced: every process gets
 * SIGKILL *before* its children are read, so its list is final: a fork cannot complete once a
 * fatal signal is pending (kernel/fork.c); with the scan, rl_sweep_since gives the same.
 * Returns how many new processes were signalled. */
static int rl_sweep(rl_keeper_t *k, int sig)
{
  long since = k->scan_only && sig == SIGKILL ? rl_proc_last_pid() : -1;
  if (k->scan_only)
    rl_snapshot();
  int head = 0, tail = 0, signalled = 0;
  rl_nkilled = rl_ndenied = 0;
  rl_queue[tail++] = k->self;
  while (head < tail) {
    pid_t parent = rl_queue[head++];
    int first = tail;
    tail += rl_children(k, parent, rl_queue + tail, RL_MAX_PIDS - tail);
    for (int i = first; i < tail; i++) {
      pid_t pid = rl_queue[i];
      if (sig == SIGKILL) {
        rl_kill_one(pid);
        signalled++;
      } else if (rl_seen_add(pid) && getpgid(pid) != k->pgid) {
        kill(pid, sig);
        kill(pid, SIGCONT);
        signalled++;
      }
    }
  }
  if (k->scan_only && sig == SIGKILL)
    signalled += rl_sweep_since(since, &tail);
  return signalled;
}

/* Repeats the polite walk until it finds nobody new: a parent killed by the group signal can
 * reparent its setsid'd child to the keeper after the keeper's own list was read (§3). For
 * RL_FIXPOINT_MS at most: a fork-and-exit loop is new at each walk, and the keeper must get
 * back to reaping (each hop leaves it a zombie: the pids would run out) and to its deadline;
 * rl_tick walks again after the next death. */
static void rl_polite_fixpoint(rl_keeper_t *k)
{
  int64_t until = rl_now_ns() + (int64_t)RL_FIXPOINT_MS * 1000000;
  for (int pass = 0; pass < 1000 && rl_sweep(k, k->stop_signal) > 0 && rl_now_ns() < until;
       pass++) {
  }
}

static void rl_begin_forced(rl_keeper_t *k)
{
  if (k->main_pid == 0) { /* held: nothing started, nothing to stop */
    k->cancelled = 1;
    return;
  }
  if (k->phase == RL_FORCED)
    return;
  if (k->phase == RL_RUNNING)
    k->stop_ns = rl_now_ns();
  k->phase = RL_FORCED;
  k->forced = 1;
  k->forced_ns = rl_now_ns();
  rl_send(k, RL_MSG_FORCING, 0, 0);
}

/* signalled: reload has sent sig (and SIGCONT) to the group itself ("termed"). */
static void rl_begin_polite(rl_keeper_t *k, int sig, int grace_ms, int signalled)
{
  if (k->main_pid == 0) {
    k->cancelled = 1;
    return;
  }
  if (k->phase != RL_RUNNING)
    return;
  k->phase = RL_POLITE;
  k->stop_signal = sig;
  k->stop_ns = rl_now_ns();
  k->deadline_ns = k->stop_ns + (int64_t)grace_ms * 1000000;
  if (grace_ms <= 0) {
    rl_send(k, RL_MSG_STOPPING, 0, 0);
    rl_begin_forced(k);
    return;
  }
  /* SIGCONT: a stopped process that handles the stop signal could not run its handler. */
  int group_signalled = kill(-k->pgid, signalled ? 0 : sig) == 0;
  if (!signalled)
    kill(-k->pgid, SIGCONT);
  /* After the signal: the stop must not wait for reload's scheduling. */
  rl_send(k, RL_MSG_STOPPING, 0, 0);
  rl_seen_clear();
  /* With the group signalled, the first sweep waits for the first death in the tree (rl_tick)
   * or RL_FIRST_SWEEP_NS: swept at once, the /proc walk raced the dying group and delayed its
   * reaping, and when the whole group dies at the signal, ECHILD comes first and no sweep is
   * needed at all. An escapee (outside the group) is signalled once a death could have
   * reparented it to us. With nobody left in the group, nothing will die first: sweep now. */
  if (group_signalled) {
    k->next_sweep_ns = rl_now_ns() + RL_FIRST_SWEEP_NS;
    return;
  }
  rl_polite_fixpoint(k);
  k->next_sweep_ns = rl_now_ns() + 10000000;
}

/* One SIGKILL pass over the tree. Returns 1 while a process of it may still die; 0 when each
 * live one left refused the signal (EPERM): then no later pass can do better. A zombie whose
 * parent is such a process is dead already (and not ours to reap): it does not count. */
static int rl_forced_pass(rl_keeper_t *k)
{
  kill(-k->pgid, SIGKILL);
  rl_sweep(k, SIGKILL);
  if (rl_ndenied == 0)
    return 1;
  for (int i = 0; i < rl_nkilled; i++) {
    rl_pstat_t st;
    if (rl_proc_stat(rl_killed[i], &st) == 0 && st.state != 'Z' && st.state != 'X')
      return 1;
  }
  return 0;
}

/* reload is gone: the survivor goes to the command's stderr, the only place left to say it. */
static void rl_say_survivor(pid_t pid, const rl_pstat_t *st, int err)
{
  int uid = rl_proc_euid(pid);
  fprintf(stderr, "reload-keeper: cannot stop pid %d (uid %d, '%s'): %s; it keeps running\n",
          (int)pid, uid, st->comm, err == EPERM ? "not permitted" : "it did not die of SIGKILL");
}

/* The stop gives up: every live process still in the tree is reported as a survivor. Nothing
 * is left to report when they all went in between: then the reaper sees ECHILD shortly. */
static void rl_give_up(rl_keeper_t *k)
{
  if (k->scan_only)
    rl_snapshot();
  int head = 0, tail = 0, n = 0;
  rl_queue[tail++] = k->self;
  while (head < tail) {
    pid_t parent = rl_queue[head++];
    tail += rl_children(k, parent, rl_queue + tail, RL_MAX_PIDS - tail);
  }
  for (int i = 1; i < tail; i++) {
    pid_t pid = rl_queue[i];
    rl_pstat_t st;
    if (rl_proc_stat(pid, &st) < 0 || st.state == 'Z' || st.state == 'X')
      continue;
    int err = kill(pid, SIGKILL) == 0 ? 0 : errno;
    if (err == ESRCH)
      continue;
    rl_send(k, RL_MSG_SURVIVOR, pid, err);
    if (k->ctl < 0)
      rl_say_survivor(pid, &st, err);
    n++;
  }
  k->survivors = n;
}

static int rl_exit_status(int status)
{
  if (WIFSIGNALED(status))
    return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

/* Reaps every zombie that has reparented to us; ECHILD means the whole tree is gone. */
static void rl_reap(rl_keeper_t *k)
{
  for (;;) {
    int status;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid < 0 && errno == EINTR)
      continue;
    if (pid < 0) {
      k->empty = errno == ECHILD;
      return;
    }
    if (pid == 0)
      return;
    k->reaped = 1;
    k->reaped_ns = rl_now_ns();
    if (pid == k->main_pid) {
      k->main_done = 1;
      k->main_status = status;
      rl_send(k, RL_MSG_MAIN_EXIT, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
              WIFSIGNALED(status) ? WTERMSIG(status) : 0);
      if (k->kill_tree)
        rl_begin_polite(k, k->stop_signal, k->grace_ms, 0);
    }
  }
}

/* ---- control input --------------------------------------------------------------------------- */

static void rl_signal_scope(rl_keeper_t *k, int sig, int scope)
{
  if (k->main_pid == 0) /* held: kill(-0) would signal the keeper's own group */
    return;
  if (scope == RL_SCOPE_MAIN) {
    if (!k->main_done)
      kill(k->main_pid, sig);
  } else {
    kill(-k->pgid, sig);
  }
  if (scope == RL_SCOPE_TREE) {
    rl_seen_clear();
    for (int pass = 0; pass < 1000 && rl_sweep(k, sig) > 0; pass++) {
    }
  }
}

/* "go N" or "prime N": N bytes of command follow; only once, only while held, at most 16 MiB.
 * Primed, the command waits for the gate (or a plain "go"). */
static void rl_go_spec(rl_keeper_t *k, int primed)
{
  if (k->main_pid || k->go || k->spec || k->spec_len > (16u << 20) ||
      !(k->spec = malloc(k->spec_len + 1))) {
    k->spec_len = 0;
    k->cancelled = !k->main_pid;
    return;
  }
  k->spec_have = 0;
  k->primed = primed;
  k->go = !primed || k->gate_open;
}

/* A queued next run is forgotten: what is still to come of its payload is skipped. */
static void rl_forget_next(rl_keeper_t *k)
{
  if (k->next_queued)
    k->discard += k->next_len - k->next_have;
  free(k->next_spec);
  k->next_spec = NULL;
  k->next_queued = 0;
}

/* "next N": N bytes of the next run's command follow. Only while a run is under way (and has
 * not given up on survivors); a second one replaces the first. */
static void rl_next_spec(rl_keeper_t *k, long long n)
{
  if (n < 0 || n > (16 << 20))
    return;          /* not ours: nothing follows that we could size */
  rl_forget_next(k); /* the one it replaces */
  if (!k->main_pid || k->survivors || !(k->next_spec = malloc((size_t)n + 1))) {
    k->discard += (size_t)n;
    rl_send(k, RL_MSG_DROPPED, 0, 0);
    return;
  }
  k->next_len = (size_t)n;
  k->next_have = 0;
  k->next_queued = 1;
}

/* "drop-next": reload no longer wants the next run. Still queued, it is dropped (what is still
 * to come of it is skipped); started already (reload had not read "started" yet), it is stopped
 * like any run. */
static void rl_drop_next(rl_keeper_t *k)
{
  if (k->next_queued) {
    rl_forget_next(k);
    rl_send(k, RL_MSG_DROPPED, 0, 0);
  } else if (k->unacked) { /* started, and reload did not know */
    rl_begin_polite(k, k->stop_signal, k->grace_ms, 0);
  }
}

static int rl_int_arg(long long v)
{
  return v < 0 ? -1 : v > 0x7fffffff ? 0x7fffffff : (int)v;
}

static void rl_command(rl_keeper_t *k, const char *line)
{
  rl_msg_t m;
  rl_verb_t verb = rl_msg_parse(line, &m);
  if (k->unacked && (verb == RL_MSG_TERM || verb == RL_MSG_TERMED || verb == RL_MSG_KILL ||
                     verb == RL_MSG_SIGNAL))
    return; /* meant for the run before the next one, which is gone */
  switch (verb) {
  case RL_MSG_ACK: k->unacked = 0; break;
  case RL_MSG_TERM:
  case RL_MSG_TERMED:
    rl_begin_polite(k, rl_int_arg(m.arg[0]), rl_int_arg(m.arg[1]), m.verb == RL_MSG_TERMED);
    break;
  case RL_MSG_KILL: rl_begin_forced(k); break;
  case RL_MSG_GO_DATA:
  case RL_MSG_PRIME:
    k->spec_len = m.arg[0] < 0 ? SIZE_MAX : (size_t)m.arg[0];
    rl_go_spec(k, m.verb == RL_MSG_PRIME);
    break;
  case RL_MSG_GO: k->go = 1; break;
  case RL_MSG_NEXT: rl_next_spec(k, m.arg[0]); break;
  case RL_MSG_DROP_NEXT: rl_drop_next(k); break;
  case RL_MSG_BYE: k->bye = 1; break;
  case RL_MSG_SIGNAL: rl_signal_scope(k, rl_int_arg(m.arg[0]), (int)m.arg[1]); break;
  default: break; /* not ours (or from a newer reload): ignored */
  }
}

/* reload is gone (EOF or parent-death signal): nobody will ever ask for a stop. */
static void rl_orphaned(rl_keeper_t *k)
{
  rl_begin_polite(k, k->stop_signal, k->orphan_grace_ms, 0);
}

/* Copies what fits of the n bytes at src into buf (have of want bytes so far); returns how many
 * it took. */
static size_t rl_take(char *buf, size_t *have, size_t want, const char *src, size_t n)
{
  size_t take = want - *have < n ? want - *have : n;
  memcpy(buf + *have, src, take);
  *have += take;
  return take;
}

static void rl_read_ctl(rl_keeper_t *k)
{
  ssize_t r = read(k->ctl, k->line + k->line_len, sizeof k->line - 1 - k->line_len);
  if (r < 0 && (errno == EINTR || errno == EAGAIN))
    return;
  if (r <= 0) {
    close(k->ctl);
    k->ctl = -1;
    if (!k->no_eof)
      rl_orphaned(k);
    return;
  }
  size_t len = k->line_len + (size_t)r, off = 0;
  while (off < len) {
    if (k->discard) { /* a dropped "next N" payload */
      size_t take = k->discard < len - off ? k->discard : len - off;
      k->discard -= take;
      off += take;
      continue;
    }
    if (k->next_queued && k->next_have < k->next_len) { /* a "next N" payload */
      off += rl_take(k->next_spec, &k->next_have, k->next_len, k->line + off, len - off);
      continue;
    }
    if (k->spec && k->spec_have < k->spec_len) { /* a "go N" payload comes first */
      off += rl_take(k->spec, &k->spec_have, k->spec_len, k->line + off, len - off);
      continue;
    }
    char *nl = memchr(k->line + off, '\n', len - off);
    if (!nl)
      break;
    *nl = '\0';
    rl_command(k, k->line + off);
    off = (size_t)(nl + 1 - k->line);
  }
  k->line_len = len - off;
  memmove(k->line, k->line + off, k->line_len);
  if (k->line_len == sizeof k->line - 1) /* a line too long to be ours: drop it */
    k->line_len = 0;
}

static void rl_read_signals(rl_keeper_t *k)
{
  struct signalfd_siginfo si;
  while (read(k->sfd, &si, sizeof si) == (ssize_t)sizeof si) {
    switch (si.ssi_signo) {
    case SIGTERM: rl_begin_polite(k, k->stop_signal, k->grace_ms, 0); break;
    case SIGUSR1: rl_begin_forced(k); break;
    case SIGHUP: rl_orphaned(k); break;
    default: break; /* SIGCHLD: reaped below; SIGINT/SIGQUIT from the tty: reload decides */
    }
  }
}

/* ---- starting the command -------------------------------------------------------------------- */

/* Only 0, 1 and 2 may reach the command: a leaked listening socket or the control socket
 * would outlive the tree's teardown (port held, EOF never seen). CLOEXEC rather than close, so
 * that the exec-error pipe still works until exec. */
static void rl_cloexec_from(int lowfd)
{
  if (syscall(SYS_close_range, (unsigned)lowfd, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
    return;
  DIR *d = opendir("/proc/self/fd");
  if (!d)
    return;
  struct dirent *e;
  while ((e = readdir(d))) {
    int fd = atoi(e->d_name);
    if (rl_proc_is_number(e->d_name) && fd >= lowfd && fd != dirfd(d))
      fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  closedir(d);
}

/* The signals whose disposition the command must not inherit: every one the keeper does not
 * leave at SIG_DFL (SIGPIPE, and whatever reload's own parent ignored). Read once at setup, off
 * the restart's path: dispositions do not change after it. */
static int rl_reset_list[NSIG], rl_reset_count;

static void rl_prepare_signals(void)
{
  rl_reset_count = 0;
  for (int sig = 1; sig < NSIG; sig++) {
    struct sigaction sa;
    if (sig != SIGKILL && sig != SIGSTOP && sigaction(sig, NULL, &sa) == 0 &&
        sa.sa_handler != SIG_DFL) /* glibc-reserved RT signals answer EINVAL: skipped */
      rl_reset_list[rl_reset_count++] = sig;
  }
}

/* exec, retried on ETXTBSY: a binary rebuilt a moment ago can still be open for writing by the
 * linker (or by a forked child that has not exec'd yet). Bounded: about 1 s in all. */
static void rl_exec(char **argv)
{
  struct timespec delay = {0, 2000000};
  for (int attempt = 0; attempt < 40; attempt++) {
    execvp(argv[0], argv);
    if (errno != ETXTBSY)
      return;
    nanosleep(&delay, NULL);
    if (delay.tv_nsec < 50000000)
      delay.tv_nsec *= 2;
  }
}

/* Drops the test switches from env (in place): they are the keeper's, and env may be one that
 * reload sent with "go N" rather than the keeper's own, which lost them at start. */
static void rl_drop_hooks(char **env)
{
  size_t plen = strlen(RL_KEEPER_HOOK_PREFIX);
  char **out = env;
  for (char **e = env; *e; e++)
    if (strncmp(*e, RL_KEEPER_HOOK_PREFIX, plen) != 0)
      *out++ = *e;
  *out = NULL;
}

/* The command's child runs in the keeper's memory (clone with CLONE_VM | CLONE_VFORK, as
 * posix_spawn does, on a stack of its own) until it execs: no copy of the keeper's pages, and the
 * keeper resumes once the exec is done. So everything that allocates or takes a lock is prepared
 * before (rl_start: the environment, close-on-exec, the sockets' flags; setup: the signal list),
 * and the child makes system calls only; what it writes here (err, the digits of LISTEN_PID) is
 * what the keeper reads, or overwrites, once it resumes. */
typedef struct {
  const rl_keeper_t *k;
  char *listen_pid; /* the value of LISTEN_PID in environ, reserved wide enough for any pid */
  int err;
} rl_spawn_t;

/* Prepares the sockets at fds 4..3+N for the command (systemd's protocol, sd_listen_fds(3)):
 * LISTEN_FDS, and LISTEN_PID reserved for the child to fill in with its own pid (the process
 * that execs the command). A wrapper that forks before the server (a shell running two
 * commands, npm) must pass it on, or the server, if it checks LISTEN_PID as sd_listen_fds does,
 * ignores the sockets (docs/sockets.md). Blocking, as systemd passes them: O_NONBLOCK belongs to
 * the socket's open file description, which every run shares, and the previous run (Go, Node,
 * gunicorn set it) must not decide it for this one (a plain accept() would fail with EAGAIN).
 * Without sockets, variables reload itself may have inherited are dropped: they would describe
 * fds this command does not have. Returns 0 or an errno. */
static int rl_prepare_sockets(const rl_keeper_t *k, rl_spawn_t *sp)
{
  sp->listen_pid = NULL;
  if (k->nlisten == 0) {
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDNAMES");
    return 0;
  }
  for (int i = 0; i < k->nlisten; i++) {
    int fl = fcntl(RL_KEEPER_LISTEN_FD + i, F_GETFL);
    if (fl < 0 || fcntl(RL_KEEPER_LISTEN_FD + i, F_SETFL, fl & ~O_NONBLOCK) < 0)
      return errno;
  }
  char buf[24];
  snprintf(buf, sizeof buf, "%d", k->nlisten);
  if (setenv("LISTEN_FDS", buf, 1) < 0 || setenv("LISTEN_PID", "0000000000", 1) < 0)
    return errno;
  sp->listen_pid = getenv("LISTEN_PID");
  return 0;
}

/* In the child: the sockets at fds 4..3+N go to 3..2+N. In ascending order every source is
 * above its target, so no dup2 overwrites a socket still to be moved; dup2 clears the CLOEXEC
 * that rl_cloexec_from set, and the last source (3+N) keeps it. Then this process's pid into the
 * reserved LISTEN_PID. System calls only (see rl_spawn_t). */
static int rl_pass_sockets(const rl_spawn_t *sp)
{
  const rl_keeper_t *k = sp->k;
  for (int i = 0; i < k->nlisten; i++)
    if (dup2(RL_KEEPER_LISTEN_FD + i, RL_LISTEN_FDS_START + i) < 0)
      return -1;
  if (sp->listen_pid) {
    char digits[12];
    int n = 0;
    for (long pid = (long)getpid(); pid > 0 && n < (int)sizeof digits; pid /= 10)
      digits[n++] = (char)('0' + pid % 10);
    int at = 0;
    while (n > 0)
      sp->listen_pid[at++] = digits[--n];
    sp->listen_pid[at] = '\0';
  }
  return 0;
}

/* The child's stack: 1 MiB above a guard page made inaccessible at setup, so that an overflow
 * kills the child rather than writes over the keeper's memory; untouched pages cost nothing.
 * exec's script fallback (a file without "#!") copies argv onto it: a longer argv gets a
 * mapping of its own (rl_start). */
enum { RL_GUARD = 4096, RL_CHILD_STACK = 1 << 20 };
static char rl_child_stack[RL_GUARD + RL_CHILD_STACK] __attribute__((aligned(RL_GUARD)));

static int rl_child(void *arg)
{
  rl_spawn_t *sp = arg;
  const rl_keeper_t *k = sp->k;
  if (k->use_setsid)
    setsid();
  else
    setpgid(0, 0);
  /* The pty on fd 1 becomes the controlling terminal of the command's new session, and its
   * group the terminal's foreground: programs see a terminal as they would under a shell. */
  if (k->tty)
    ioctl(1, TIOCSCTTY, 0);
  /* The command reads reload's terminal: its group must be the foreground one, or its first read
   * stops it with SIGTTIN. tcsetpgrp from a background group raises SIGTTOU unless it is blocked;
   * the empty mask set below unblocks it. reload takes the terminal back when the tree is gone. */
  if (k->foreground) {
    sigset_t ttou;
    sigemptyset(&ttou);
    sigaddset(&ttou, SIGTTOU);
    sigprocmask(SIG_BLOCK, &ttou, NULL);
    tcsetpgrp(0, getpid());
  }
  /* If the keeper is SIGKILLed, the main command at least dies with it. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != k->self)
    _exit(127);
  /* Signals last: dispositions inherited as SIG_IGN (a shell started in the background ignores
   * SIGINT) would make the polite signal a no-op; the keeper's blocked mask must not leak. No
   * handler is ever installed in the keeper, so none can run on this shared memory. */
  if (rl_pass_sockets(sp) == 0) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int i = 0; i < rl_reset_count; i++)
      sigaction(rl_reset_list[i], &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    rl_exec(k->argv);
  }
  /* An exec failure, or the command could not be given its sockets. */
  sp->err = errno;
  _exit(sp->err == ENOENT ? 127 : 126);
}

/* Starts the command. Returns 0 when it started, else the errno with *stage the step that
 * failed (fork: no command ran; exec: the child reported it). The child's fate is reaped like
 * any other. */
static int rl_start(rl_keeper_t *k, int *stage)
{
  *stage = RL_STAGE_FORK;
  rl_drop_hooks(environ);
  if (k->run_id && setenv("RELOAD_RUN", k->run_id, 1) < 0)
    return errno;
  /* Only 0, 1 and 2 may reach the command; the keeper never execs, so its own fds can be
   * marked here rather than in the child. */
  rl_cloexec_from(3);
  size_t argc = 0;
  while (k->argv[argc])
    argc++;
  char *stack = rl_child_stack + RL_GUARD, *map = NULL;
  size_t size = RL_CHILD_STACK, need = (65536 + (argc + 3) * sizeof(char *) + 4095) & ~4095ul;
  if (need > size) {
    map = mmap(NULL, RL_GUARD + need, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (map == MAP_FAILED)
      return errno;
    mprotect(map, RL_GUARD, PROT_NONE);
    stack = map + RL_GUARD, size = need;
  }
  rl_spawn_t sp = {k, NULL, 0};
  int serr = rl_prepare_sockets(k, &sp);
  if (serr) {
    if (map)
      munmap(map, RL_GUARD + need);
    return serr;
  }
  pid_t pid = clone(rl_child, stack + size, CLONE_VM | CLONE_VFORK | SIGCHLD, &sp);
  int err = errno;
  if (map)
    munmap(map, RL_GUARD + need);
  if (pid < 0)
    return err;
  /* The child has exec'd or exited: its group is set (setpgid in the child, before the exec), so
   * a stop arriving from now on reaches it. */
  k->main_pid = pid;
  k->pgid = pid;
  *stage = RL_STAGE_EXEC;
  return sp.err;
}

/* ---- setup ----------------------------------------------------------------------------------- */

static int rl_parse(rl_keeper_t *k, int argc, char **argv)
{
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--") == 0) {
      k->argv = argv + i + 1;
      return i + 1 < argc || k->hold ? 0 : -1; /* held: "go N" can bring the command */
    } else if (strcmp(a, RL_KOPT_SETSID) == 0) {
      k->use_setsid = 1;
    } else if (strcmp(a, RL_KOPT_KILL_TREE) == 0) {
      k->kill_tree = 1;
    } else if (strcmp(a, RL_KOPT_HOLD) == 0) {
      k->hold = 1;
    } else if (strcmp(a, RL_KOPT_TTY) == 0) {
      k->tty = 1;
      k->use_setsid = 1; /* a controlling terminal needs a session leader */
    } else if (strcmp(a, RL_KOPT_FOREGROUND) == 0) {
      k->foreground = 1;
    } else if (v && strcmp(a, RL_KOPT_PARENT_PID) == 0) {
      k->parent_pid = (pid_t)atoi(v), i++;
    } else if (v && strcmp(a, RL_KOPT_RUN_ID) == 0) {
      k->run_id = v, i++;
    } else if (v && strcmp(a, RL_KOPT_SIGNAL) == 0) {
      k->stop_signal = atoi(v), i++;
    } else if (v && strcmp(a, RL_KOPT_GRACE) == 0) {
      k->grace_ms = atoi(v), i++;
    } else if (v && strcmp(a, RL_KOPT_ORPHAN_GRACE) == 0) {
      k->orphan_grace_ms = atoi(v), i++;
    } else if (v && strcmp(a, RL_KOPT_GATE_OUT) == 0) {
      k->gate_out = atoi(v), i++;
    } else if (v && strcmp(a, RL_KOPT_GATE_IN) == 0) {
      k->gate_in = atoi(v), i++;
    } else if (v && strcmp(a, RL_KOPT_LISTEN_FDS) == 0) {
      k->nlisten = atoi(v), i++;
      if (k->nlisten < 0 || k->nlisten > RL_MAX_LISTEN)
        return -1;
    } else {
      fprintf(stderr, "reload keeper: bad option '%s'\n", a);
      return -1;
    }
  }
  return -1;
}

static int rl_env_flag(const char *name)
{
  const char *v = getenv(name);
  return v && *v && strcmp(v, "0") != 0;
}

/* Test hooks are read, then removed, so that they never reach the user command. */
static void rl_read_hooks(rl_keeper_t *k)
{
  k->no_pdeathsig = rl_env_flag(RL_HOOK_NO_PDEATHSIG);
  k->no_eof = rl_env_flag(RL_HOOK_NO_EOF);
  const char *e = getenv(RL_HOOK_ENUM);
  k->scan_only = e && strcmp(e, "scan") == 0;
  const char *delay = getenv(RL_HOOK_DELAY);
  k->delay_ms = delay ? atoi(delay) : 0;
  rl_drop_hooks(environ);
  char probe[64];
  snprintf(probe, sizeof probe, "/proc/%d/task/%d/children", (int)k->self, (int)k->self);
  if (access(probe, R_OK) != 0) /* kernel without CONFIG_PROC_CHILDREN */
    k->scan_only = 1;
}

/* A setup step failed (what, err): said on stderr, which reload shows as the command's, and to
 * reload, which reports a run that never started. Returns the keeper's exit status. */
static int rl_setup_failed(rl_keeper_t *k, const char *what, int err)
{
  fprintf(stderr, "reload-keeper: setup: %s: %s\n", what, strerror(err));
  rl_send(k, RL_MSG_ERROR, RL_STAGE_SETUP, err);
  return 125;
}

/* The keeper's own signals go through a signalfd (no work in handlers). Their dispositions
 * are set to SIG_DFL first: a signalfd never sees a signal that is ignored. */
static int rl_setup_signals(rl_keeper_t *k)
{
  static const int handled[] = {SIGCHLD, SIGTERM, SIGHUP, SIGINT, SIGQUIT, SIGUSR1};
  sigset_t set;
  sigemptyset(&set);
  for (size_t i = 0; i < sizeof handled / sizeof handled[0]; i++) {
    signal(handled[i], SIG_DFL);
    sigaddset(&set, handled[i]);
  }
  signal(SIGPIPE, SIG_IGN);
  if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
    return rl_setup_failed(k, "sigprocmask", errno);
  k->sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  return k->sfd < 0 ? rl_setup_failed(k, "signalfd", errno) : 0;
}

/* Parent death is covered twice: PDEATHSIG here, EOF on fd 3 in the loop. PDEATHSIG is armed
 * after exec, so the parent may already be gone: compare getppid() with the pid reload gave.
 * Returns 0, or the exit status after a failure (said by rl_setup_failed). */
static int rl_setup_parent(rl_keeper_t *k)
{
  if (fcntl(RL_KEEPER_CTL_FD, F_GETFD) >= 0) {
    k->ctl = RL_KEEPER_CTL_FD;
    fcntl(k->ctl, F_SETFD, FD_CLOEXEC);
  } else {
    k->ctl = -1;
  }
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
    return rl_setup_failed(k, "prctl(PR_SET_CHILD_SUBREAPER)", errno);
  if (k->delay_ms > 0) {
    struct timespec ts = {k->delay_ms / 1000, (long)(k->delay_ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
  }
  if (!k->no_pdeathsig && prctl(PR_SET_PDEATHSIG, SIGHUP) < 0)
    return rl_setup_failed(k, "prctl(PR_SET_PDEATHSIG)", errno);
  pid_t parent = getppid();
  if (k->parent_pid > 0 && parent != k->parent_pid) {
    /* reload died before the parent-death signal was armed (the tree would outlive it), or
     * something started the keeper in between. */
    char what[128];
    snprintf(what, sizeof what, "reload (pid %d) is not the parent (pid %d is)", (int)k->parent_pid,
             (int)parent);
    return rl_setup_failed(k, what, ESRCH);
  }
  return 0;
}

static int rl_poll_timeout_ms(const rl_keeper_t *k)
{
  if (k->phase == RL_FORCED)
    return 1;
  if (k->phase != RL_POLITE)
    return -1;
  int64_t next = k->next_sweep_ns < k->deadline_ns ? k->next_sweep_ns : k->deadline_ns;
  int64_t left = next - rl_now_ns();
  return left <= 0 ? 0 : (int)((left + 999999) / 1000000);
}

/* The SIGKILL sweeps have run RL_FORCED_LIMIT_MS and nothing died for RL_STALLED_MS. */
static int rl_forced_stalled(const rl_keeper_t *k, int64_t now)
{
  return now - k->forced_ns >= (int64_t)RL_FORCED_LIMIT_MS * 1000000 &&
         now - k->reaped_ns >= (int64_t)RL_STALLED_MS * 1000000;
}

static void rl_tick(rl_keeper_t *k)
{
  int64_t now = rl_now_ns();
  if (k->phase == RL_POLITE && now >= k->deadline_ns) {
    rl_begin_forced(k);
  } else if (k->phase == RL_POLITE && (k->reaped || now >= k->next_sweep_ns)) {
    /* A death in the tree can have just reparented a setsid'd grandchild to us, after the last
     * sweep read our list: sweep now rather than at the next 10 ms tick. */
    rl_polite_fixpoint(k);
    k->next_sweep_ns = now + 10000000;
  }
  k->reaped = 0;
  if (k->phase == RL_FORCED && (!rl_forced_pass(k) || rl_forced_stalled(k, now)))
    rl_give_up(k);
}

/* The "go N" payload as argv and environ (pointers into it); false if it is malformed. */
static int rl_use_spec(rl_keeper_t *k)
{
  char *p = k->spec, *end = k->spec + k->spec_len;
  *end = '\0'; /* a payload without its final NUL must not run strlen off the end */
  size_t n = 0;
  for (char *q = p; q < end; q += strlen(q) + 1)
    n++;
  char **list = k->spec_len && end[-1] == '\0' ? calloc(n + 2, sizeof *list) : NULL;
  if (!list)
    return 0;
  char **argv = list, **env = NULL;
  size_t i = 0;
  for (char *q = p; q < end; q += strlen(q) + 1) {
    if (*q == '\0' && !env) { /* the end of argv */
      list[i++] = NULL;
      env = list + i;
    } else if (*q != '\0') {
      list[i++] = q;
    }
  }
  list[i] = NULL;
  if (!env || !argv[0]) {
    free(list);
    return 0;
  }
  k->argv = argv;
  environ = env;
  return 1;
}

/* The previous keeper's gate: its byte says that its tree is gone; EOF alone says nothing. */
static void rl_read_gate(rl_keeper_t *k)
{
  char c;
  ssize_t r = read(k->gate_in, &c, 1);
  if (r < 0 && (errno == EINTR || errno == EAGAIN))
    return;
  if (r == 1) {
    k->gate_open = 1;
    k->go = k->go || k->primed;
  }
  close(k->gate_in);
  k->gate_in = -1;
}

/* --hold: everything is set up; wait for "go", or for the gate once primed. A stop, reload's
 * death or EOF first cancels the run (rl_begin_polite and rl_begin_forced see that nothing was
 * started). Signals and control lines are read before the gate in each round. */
static int rl_wait_go(rl_keeper_t *k)
{
  rl_send(k, RL_MSG_HELD, 0, 0);
  while ((!k->go || (k->spec && k->spec_have < k->spec_len)) && !k->cancelled) {
    struct pollfd fds[3] = {{k->sfd, POLLIN, 0}, {k->ctl, POLLIN, 0}, {k->gate_in, POLLIN, 0}};
    int n = rl_poll(k, fds, 3, -1); /* a negative fd is skipped */
    if (n <= 0)
      continue;
    if (fds[0].revents)
      rl_read_signals(k);
    if (k->ctl >= 0 && fds[1].revents)
      rl_read_ctl(k);
    if (k->gate_in >= 0 && fds[2].revents && !k->cancelled)
      rl_read_gate(k);
  }
  if (k->gate_in >= 0) { /* held open no longer than needed */
    close(k->gate_in);
    k->gate_in = -1;
  }
  if (k->cancelled)
    return -1;
  if (k->spec ? !rl_use_spec(k) : !k->argv[0])
    return EINVAL; /* reload sent no command, or a malformed one */
  return 0;
}

/* Nothing of this keeper's tree runs any more (or nothing reload can end): the next keeper may
 * start a primed command. */
static void rl_open_gate(rl_keeper_t *k)
{
  if (k->gate_out < 0)
    return;
  while (write(k->gate_out, "g", 1) < 0 && errno == EINTR) {
  }
  close(k->gate_out); /* SIGPIPE is ignored: a next keeper already gone costs an EPIPE */
  k->gate_out = -1;
}

static int rl_next_ready(const rl_keeper_t *k)
{
  return k->next_queued && k->next_have == k->next_len;
}

/* A signal other than SIGCHLD (reload's stop, its death) among those pending? */
static int rl_signalled(rl_keeper_t *k)
{
  struct signalfd_siginfo si;
  int other = 0;
  while (read(k->sfd, &si, sizeof si) == (ssize_t)sizeof si)
    other |= si.ssi_signo != SIGCHLD;
  return other;
}

/* The tree is empty and reload was told: waits for reload's "next" (one on its way when it read
 * "tree-empty"), its "bye" (sent with the stop when no next run is to come), EOF or a signal.
 * Returns 1 when a next run is ready to start. */
static int rl_wait_next(rl_keeper_t *k)
{
  while (!rl_next_ready(k) && !k->bye && k->ctl >= 0) {
    struct pollfd fds[2] = {{k->sfd, POLLIN, 0}, {k->ctl, POLLIN, 0}};
    if (rl_poll(k, fds, 2, -1) <= 0)
      continue;
    if (fds[0].revents && rl_signalled(k))
      break;
    if (fds[1].revents)
      rl_read_ctl(k);
  }
  return rl_next_ready(k);
}

/* Starts the queued next run in this keeper, as a new run: its command replaces the last one's,
 * and the teardown state starts over. With say_empty, "tree-empty" of the run before (forced,
 * us) goes out between the start and "started": the command first, then the news. Returns -1
 * when it could not start (said with "error"). */
static int rl_run_next(rl_keeper_t *k, int *stage, int say_empty, int forced, int64_t us)
{
  char **old_argv = k->argv_owned ? k->argv : NULL;
  char *old_spec = k->spec;
  k->spec = k->next_spec;
  k->spec_len = k->spec_have = k->next_len;
  k->next_spec = NULL;
  k->next_queued = 0;
  int err = EINVAL;
  *stage = RL_STAGE_EXEC; /* a malformed command */
  if (rl_use_spec(k)) {   /* argv and environ are the new command's from here on */
    free(old_argv);
    free(old_spec);
    k->argv_owned = 1;
    k->main_pid = k->pgid = 0;
    k->main_done = k->main_status = k->forced = k->empty = k->reaped = 0;
    k->phase = RL_RUNNING;
    k->stop_ns = k->deadline_ns = k->next_sweep_ns = k->forced_ns = k->reaped_ns = 0;
    k->unacked = 1;
    k->bye = 0;
    err = rl_start(k, stage);
  } else {
    free(k->spec);
    k->spec = old_spec;
  }
  if (say_empty)
    rl_send(k, RL_MSG_TREE_EMPTY, forced, us);
  if (err) {
    rl_send(k, RL_MSG_ERROR, *stage, err);
    return -1;
  }
  rl_send(k, RL_MSG_STARTED, k->main_pid, k->pgid);
  return 0;
}

static void rl_loop_until_empty(rl_keeper_t *k)
{
  for (;;) {
    rl_reap(k);
    if (k->empty)
      return;
    rl_tick(k);
    if (k->survivors)
      return;
    rl_reap(k);
    if (k->empty)
      return;
    struct pollfd fds[2] = {{k->sfd, POLLIN, 0}, {k->ctl, POLLIN, 0}};
    int n = rl_poll(k, fds, k->ctl >= 0 ? 2 : 1, rl_poll_timeout_ms(k));
    if (n <= 0)
      continue;
    if (fds[0].revents)
      rl_read_signals(k);
    if (k->ctl >= 0 && fds[1].revents)
      rl_read_ctl(k);
  }
}

static int rl_keeper_run(rl_keeper_t *k, int argc, char **argv)
{
  k->stop_signal = SIGTERM;
  k->grace_ms = 3000;
  k->orphan_grace_ms = 1000;
  k->self = getpid();
  k->ctl = k->gate_out = k->gate_in = -1;
  if (rl_parse(k, argc, argv) < 0) {
    fprintf(stderr, "usage: reload " RL_KEEPER_MODE " [OPTIONS] -- COMMAND [ARG...]\n");
    return 2;
  }
  /* Out of reload's process group: a signal to that group (a terminal's Ctrl-C, a CI job's
   * `kill -KILL -PGID`) reaches reload, which stops the trees in order, and not the keepers
   * too. Above all a group SIGKILL: keepers killed with reload could tear nothing down, and
   * whatever left the command's group (setsid) would survive. reload's death is their stop. */
  setpgid(0, 0);
  /* Fds reload leaked to us (a Lua io.open is not CLOEXEC) would be held until we exit. The
   * listening sockets reload gave us come first, at 4..3+N, then the gates. */
  int first_free = RL_KEEPER_LISTEN_FD + k->nlisten;
  first_free = k->gate_out >= first_free ? k->gate_out + 1 : first_free;
  first_free = k->gate_in >= first_free ? k->gate_in + 1 : first_free;
  syscall(SYS_close_range, (unsigned)first_free, ~0U, 0U);
  rl_read_hooks(k);
  int status = rl_setup_parent(k);
  if (!status)
    status = rl_setup_signals(k);
  for (int i = 0; i < k->nlisten && !status; i++)
    if (fcntl(RL_KEEPER_LISTEN_FD + i, F_SETFD, FD_CLOEXEC) < 0)
      status = rl_setup_failed(k, "a listening socket reload passed is not open", errno);
  /* The gates are the keeper's alone: the command must not hold the next keeper's gate open,
   * and a gate reload did not pass (a bad number) is not used. */
  if (k->gate_out >= 0 && fcntl(k->gate_out, F_SETFD, FD_CLOEXEC) < 0)
    k->gate_out = -1;
  if (k->gate_in >= 0 &&
      (fcntl(k->gate_in, F_SETFD, FD_CLOEXEC) < 0 || fcntl(k->gate_in, F_SETFL, O_NONBLOCK) < 0))
    k->gate_in = -1;
  if (status)
    return status;
  rl_prepare_signals();
  if (mprotect(rl_child_stack, RL_GUARD, PROT_NONE) < 0)
    return rl_setup_failed(k, "mprotect (the command's stack guard)", errno);
  int err = k->hold ? rl_wait_go(k) : 0, stage = RL_STAGE_SETUP;
  if (err < 0) {
    rl_send(k, RL_MSG_CANCELLED, 0, 0);
    rl_open_gate(k);
    return 0;
  }
  if (err == 0)
    err = rl_start(k, &stage);
  else
    stage = RL_STAGE_EXEC; /* "go" brought no command, or a malformed one */
  if (err)
    rl_send(k, RL_MSG_ERROR, stage, err);
  else
    rl_send(k, RL_MSG_STARTED, k->main_pid, k->pgid);
  if (k->main_pid == 0) { /* fork failed: nothing to wait for */
    rl_open_gate(k);
    return 125;
  }
  for (;;) {
    rl_loop_until_empty(k);
    int64_t duration_us = k->phase == RL_RUNNING ? -1 : (rl_now_ns() - k->stop_ns) / 1000;
    struct pollfd ctl = {k->ctl, POLLIN, 0};
    if (k->ctl >= 0 && rl_next_ready(k) && poll(&ctl, 1, 0) > 0)
      rl_read_ctl(k); /* a "drop-next" already sent is heeded before the start, not after */
    if (!k->survivors && rl_next_ready(k)) { /* the next run, at once: then the news */
      if (rl_run_next(k, &stage, 1, k->forced, duration_us) < 0)
        break;
      continue;
    }
    /* The next keeper first: it starts the next run, while reload reads the news. */
    rl_open_gate(k);
    if (k->survivors) {
      if (k->next_queued)
        rl_drop_next(k);
      rl_send(k, RL_MSG_GAVE_UP, k->survivors, duration_us);
      return rl_exit_status(k->main_status);
    }
    rl_send(k, RL_MSG_TREE_EMPTY, k->forced, duration_us);
    if (!rl_wait_next(k))
      return rl_exit_status(k->main_status);
    if (rl_run_next(k, &stage, 0, 0, 0) < 0)
      break;
  }
  rl_open_gate(k);
  return 125; /* the next run could not start (said with "error") */
}

int rl_keeper_main(int argc, char **argv)
{
  static rl_keeper_t keeper;
  int status = rl_keeper_run(&keeper, argc, argv);
  rl_flush(&keeper); /* the last news: tree-empty, gave-up, an error */
  return status;
}
