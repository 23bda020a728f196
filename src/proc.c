/*
 * proc.c: whole-tree process control for Lua, the `reload.Process` handle (core.spawn).
 *
 * Each run is started through a keeper (keeper.c), which reload spawns with uv_spawn: libuv
 * then owns exactly one pid per run, and reload never becomes a subreaper nor calls
 * waitpid(-1) (both break libuv: notes/process-tree.md §7). This file speaks the keeper's line
 * protocol over fd 3, turns its lines into events for Lua, and covers the keeper's own death:
 * a watchdog at grace + 2 s, and a fallback sweep (kill(-pgid) plus a scan of every process's
 * environment for the run's RELOAD_RUN marker) when the keeper dies by a signal.
 *
 * With spawn{pty}, the command's stdout and stderr are a pseudo-terminal (pty.c) whose master
 * is read like an output pipe; the keeper makes it the command's controlling terminal.
 *
 * Boundary: mechanism only. When to stop, restart or give up is the engine's business.
 *
 * Lifetime: the handle and its callbacks are held in the registry from spawn until the "exit"
 * event, which comes once every libuv handle of the run is closed; the C state is freed by
 * __gc after that.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "keeper_proto.h"
#include "procfs.h"
#include "pty.h"

#define RL_PROCESS_MT "reload.Process"
/* A keeper's fds: stdio, the control socket, the listening sockets, then two gates. */
#define RL_KEEPER_STDIO_MAX (RL_KEEPER_LISTEN_FD + RL_MAX_LISTEN + 2)

extern char **environ;

enum { RL_STARTING, RL_RUNNING, RL_MAIN_EXITED, RL_STOPPING, RL_FORCING, RL_EXITED };
static const char *const rl_state_names[] = {"starting", "running", "main-exited",
                                             "stopping", "forcing", "exited"};

enum { RL_IO_NULL, RL_IO_INHERIT, RL_IO_PIPE };
static const char *const rl_io_names[] = {"null", "inherit", "pipe", NULL};

typedef struct rl_proc_s rl_proc_t;

/* A process the keeper could not stop ("survivor"), as /proc showed it when reported. */
enum { RL_MAX_SURVIVORS = 16 };
typedef struct {
  int pid, err, uid; /* err: kill()'s errno (EPERM), 0 when it was sent; uid -1: unknown */
  char state;        /* 0: gone by the time it was read */
  char comm[32], cmdline[160];
} rl_survivor_t;

struct rl_proc_s {
  lua_State *L; /* main thread */
  uv_process_t keeper;
  uv_pipe_t ctl;
  uv_pipe_t io[3];
  uv_timer_t watchdog; /* SIGKILLs a keeper that does not finish a stop in time */
  uv_timer_t aux;      /* fallback sweep ticks, then the limit on draining pipes */
  int io_mode[3];
  int io_open[3]; /* pipe handle not yet closed */
  int master;     /* the pty master (read through io[1]) while io[1] is open, else -1 */
  int open_handles;
  int self_ref, event_ref, out_ref, err_ref;
  int state;
  char run_id[64];
  int stop_signal, grace_ms;
  int pid, pgid, keeper_pid;
  int have_main, main_code, main_signal;
  int spawn_errno, spawn_stage; /* "error STAGE ERRNO": the command never ran */
  int forced, fallback, tree_empty, keeper_done, keeper_status, keeper_signal, cancelled;
  int held, has_cmd, went;   /* spawned with hold; with a cmd; go() called */
  int primed;                /* go{ prime = true } sent the command; go() has not released it yet */
  int termed, said_stopping; /* reload signalled the group itself; "stopping" reported */
  int next_queued, said_bye; /* next{} sent a next run, not dropped; "bye" sent (no next run) */
  int kill_tree;             /* on_main_exit = "kill-tree": the keeper signals on main's exit */
  int gate_next; /* the read end of this keeper's gate, for the keeper spawned after it; -1 */
  int ctl_open, sweeping, sweep_ticks, finishing, finished, detached, failed;
  uint64_t stop_ns, empty_ns;
  double keeper_duration_ms;
  int gave_up, nsurvivors; /* the keeper gave up on nsurvivors processes (the first listed) */
  rl_survivor_t survivors[RL_MAX_SURVIVORS];
  char line[256];
  size_t line_len;
};

static unsigned rl_run_seq;

/* ---- signals --------------------------------------------------------------------------------- */

/* Every signal <signal.h> defines here, by its name without "SIG": the one list that both the
 * lookup below and core.signals (what the Lua side validates against) are made from. */
static const struct {
  const char *name;
  int num;
} rl_signals[] = {
    {"HUP", SIGHUP},       {"INT", SIGINT},   {"QUIT", SIGQUIT},   {"ILL", SIGILL},
    {"TRAP", SIGTRAP},     {"ABRT", SIGABRT}, {"BUS", SIGBUS},     {"FPE", SIGFPE},
    {"KILL", SIGKILL},     {"USR1", SIGUSR1}, {"SEGV", SIGSEGV},   {"USR2", SIGUSR2},
    {"PIPE", SIGPIPE},     {"ALRM", SIGALRM}, {"TERM", SIGTERM},   {"CHLD", SIGCHLD},
    {"CONT", SIGCONT},     {"STOP", SIGSTOP}, {"TSTP", SIGTSTP},   {"TTIN", SIGTTIN},
    {"TTOU", SIGTTOU},     {"URG", SIGURG},   {"XCPU", SIGXCPU},   {"XFSZ", SIGXFSZ},
    {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO},
    {"SYS", SIGSYS},
#ifdef SIGPWR
    {"PWR", SIGPWR},
#endif
#ifdef SIGSTKFLT
    {"STKFLT", SIGSTKFLT},
#endif
};

/* The name of real-time signal sig as `kill -l` prints it: RTMIN, RTMIN+1 ... RTMIN+15,
 * RTMAX-14 ... RTMAX-1, RTMAX. SIGRTMIN is libc's, read at run time: glibc keeps the kernel's
 * first two for its threads, so RTMIN is 34 there, the number a program's sigaction sees. */
static void rl_rt_name(int sig, char *buf, size_t size)
{
  int lo = SIGRTMIN, hi = SIGRTMAX;
  if (sig == lo)
    snprintf(buf, size, "RTMIN");
  else if (sig == hi)
    snprintf(buf, size, "RTMAX");
  else if (sig - lo <= (hi - lo) / 2)
    snprintf(buf, size, "RTMIN+%d", sig - lo);
  else
    snprintf(buf, size, "RTMAX-%d", hi - sig);
}

/* A signal as a name ("TERM", "SIGTERM", "term", "RTMIN+2") or a number; -1 if neither. */
static int rl_to_signal(lua_State *L, int idx)
{
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Integer n = lua_isinteger(L, idx) ? lua_tointeger(L, idx) : -1;
    return n >= 1 && n < NSIG ? (int)n : -1;
  }
  if (lua_type(L, idx) != LUA_TSTRING)
    return -1;
  const char *s = lua_tostring(L, idx);
  const char *name = strncasecmp(s, "SIG", 3) == 0 ? s + 3 : s;
  for (size_t i = 0; i < sizeof rl_signals / sizeof rl_signals[0]; i++)
    if (strcasecmp(name, rl_signals[i].name) == 0)
      return rl_signals[i].num;
  char rt[16];
  for (int sig = SIGRTMIN; sig <= SIGRTMAX; sig++) {
    rl_rt_name(sig, rt, sizeof rt);
    if (strcasecmp(name, rt) == 0)
      return sig;
  }
  return -1;
}

/* core.signals = { HUP = 1, ..., RTMIN = 34, ["RTMIN+1"] = 35, ..., RTMAX = 64 } */
static void rl_push_signals(lua_State *L)
{
  lua_newtable(L);
  for (size_t i = 0; i < sizeof rl_signals / sizeof rl_signals[0]; i++) {
    lua_pushinteger(L, rl_signals[i].num);
    lua_setfield(L, -2, rl_signals[i].name);
  }
  char rt[16];
  for (int sig = SIGRTMIN; sig <= SIGRTMAX; sig++) {
    rl_rt_name(sig, rt, sizeof rt);
    lua_pushinteger(L, sig);
    lua_setfield(L, -2, rt);
  }
}

/* A signal argument of a method; raises on anything else. */
static int rl_check_signal(lua_State *L, int arg)
{
  int sig = rl_to_signal(L, arg);
  if (sig < 0)
    luaL_argerror(L, arg, lua_pushfstring(L, "unknown signal '%s'", luaL_tolstring(L, arg, NULL)));
  return sig;
}

/* A signal in an option table (value on top of the stack); raises naming the option. */
static int rl_check_signal_opt(lua_State *L, const char *key)
{
  int sig = rl_to_signal(L, -1);
  if (sig < 0)
    luaL_error(L, "option '%s': unknown signal '%s'", key, luaL_tolstring(L, -1, NULL));
  return sig;
}

/* ---- helpers --------------------------------------------------------------------------------- */

/* The handle's state (the box holds it until __gc: a finished run still answers pid()). */
static rl_proc_t *rl_check_process(lua_State *L, int idx)
{
  return *rl_box_at(L, idx, RL_PROCESS_MT);
}

/* Calls the callback held in ref with the value on top of the stack (popped); not once the
 * handle is detached (the Lua state is closing). */
static void rl_callback(rl_proc_t *p, int ref)
{
  rl_call_ref(p->L, p->detached ? LUA_NOREF : ref, 1);
}

static void rl_set_int(lua_State *L, const char *key, lua_Integer v)
{
  lua_pushinteger(L, v);
  lua_setfield(L, -2, key);
}

/* Pushes a new event table {type = type}. */
static void rl_event_new(rl_proc_t *p, const char *type)
{
  lua_createtable(p->L, 0, 8);
  lua_pushstring(p->L, type);
  lua_setfield(p->L, -2, "type");
}

static void rl_emit_simple(rl_proc_t *p, const char *type)
{
  rl_event_new(p, type);
  rl_callback(p, p->event_ref);
}

/* ---- control channel out --------------------------------------------------------------------- */

typedef struct {
  uv_write_t req;
  char text[];
} rl_ctl_write_t;

static void rl_ctl_written(uv_write_t *req, int status)
{
  (void)status; /* a keeper gone mid-write is seen through its exit */
  free(req->data);
}

/* Sends msg's line and then len bytes of data (for "go N"). */
static void rl_ctl_send_data(rl_proc_t *p, const rl_msg_t *msg, const char *data, size_t len)
{
  if (!p->ctl_open || p->finishing)
    return;
  char line[64];
  size_t tlen = rl_msg_format(line, sizeof line, msg);
  rl_ctl_write_t *w = tlen ? malloc(sizeof *w + tlen + len) : NULL;
  if (!w)
    return;
  memcpy(w->text, line, tlen);
  if (len)
    memcpy(w->text + tlen, data, len);
  w->req.data = w;
  uv_buf_t buf = uv_buf_init(w->text, (unsigned)(tlen + len));
  if (uv_write(&w->req, (uv_stream_t *)&p->ctl, &buf, 1, rl_ctl_written) < 0)
    free(w);
}

static void rl_ctl_send(rl_proc_t *p, rl_verb_t verb, long long a, long long b)
{
  rl_msg_t msg = {verb, {a, b}};
  rl_ctl_send_data(p, &msg, NULL, 0);
}

/* ---- finishing ------------------------------------------------------------------------------- */

static void rl_finish(rl_proc_t *p);

static void rl_handle_closed(uv_handle_t *h)
{
  rl_proc_t *p = h->data;
  if (--p->open_handles > 0)
    return;
  if (p->failed)
    free(p);
  else
    rl_finish(p);
}

static void rl_close_handle(rl_proc_t *p, uv_handle_t *h)
{
  (void)p;
  if (!uv_is_closing(h))
    uv_close(h, rl_handle_closed);
}

static int rl_exit_status(const rl_proc_t *p)
{
  /* As env(1) and the shells: 127 not found, 126 not executable, 125 the keeper itself failed
   * (its setup, or the fork). */
  if (p->spawn_errno && p->spawn_stage != RL_STAGE_EXEC)
    return 125;
  if (p->spawn_errno)
    return p->spawn_errno == ENOENT ? 127 : 126;
  if (p->have_main && p->main_signal > 0)
    return 128 + p->main_signal;
  if (p->have_main && p->main_code >= 0)
    return p->main_code;
  if (p->keeper_signal)
    return 128 + SIGKILL; /* keeper died first: its PDEATHSIG(SIGKILL) took the command */
  return p->keeper_status;
}

/* Sets survivors = { {pid=, uid=, comm=, cmdline=, state=, error=}, ... } on the table on top;
 * survivors_total when there were more than the list holds. */
static void rl_push_survivors(rl_proc_t *p)
{
  lua_State *L = p->L;
  int n = p->nsurvivors < RL_MAX_SURVIVORS ? p->nsurvivors : RL_MAX_SURVIVORS;
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    const rl_survivor_t *sv = &p->survivors[i];
    lua_createtable(L, 0, 6);
    rl_set_int(L, "pid", sv->pid);
    if (sv->uid >= 0)
      rl_set_int(L, "uid", sv->uid);
    if (sv->state) {
      lua_pushstring(L, sv->comm);
      lua_setfield(L, -2, "comm");
      lua_pushstring(L, sv->cmdline);
      lua_setfield(L, -2, "cmdline");
      lua_pushlstring(L, &sv->state, 1);
      lua_setfield(L, -2, "state");
    }
    if (sv->err) {
      lua_pushstring(L, uv_err_name(-sv->err));
      lua_setfield(L, -2, "error");
    }
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "survivors");
  if (p->nsurvivors > n)
    rl_set_int(L, "survivors_total", p->nsurvivors);
}

static void rl_push_exit_event(rl_proc_t *p)
{
  lua_State *L = p->L;
  rl_event_new(p, "exit");
  if (p->have_main && p->main_code >= 0)
    rl_set_int(L, "code", p->main_code);
  if (p->have_main && p->main_signal > 0)
    rl_set_int(L, "signal", p->main_signal);
  else if (!p->have_main && p->keeper_signal)
    rl_set_int(L, "signal", SIGKILL);
  rl_set_int(L, "status", rl_exit_status(p));
  lua_pushboolean(L, p->forced);
  lua_setfield(L, -2, "forced");
  lua_pushboolean(L, p->fallback);
  lua_setfield(L, -2, "fallback");
  if (p->cancelled) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "cancelled");
  }
  if (p->stop_ns) {
    lua_pushnumber(L, (double)(p->empty_ns - p->stop_ns) / 1e6);
    lua_setfield(L, -2, "duration_ms");
  } else if (p->keeper_duration_ms >= 0) {
    lua_pushnumber(L, p->keeper_duration_ms);
    lua_setfield(L, -2, "duration_ms");
  }
  if (p->gave_up)
    rl_push_survivors(p);
  if (p->spawn_errno) {
    int err = -p->spawn_errno;
    static const char *const stage[RL_STAGE_COUNT] = {
        [RL_STAGE_SETUP] = "keeper setup: ", [RL_STAGE_FORK] = "fork: ", [RL_STAGE_EXEC] = ""};
    lua_pushfstring(L, "%s%s: %s", stage[p->spawn_stage], uv_err_name(err), uv_strerror(err));
    lua_setfield(L, -2, "spawn_error");
  }
}

/* Every handle is closed: the run is over. Report it, then let go of Lua's objects. */
static void rl_finish(rl_proc_t *p)
{
  p->finished = 1;
  p->state = RL_EXITED;
  rl_stat_add(RL_STAT_HANDLES, -1);
  if (p->detached) {
    free(p);
    return;
  }
  lua_State *L = p->L;
  if (!p->empty_ns)
    p->empty_ns = uv_hrtime();
  rl_push_exit_event(p);
  rl_callback(p, p->event_ref);
  rl_unref(L, &p->event_ref);
  rl_unref(L, &p->out_ref);
  rl_unref(L, &p->err_ref);
  rl_unref(L, &p->self_ref); /* last: the box may be collected from here on */
}

static void rl_close_all(rl_proc_t *p)
{
  p->finishing = 1;
  p->ctl_open = 0;
  if (p->keeper.type == UV_PROCESS) /* not when the run failed before uv_spawn */
    rl_close_handle(p, (uv_handle_t *)&p->keeper);
  rl_close_handle(p, (uv_handle_t *)&p->ctl);
  rl_close_handle(p, (uv_handle_t *)&p->watchdog);
  rl_close_handle(p, (uv_handle_t *)&p->aux);
  for (int i = 0; i < 3; i++)
    if (p->io_open[i]) {
      p->io_open[i] = 0;
      rl_close_handle(p, (uv_handle_t *)&p->io[i]);
    }
  p->master = -1;
  if (p->gate_next >= 0) {
    close(p->gate_next);
    p->gate_next = -1;
  }
}

static int rl_outputs_open(const rl_proc_t *p)
{
  return p->io_open[1] || p->io_open[2];
}

static void rl_drain_expired(uv_timer_t *t);

/* The run ends when the keeper is reaped, the control socket is at EOF (its last lines read),
 * a fallback sweep (if any) has found nobody, and the output pipes are at EOF (so on_stdout's
 * nil comes before "exit"). A pipe that some escaped process still holds is not waited for
 * more than a second. */
static void rl_maybe_finish(rl_proc_t *p)
{
  if (p->finishing || !p->keeper_done || p->sweeping)
    return;
  if (!p->empty_ns)
    p->empty_ns = uv_hrtime();
  if (p->ctl_open || rl_outputs_open(p)) {
    if (!uv_is_active((uv_handle_t *)&p->aux))
      uv_timer_start(&p->aux, rl_drain_expired, 1000, 0);
    return;
  }
  rl_close_all(p);
}

static void rl_output_eof(rl_proc_t *p, int fd)
{
  if (!p->io_open[fd])
    return;
  p->io_open[fd] = 0;
  if (fd == 1)
    p->master = -1;
  uv_read_stop((uv_stream_t *)&p->io[fd]);
  rl_close_handle(p, (uv_handle_t *)&p->io[fd]);
  if (p->detached)
    return;
  lua_pushnil(p->L);
  rl_callback(p, fd == 1 ? p->out_ref : p->err_ref);
}

static void rl_drain_expired(uv_timer_t *t)
{
  rl_proc_t *p = t->data;
  rl_output_eof(p, 1);
  rl_output_eof(p, 2);
  if (p->ctl_open) {
    p->ctl_open = 0;
    uv_read_stop((uv_stream_t *)&p->ctl);
  }
  rl_maybe_finish(p);
}

/* ---- fallback sweep (the keeper died) -------------------------------------------------------- */

typedef struct {
  const char *marker;
  char *buf;
  size_t size;
  int found;
} rl_marked_t;

static int rl_kill_if_marked(int pid, void *ud)
{
  rl_marked_t *m = ud;
  if (pid != getpid() && rl_proc_environ_has(pid, m->marker, m->buf, m->size)) {
    kill(pid, SIGKILL);
    m->found++;
  }
  return 0;
}

/* SIGKILLs every process carrying the run's marker; returns how many it found. */
static int rl_kill_marked(rl_marked_t *m)
{
  char dents[16384];
  rl_proc_each_pid(dents, sizeof dents, rl_kill_if_marked, m);
  return m->found;
}

/* A scan that found nobody is not proof on its own (rl_proc_each_new_pid): the pids given out
 * since it began are checked too, until none was given out during a check. Returns how many
 * carried the marker (SIGKILLed), or -1 when it cannot be told yet (too many new pids, pids
 * still given out): then the next tick scans again. Without ns_last_pid, the scan's answer. */
static int rl_kill_marked_since(rl_marked_t *m, long since)
{
  for (int round = 0; round < 16; round++) {
    int n = rl_proc_each_new_pid(&since, 4096, rl_kill_if_marked, m);
    if (n == RL_PIDS_TOO_MANY)
      return -1;
    if (n == 0 || n == RL_PIDS_UNKNOWN || m->found)
      return m->found;
  }
  return -1;
}

static void rl_sweep_tick(uv_timer_t *t)
{
  rl_proc_t *p = t->data;
  char marker[96];
  snprintf(marker, sizeof marker, "RELOAD_RUN=%s", p->run_id);
  rl_marked_t m = {marker, malloc(256 * 1024), 256 * 1024, 0};
  int found = -1;
  if (m.buf) {
    long since = rl_proc_last_pid();
    found = rl_kill_marked(&m);
    if (found == 0)
      found = rl_kill_marked_since(&m, since);
  }
  free(m.buf);
  /* A zombie's environ reads empty, so "none found" means none alive; give up after ~5 s. */
  if (found == 0 || ++p->sweep_ticks > 5000) {
    uv_timer_stop(t);
    p->sweeping = 0;
    p->empty_ns = uv_hrtime();
    rl_maybe_finish(p);
  }
}

static void rl_start_fallback(rl_proc_t *p)
{
  p->fallback = 1;
  p->forced = 1;
  p->sweeping = 1;
  if (p->pgid > 0)
    kill(-p->pgid, SIGKILL);
  uv_timer_start(&p->aux, rl_sweep_tick, 0, 1);
}

/* ---- keeper events --------------------------------------------------------------------------- */

static void rl_keeper_exited(uv_process_t *h, int64_t status, int term_signal)
{
  rl_proc_t *p = h->data;
  p->keeper_done = 1;
  p->keeper_status = (int)status;
  p->keeper_signal = term_signal;
  uv_timer_stop(&p->watchdog);
  if (term_signal && !p->tree_empty)
    rl_start_fallback(p);
  rl_maybe_finish(p);
}

static void rl_watchdog_fired(uv_timer_t *t)
{
  rl_proc_t *p = t->data;
  if (!p->keeper_done)
    uv_process_kill(&p->keeper, SIGKILL);
}

/* "started" after "tree-empty": the keeper's next run (next{}); the run's own state starts
 * over. */
static void rl_begin_next_run(rl_proc_t *p)
{
  p->tree_empty = p->forced = p->have_main = p->termed = p->said_stopping = 0;
  p->next_queued = p->said_bye = 0;
  p->stop_ns = p->empty_ns = 0;
  p->keeper_duration_ms = -1;
  p->state = RL_STARTING;
  uv_timer_stop(&p->watchdog); /* armed by the last run's stop */
}

static void rl_on_started(rl_proc_t *p, int pid, int pgid)
{
  if (p->tree_empty) {
    rl_begin_next_run(p);
    rl_ctl_send(p, RL_MSG_ACK, 0, 0); /* from now on, stops are this run's */
  }
  p->pid = pid;
  p->pgid = pgid;
  if (p->state == RL_STARTING)
    p->state = RL_RUNNING;
  rl_event_new(p, "started");
  rl_set_int(p->L, "pid", pid);
  rl_set_int(p->L, "pgid", pgid);
  rl_callback(p, p->event_ref);
}

static void rl_on_main_exit(rl_proc_t *p, int code, int sig)
{
  p->have_main = 1;
  p->main_code = code;
  p->main_signal = sig;
  if (p->spawn_errno) /* reported once, by "exit" with spawn_error */
    return;
  if (p->state == RL_RUNNING || p->state == RL_STARTING)
    p->state = RL_MAIN_EXITED;
  rl_event_new(p, "main-exit");
  if (code >= 0)
    rl_set_int(p->L, "code", code);
  if (sig > 0)
    rl_set_int(p->L, "signal", sig);
  rl_callback(p, p->event_ref);
}

/* "survivor PID ERRNO": what it is, read now, while it lives. */
static void rl_on_survivor(rl_proc_t *p, int pid, int err)
{
  if (p->nsurvivors++ >= RL_MAX_SURVIVORS)
    return;
  rl_survivor_t *sv = &p->survivors[p->nsurvivors - 1];
  memset(sv, 0, sizeof *sv);
  sv->pid = pid;
  sv->err = err;
  sv->uid = rl_proc_euid(pid);
  rl_pstat_t st;
  if (rl_proc_stat(pid, &st) == 0) {
    sv->state = st.state;
    snprintf(sv->comm, sizeof sv->comm, "%s", st.comm);
  }
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
  ssize_t len = rl_proc_read(path, sv->cmdline, sizeof sv->cmdline);
  for (ssize_t i = 0; i < len; i++) /* arguments are NUL-separated */
    if (sv->cmdline[i] == '\0')
      sv->cmdline[i] = ' ';
  while (len > 0 && sv->cmdline[len - 1] == ' ')
    sv->cmdline[--len] = '\0';
}

/* "gave-up COUNT US": the tree is not empty and never will be by our hand. As "tree-empty" for
 * the run (nothing more will go), with the survivors named. */
static void rl_on_gave_up(rl_proc_t *p, long long us)
{
  p->gave_up = 1;
  p->tree_empty = 1;
  p->forced = 1;
  p->empty_ns = uv_hrtime();
  p->keeper_duration_ms = us >= 0 ? (double)us / 1000.0 : -1;
  if (p->spawn_errno)
    return;
  rl_event_new(p, "gave-up");
  lua_pushboolean(p->L, 1);
  lua_setfield(p->L, -2, "forced");
  rl_push_survivors(p);
  rl_callback(p, p->event_ref);
}

/* "stopping" says that the polite signal went out. After "termed" reload sent it itself, and
 * the tree may die before the keeper reads the news: the event comes first all the same, once. */
static void rl_said_stopping(rl_proc_t *p)
{
  if (p->said_stopping)
    return;
  p->said_stopping = 1;
  if (p->state < RL_STOPPING)
    p->state = RL_STOPPING;
  rl_emit_simple(p, "stopping");
}

/* "bye": no next run will follow, the keeper may exit once its tree is empty. Once. */
static void rl_say_bye(rl_proc_t *p)
{
  if (!p->said_bye) {
    p->said_bye = 1;
    rl_ctl_send(p, RL_MSG_BYE, 0, 0);
  }
}

static void rl_on_line(rl_proc_t *p, const char *line)
{
  rl_msg_t m;
  if (p->detached)
    return;
  rl_verb_t verb = rl_msg_parse(line, &m);
  if (p->termed && (verb == RL_MSG_MAIN_EXIT || verb == RL_MSG_FORCING ||
                    verb == RL_MSG_TREE_EMPTY || verb == RL_MSG_GAVE_UP))
    rl_said_stopping(p);
  switch (verb) {
  case RL_MSG_STARTED: rl_on_started(p, (int)m.arg[0], (int)m.arg[1]); break;
  case RL_MSG_ERROR:
    p->spawn_stage = (int)m.arg[0];
    p->spawn_errno = (int)m.arg[1] > 0 ? (int)m.arg[1] : EINVAL;
    break;
  case RL_MSG_MAIN_EXIT: rl_on_main_exit(p, (int)m.arg[0], (int)m.arg[1]); break;
  case RL_MSG_STOPPING: rl_said_stopping(p); break;
  case RL_MSG_FORCING:
    p->state = RL_FORCING;
    p->forced = 1;
    rl_emit_simple(p, "forcing");
    break;
  case RL_MSG_TREE_EMPTY:
    /* Without a next run queued, the keeper waits for word: it may go. First, so that nothing
     * the event's callback does can queue one now. */
    if (!p->next_queued)
      rl_say_bye(p);
    p->tree_empty = 1;
    p->forced = m.arg[0] != 0;
    p->empty_ns = uv_hrtime();
    p->keeper_duration_ms = m.arg[1] >= 0 ? (double)m.arg[1] / 1000.0 : -1;
    /* Every process of the tree is reaped, so whatever it held (ports) is free: a restart
     * need not wait for the keeper's own exit and reload's handles ("exit"). */
    if (!p->spawn_errno) { /* a run that never started is reported once, by "exit" */
      rl_event_new(p, "tree-empty");
      lua_pushboolean(p->L, p->forced);
      lua_setfield(p->L, -2, "forced");
      rl_callback(p, p->event_ref);
    }
    break;
  case RL_MSG_SURVIVOR: rl_on_survivor(p, (int)m.arg[0], (int)m.arg[1]); break;
  case RL_MSG_GAVE_UP: rl_on_gave_up(p, m.arg[1]); break;
  case RL_MSG_HELD: rl_emit_simple(p, "held"); break;
  case RL_MSG_DROPPED:
    p->next_queued = 0;
    if (p->tree_empty) /* it waits for word since its tree is empty */
      rl_say_bye(p);
    rl_emit_simple(p, "dropped");
    break;
  case RL_MSG_CANCELLED:
    p->cancelled = 1;
    p->tree_empty = 1;
    p->empty_ns = uv_hrtime();
    break;
  default: break; /* not a line of the protocol */
  }
}

static void rl_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
  (void)h;
  buf->base = malloc(suggested);
  buf->len = buf->base ? suggested : 0;
}

static void rl_ctl_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
  rl_proc_t *p = s->data;
  for (ssize_t i = 0; i < n; i++) {
    char c = buf->base[i];
    if (c == '\n') {
      p->line[p->line_len] = '\0';
      p->line_len = 0;
      rl_on_line(p, p->line);
    } else if (p->line_len < sizeof p->line - 1) {
      p->line[p->line_len++] = c;
    }
  }
  free(buf->base);
  if (n < 0) {
    p->ctl_open = 0;
    uv_read_stop(s);
    rl_maybe_finish(p);
  }
}

static void rl_output_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
  rl_proc_t *p = s->data;
  int fd = s == (uv_stream_t *)&p->io[1] ? 1 : 2;
  if (n > 0 && !p->detached) {
    lua_pushlstring(p->L, buf->base, (size_t)n);
    rl_callback(p, fd == 1 ? p->out_ref : p->err_ref);
  }
  free(buf->base);
  if (n < 0) {
    rl_output_eof(p, fd);
    rl_maybe_finish(p);
  }
}

/* ---- spawning -------------------------------------------------------------------------------- */

/* Cuts the last n components off an absolute path; false when there are not that many. */
static int rl_strip(char *path, int n)
{
  for (; n > 0; n--) {
    char *slash = strrchr(path, '/');
    if (!slash || slash == path)
      return 0;
    *slash = '\0';
  }
  return 1;
}

/* The keeper: $RELOAD_KEEPER; else the static reload-keeper of this build or installation
 * (lib/reload/, next to core.so; ../lib/reload/ from bin/reload); else a reload executable in
 * keeper mode (this one, or the bin/reload beside core.so's lib/). Found once. */
static const char *rl_keeper_path(void)
{
  static char path[PATH_MAX];
  const char *env = getenv("RELOAD_KEEPER");
  if (env && *env)
    return env;
  if (path[0])
    return path;
  char dir[PATH_MAX];
  Dl_info info;
  if (rl_self_exe) { /* .../bin/reload */
    if (!realpath(rl_self_exe, dir) || !rl_strip(dir, 2))
      return rl_self_exe;
    snprintf(path, sizeof path, "%.*s/lib/reload/reload-keeper", PATH_MAX - 32, dir);
    if (access(path, X_OK) != 0)
      snprintf(path, sizeof path, "%s", rl_self_exe);
    return path;
  }
  if (!dladdr((void *)rl_keeper_path, &info) || !info.dli_fname || !realpath(info.dli_fname, dir) ||
      !rl_strip(dir, 1)) /* .../lib/reload/core.so */
    return NULL;
  snprintf(path, sizeof path, "%.*s/reload-keeper", PATH_MAX - 32, dir);
  if (access(path, X_OK) == 0)
    return path;
  if (!rl_strip(dir, 2))
    return NULL;
  snprintf(path, sizeof path, "%.*s/bin/reload", PATH_MAX - 16, dir);
  return path;
}

typedef struct {
  const char *shell_cmd; /* cmd as a string, else NULL and the table at cmd_idx */
  int cmd_idx, env_idx;
  const char *cwd;
  int io[3];
  int stop_signal, grace_ms, kill_tree, use_setsid, hold;
  int pty, cols, rows, foreground;
  int on_event, on_stdout, on_stderr; /* stack indices, 0 = none */
  int listen_fds[RL_MAX_LISTEN];      /* sockets for the command (fds 3, 4, ...) */
  int nlisten;
  int gate;         /* give the keeper a gate (keeper_proto.h) */
  rl_proc_t *after; /* the keeper whose gate this one waits on when primed, or NULL */
} rl_spawn_opts_t;

static const char *const rl_spawn_keys[] = {
    "cmd",       "cwd",         "env",      "stdin",        "stdout", "stderr",   "on_stdout",
    "on_stderr", "stop_signal", "grace_ms", "on_main_exit", "setsid", "on_event", "hold",
    "pty",       "foreground",  "listen",   "gate",         "after",  NULL,
};

/* listen = { fd, ... }: open descriptors (core.listen's Socket:fd()), at most RL_MAX_LISTEN. */
static void rl_parse_listen(lua_State *L, rl_spawn_opts_t *o)
{
  int idx = rl_opt(L, 1, "listen", LUA_TTABLE);
  if (!idx)
    return;
  lua_Integer n = luaL_len(L, idx);
  if (n > RL_MAX_LISTEN)
    luaL_error(L, "option 'listen': at most %d sockets", RL_MAX_LISTEN);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, idx, i);
    lua_Integer fd = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : -1;
    if (fd < 0 || fd > INT_MAX || fcntl((int)fd, F_GETFD) < 0)
      luaL_error(L, "option 'listen': entry %d is not an open file descriptor", (int)i);
    o->listen_fds[o->nlisten++] = (int)fd;
    lua_pop(L, 1);
  }
}

/* pty.cols or pty.rows: an integer from 1 to 65535. */
static int rl_check_size(lua_State *L, int idx, const char *key)
{
  lua_getfield(L, idx, key);
  lua_Integer v = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : 0;
  if (v < 1 || v > 65535)
    luaL_error(L, "option 'pty.%s': an integer from 1 to 65535 expected", key);
  lua_pop(L, 1);
  return (int)v;
}

/* A grace period in ms (value on top of the stack): an integer >= 0. */
static int rl_check_grace(lua_State *L, const char *key)
{
  lua_Integer g = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : -1;
  if (g < 0 || g > INT_MAX)
    luaL_error(L, "option '%s': an integer >= 0 expected", key);
  return (int)g;
}

static void rl_parse_spawn(lua_State *L, rl_spawn_opts_t *o)
{
  luaL_checkstack(L, 40, NULL);
  luaL_checktype(L, 1, LUA_TTABLE);
  rl_opt_keys(L, 1, rl_spawn_keys);
  memset(o, 0, sizeof *o);
  if (rl_opt(L, 1, "hold", LUA_TBOOLEAN))
    o->hold = lua_toboolean(L, -1);
  if (rl_opt(L, 1, "gate", LUA_TBOOLEAN))
    o->gate = lua_toboolean(L, -1);
  if (lua_getfield(L, 1, "after") != LUA_TNIL)
    o->after = rl_check_process(L, lua_gettop(L));
  int t = lua_getfield(L, 1, "cmd");
  if (t == LUA_TSTRING) {
    o->shell_cmd = lua_tostring(L, -1);
  } else if (t == LUA_TTABLE) {
    o->cmd_idx = lua_gettop(L);
    rl_opt_strings(L, o->cmd_idx, "cmd", 1);
  } else if (t != LUA_TNIL || !o->hold) { /* held: go{ cmd = ... } can bring it */
    luaL_error(L, "option 'cmd': string or table expected, got %s", luaL_typename(L, -1));
  }
  if ((o->env_idx = rl_opt(L, 1, "env", LUA_TTABLE)))
    rl_opt_strings(L, o->env_idx, "env", 0);
  if (rl_opt(L, 1, "cwd", LUA_TSTRING))
    o->cwd = lua_tostring(L, -1);
  o->io[0] = rl_opt_choice(L, 1, "stdin", rl_io_names, RL_IO_NULL);
  o->io[1] = rl_opt_choice(L, 1, "stdout", rl_io_names, RL_IO_INHERIT);
  o->io[2] = rl_opt_choice(L, 1, "stderr", rl_io_names, RL_IO_INHERIT);
  o->on_event = rl_opt(L, 1, "on_event", LUA_TFUNCTION);
  o->on_stdout = rl_opt(L, 1, "on_stdout", LUA_TFUNCTION);
  o->on_stderr = rl_opt(L, 1, "on_stderr", LUA_TFUNCTION);
  o->stop_signal = SIGTERM;
  if (lua_getfield(L, 1, "stop_signal") != LUA_TNIL)
    o->stop_signal = rl_check_signal_opt(L, "stop_signal");
  o->grace_ms = 3000;
  if (rl_opt(L, 1, "grace_ms", LUA_TNUMBER))
    o->grace_ms = rl_check_grace(L, "grace_ms");
  static const char *const policies[] = {"wait-tree", "kill-tree", NULL};
  o->kill_tree = rl_opt_choice(L, 1, "on_main_exit", policies, 0) == 1;
  if (rl_opt(L, 1, "setsid", LUA_TBOOLEAN))
    o->use_setsid = lua_toboolean(L, -1);
  if (rl_opt(L, 1, "foreground", LUA_TBOOLEAN))
    o->foreground = lua_toboolean(L, -1);
  int pty = rl_opt(L, 1, "pty", LUA_TTABLE);
  if (pty) {
    if (lua_getfield(L, 1, "stdout") != LUA_TNIL || lua_getfield(L, 1, "stderr") != LUA_TNIL ||
        o->on_stderr)
      luaL_error(L, "option 'pty': stdout and stderr are the pty's, read with on_stdout");
    if (o->foreground)
      luaL_error(L, "option 'pty': the command's terminal is the pty, not reload's (foreground)");
    o->pty = 1;
    o->cols = rl_check_size(L, pty, "cols");
    o->rows = rl_check_size(L, pty, "rows");
    o->io[1] = RL_IO_PIPE;
    o->io[2] = RL_IO_NULL;
  }
  rl_parse_listen(L, o);
}

/* The keeper's argv (a userdata-backed array, freed with the stack). */
static char **rl_keeper_argv(lua_State *L, const rl_spawn_opts_t *o, rl_proc_t *p,
                             const char *keeper)
{
  lua_Integer ncmd = o->shell_cmd ? 3 : o->cmd_idx ? luaL_len(L, o->cmd_idx) : 0;
  char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(ncmd + 28), 0);
  int n = 0;
  argv[n++] = (char *)keeper;
  argv[n++] = RL_KEEPER_MODE;
  argv[n++] = RL_KOPT_PARENT_PID;
  argv[n++] = (char *)lua_pushfstring(L, "%d", (int)getpid());
  argv[n++] = RL_KOPT_RUN_ID;
  argv[n++] = p->run_id;
  argv[n++] = RL_KOPT_SIGNAL;
  argv[n++] = (char *)lua_pushfstring(L, "%d", o->stop_signal);
  argv[n++] = RL_KOPT_GRACE;
  argv[n++] = (char *)lua_pushfstring(L, "%d", o->grace_ms);
  /* reload gone: the tree goes within a second even when the run's grace is longer. */
  argv[n++] = RL_KOPT_ORPHAN_GRACE;
  argv[n++] = (char *)lua_pushfstring(L, "%d", o->grace_ms < 1000 ? o->grace_ms : 1000);
  if (o->use_setsid)
    argv[n++] = RL_KOPT_SETSID;
  if (o->kill_tree)
    argv[n++] = RL_KOPT_KILL_TREE;
  if (o->hold)
    argv[n++] = RL_KOPT_HOLD;
  if (o->nlisten) {
    argv[n++] = RL_KOPT_LISTEN_FDS;
    argv[n++] = (char *)lua_pushfstring(L, "%d", o->nlisten);
  }
  if (o->pty)
    argv[n++] = RL_KOPT_TTY;
  if (o->foreground)
    argv[n++] = RL_KOPT_FOREGROUND;
  int gate_fd = RL_KEEPER_LISTEN_FD + o->nlisten; /* the gates come after the sockets */
  if (o->gate) {
    argv[n++] = RL_KOPT_GATE_OUT;
    argv[n++] = (char *)lua_pushfstring(L, "%d", gate_fd++);
  }
  if (o->after && o->after->gate_next >= 0) {
    argv[n++] = RL_KOPT_GATE_IN;
    argv[n++] = (char *)lua_pushfstring(L, "%d", gate_fd);
  }
  argv[n++] = "--";
  if (o->shell_cmd) {
    argv[n++] = "/bin/sh";
    argv[n++] = "-c";
    argv[n++] = (char *)o->shell_cmd;
  } else {
    for (lua_Integer i = 1; i <= ncmd; i++) {
      lua_geti(L, o->cmd_idx, i); /* the string stays alive: cmd table is on the stack */
      argv[n++] = (char *)lua_tostring(L, -1);
      lua_pop(L, 1);
    }
  }
  argv[n] = NULL;
  return argv;
}

/* The environment: the given one, plus the keeper's test hooks (RELOAD_KEEPER_*) from reload's
 * own environment, which the keeper reads and removes before the command starts. */
static char **rl_keeper_env(lua_State *L, const rl_spawn_opts_t *o)
{
  if (!o->env_idx)
    return NULL;
  lua_Integer n = luaL_len(L, o->env_idx);
  size_t hooks = 0;
  for (char **e = environ; *e; e++)
    hooks++;
  char **env = lua_newuserdatauv(L, sizeof(char *) * ((size_t)n + hooks + 1), 0);
  size_t k = 0;
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, o->env_idx, i);
    env[k++] = (char *)lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  for (char **e = environ; *e; e++)
    if (strncmp(*e, RL_KEEPER_HOOK_PREFIX, strlen(RL_KEEPER_HOOK_PREFIX)) == 0)
      env[k++] = *e;
  env[k] = NULL;
  return env;
}

/* With a pty, the keeper's stdout and stderr are the slave (slave >= 0), and io[1] reads the
 * master: EOF comes as EIO once the last process holding the slave is gone. */
static int rl_init_handles(lua_State *L, rl_proc_t *p, const rl_spawn_opts_t *o,
                           uv_stdio_container_t stdio[RL_KEEPER_STDIO_MAX], int master, int slave)
{
  uv_loop_t *loop = rl_loop(L);
  uv_pipe_init(loop, &p->ctl, 0);
  uv_timer_init(loop, &p->watchdog);
  uv_timer_init(loop, &p->aux);
  p->ctl.data = p->watchdog.data = p->aux.data = p->keeper.data = p;
  p->open_handles = 4; /* keeper, ctl, watchdog, aux */
  for (int i = 0; i < 3; i++) {
    p->io_mode[i] = o->io[i];
    if (o->io[i] == RL_IO_PIPE) {
      uv_pipe_init(loop, &p->io[i], 0);
      p->io[i].data = p;
      p->io_open[i] = 1;
      p->open_handles++;
      stdio[i].flags = UV_CREATE_PIPE | (i == 0 ? UV_READABLE_PIPE : UV_WRITABLE_PIPE);
      stdio[i].data.stream = (uv_stream_t *)&p->io[i];
    } else if (o->io[i] == RL_IO_INHERIT) {
      stdio[i].flags = UV_INHERIT_FD;
      stdio[i].data.fd = i;
    } else {
      stdio[i].flags = UV_IGNORE; /* libuv gives fds 0-2 /dev/null */
    }
  }
  if (slave >= 0) {
    stdio[1].flags = stdio[2].flags = UV_INHERIT_FD;
    stdio[1].data.fd = stdio[2].data.fd = slave;
    int err = uv_pipe_open(&p->io[1], master);
    if (err)
      return err;
    p->master = master;
  }
  stdio[3].flags = UV_CREATE_PIPE | UV_READABLE_PIPE | UV_WRITABLE_PIPE;
  stdio[3].data.stream = (uv_stream_t *)&p->ctl;
  /* libuv dup2()s each into place in the keeper, which clears the CLOEXEC they have here. */
  for (int i = 0; i < o->nlisten; i++) {
    stdio[RL_KEEPER_LISTEN_FD + i].flags = UV_INHERIT_FD;
    stdio[RL_KEEPER_LISTEN_FD + i].data.fd = o->listen_fds[i];
  }
  return 0;
}

static void rl_hold_callbacks(lua_State *L, rl_proc_t *p, const rl_spawn_opts_t *o)
{
  p->event_ref = o->on_event ? rl_ref(L, o->on_event) : LUA_NOREF;
  p->out_ref = o->on_stdout ? rl_ref(L, o->on_stdout) : LUA_NOREF;
  p->err_ref = o->on_stderr ? rl_ref(L, o->on_stderr) : LUA_NOREF;
}

/* core.spawn(opts) -> Process | nil, err, code */
static int rl_proc_spawn(lua_State *L)
{
  rl_spawn_opts_t o;
  rl_parse_spawn(L, &o);
  const char *keeper = rl_keeper_path();
  if (!keeper)
    return rl_push_error_what(L, UV_ENOENT, "cannot find the reload executable for the keeper");
  rl_proc_t *p = calloc(1, sizeof *p);
  if (!p)
    return luaL_error(L, "out of memory");
  p->gate_next = -1;
  p->L = rl_main_thread(L);
  p->self_ref = p->event_ref = p->out_ref = p->err_ref = LUA_NOREF;
  p->keeper_duration_ms = -1;
  p->stop_signal = o.stop_signal;
  p->grace_ms = o.grace_ms;
  snprintf(p->run_id, sizeof p->run_id, "%d.%u.%llu", (int)getpid(), ++rl_run_seq,
           (unsigned long long)(uv_hrtime() % 1000000007));

  p->master = -1;
  int master = -1, slave = -1;
  if (o.pty) {
    int err = rl_pty_pair(&master, &slave, o.cols, o.rows);
    if (err) {
      free(p);
      return rl_push_error_what(L, err, "a pseudo-terminal");
    }
  }
  uv_stdio_container_t stdio[RL_KEEPER_STDIO_MAX];
  int io_err = rl_init_handles(L, p, &o, stdio, master, slave);
  int gate[2] = {-1, -1};
  if (!io_err && o.gate && pipe2(gate, O_CLOEXEC) < 0)
    io_err = uv_translate_sys_error(errno);
  if (io_err) {
    close(slave);
    close(master);
    p->master = -1;
    p->failed = 1;
    p->open_handles--; /* the keeper's handle was never initialized */
    rl_close_all(p);
    return rl_push_error_what(L, io_err, o.pty ? "a pseudo-terminal" : "a pipe");
  }
  uv_process_options_t opts;
  memset(&opts, 0, sizeof opts);
  opts.file = keeper;
  opts.args = rl_keeper_argv(L, &o, p, keeper);
  opts.env = rl_keeper_env(L, &o);
  opts.cwd = o.cwd;
  opts.stdio = stdio;
  opts.stdio_count = RL_KEEPER_LISTEN_FD + o.nlisten;
  if (o.gate) {
    stdio[opts.stdio_count].flags = UV_INHERIT_FD;
    stdio[opts.stdio_count++].data.fd = gate[1];
  }
  int gate_in = o.after ? o.after->gate_next : -1;
  if (gate_in >= 0) {
    stdio[opts.stdio_count].flags = UV_INHERIT_FD;
    stdio[opts.stdio_count++].data.fd = gate_in;
  }
  opts.exit_cb = rl_keeper_exited;
  int err = uv_spawn(rl_loop(L), &p->keeper, &opts);
  if (slave >= 0)
    close(slave); /* the keeper's now: the master sees EIO when the tree has let go of it */
  /* The write end is the keeper's alone (its EOF must mean the keeper is gone), and the read
   * end of the gate it waits on goes with it. */
  if (gate[1] >= 0)
    close(gate[1]);
  p->gate_next = err ? -1 : gate[0];
  if (err && gate[0] >= 0)
    close(gate[0]);
  if (!err && gate_in >= 0) {
    close(gate_in);
    o.after->gate_next = -1;
  }
  if (err) {
    p->failed = 1;
    rl_close_all(p); /* frees p once libuv has let go of every handle */
    return rl_push_error_what(L, err, keeper);
  }
  p->keeper_pid = p->keeper.pid;
  p->ctl_open = 1;
  p->held = o.hold;
  p->kill_tree = o.kill_tree;
  p->has_cmd = o.shell_cmd || o.cmd_idx;
  uv_read_start((uv_stream_t *)&p->ctl, rl_alloc, rl_ctl_read);
  for (int i = 1; i < 3; i++)
    if (p->io_open[i])
      uv_read_start((uv_stream_t *)&p->io[i], rl_alloc, rl_output_read);

  rl_box_new(L, RL_PROCESS_MT, p, 0);
  rl_stat_add(RL_STAT_HANDLES, 1);
  p->self_ref = rl_ref(L, -1);
  rl_hold_callbacks(L, p, &o);
  return 1;
}

/* ---- methods --------------------------------------------------------------------------------- */

static int rl_push_pid(lua_State *L, int pid)
{
  if (pid > 0)
    lua_pushinteger(L, pid);
  else
    lua_pushnil(L);
  return 1;
}

/* p:pid() -> integer | nil (before "started", or when the command never started) */
static int rl_proc_pid(lua_State *L)
{
  return rl_push_pid(L, rl_check_process(L, 1)->pid);
}

/* p:pgid() -> integer | nil */
static int rl_proc_pgid(lua_State *L)
{
  return rl_push_pid(L, rl_check_process(L, 1)->pgid);
}

/* p:keeper_pid() -> integer */
static int rl_proc_keeper_pid(lua_State *L)
{
  return rl_push_pid(L, rl_check_process(L, 1)->keeper_pid);
}

/* p:status() -> "starting"|"running"|"main-exited"|"stopping"|"forcing"|"exited" */
static int rl_proc_status(lua_State *L)
{
  lua_pushstring(L, rl_state_names[rl_check_process(L, 1)->state]);
  return 1;
}

static int rl_active(const rl_proc_t *p)
{
  return !p->finishing && !p->finished && !p->keeper_done;
}

static void rl_arm_watchdog(rl_proc_t *p, int grace_ms)
{
  uv_timer_start(&p->watchdog, rl_watchdog_fired, (uint64_t)grace_ms + 2000, 0);
}

static void rl_stop(rl_proc_t *p, int sig, int grace_ms, int linger)
{
  if (!rl_active(p) || p->stop_ns)
    return;
  p->stop_ns = uv_hrtime();
  /* The command's group is signalled here, at once, rather than when the keeper gets to run: a
   * wake-up of another process less on a restart's path (~0.1 ms). The keeper is told, and
   * sweeps and reaps as for "term". Only while its leader is not reported exited: the pgid is
   * the leader's pid, which the kernel gives out again only once the pid space wrapped. Not
   * with kill-tree, whose keeper signals the group itself when the leader exits: the group
   * could get the signal twice (a second SIGINT is a hard stop to some programs). */
  int termed = p->state == RL_RUNNING && p->pgid > 0 && grace_ms > 0 && !p->kill_tree &&
               kill(-p->pgid, sig) == 0;
  if (termed)
    kill(-p->pgid, SIGCONT);
  p->termed = termed;
  /* Without linger (stop{ linger = true }: a next run may follow), nothing follows: "bye" goes
   * with the stop, in the same write. (Between two writes, the tree just signalled can take
   * reload's CPU until it is gone, and the keeper would then wait for the "bye".) */
  rl_msg_t stop = {termed ? RL_MSG_TERMED : RL_MSG_TERM, {sig, grace_ms}};
  char bye[16];
  size_t bye_len = 0;
  if (!linger && !p->next_queued && !p->said_bye) {
    p->said_bye = 1;
    bye_len = rl_msg_format(bye, sizeof bye, &(rl_msg_t){RL_MSG_BYE, {0, 0}});
  }
  rl_ctl_send_data(p, &stop, bye, bye_len);
  rl_arm_watchdog(p, grace_ms);
}

/* p:stop{ signal = "INT", grace_ms = 1000 } -> true   (the result comes as the "exit" event) */
static int rl_proc_stop(lua_State *L)
{
  rl_proc_t *p = rl_check_process(L, 1);
  int sig = p->stop_signal, grace = p->grace_ms, linger = 0;
  if (!lua_isnoneornil(L, 2)) {
    static const char *const keys[] = {"signal", "grace_ms", "linger", NULL};
    luaL_checktype(L, 2, LUA_TTABLE);
    rl_opt_keys(L, 2, keys);
    if (lua_getfield(L, 2, "signal") != LUA_TNIL)
      sig = rl_check_signal_opt(L, "signal");
    if (lua_getfield(L, 2, "grace_ms") != LUA_TNIL)
      grace = rl_check_grace(L, "grace_ms");
    if (rl_opt(L, 2, "linger", LUA_TBOOLEAN))
      linger = lua_toboolean(L, -1);
  }
  rl_stop(p, sig, grace, linger);
  lua_pushboolean(L, 1);
  return 1;
}

/* Adds the strings of the list at idx, each with its NUL, to the buffer. */
static void rl_add_strings(luaL_Buffer *b, lua_State *L, int idx)
{
  lua_Integer n = luaL_len(L, idx);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, idx, i);
    luaL_addvalue(b); /* the string with its length: the NUL comes next */
    luaL_addchar(b, '\0');
  }
}

/* The options cmd (a string for /bin/sh -c, or argv) and env (a list) of the table at idx, as
 * stack indices (0: absent). */
static void rl_spec_opts(lua_State *L, int idx, int *cmd, int *env)
{
  int t = lua_getfield(L, idx, "cmd");
  if (t == LUA_TTABLE)
    rl_opt_strings(L, (*cmd = lua_gettop(L)), "cmd", 1);
  else if (t == LUA_TSTRING)
    *cmd = lua_gettop(L);
  else if (t != LUA_TNIL)
    luaL_error(L, "option 'cmd': string or table expected, got %s", luaL_typename(L, -1));
  if ((*env = rl_opt(L, idx, "env", LUA_TTABLE)))
    rl_opt_strings(L, *env, "env", 0);
}

/* Pushes a command as the keeper reads it after "go N", "prime N" or "next N": argv NUL...,
 * an empty string, env NUL... (reload's own without env), an empty string. */
static const char *rl_push_spec(lua_State *L, int cmd, int env, size_t *len)
{
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  if (lua_type(L, cmd) == LUA_TSTRING) {
    luaL_addstring(&b, "/bin/sh");
    luaL_addchar(&b, '\0');
    luaL_addstring(&b, "-c");
    luaL_addchar(&b, '\0');
    lua_pushvalue(L, cmd);
    luaL_addvalue(&b);
    luaL_addchar(&b, '\0');
  } else {
    rl_add_strings(&b, L, cmd);
  }
  luaL_addchar(&b, '\0');
  if (env) {
    rl_add_strings(&b, L, env);
  } else {
    for (char **e = environ; *e; e++) {
      luaL_addstring(&b, *e);
      luaL_addchar(&b, '\0');
    }
  }
  luaL_addchar(&b, '\0');
  luaL_pushresult(&b);
  return lua_tolstring(L, -1, len);
}

/* p:go() / p:go{ cmd = ..., env = {...}, prime = false } -> true
 * Starts the command of a run spawned with hold = true, once; a stop before go() cancels the
 * run. With cmd (string: /bin/sh -c; table: argv) the command and environment (env: "K=V"
 * list; nil: reload's own) are given now, so a keeper can be spawned before they are known.
 * With prime = true the command waits in the keeper until the gate of the keeper given as
 * spawn{ after = ... } opens (its tree is gone), or until a later p:go() releases it. */
static int rl_proc_go(lua_State *L)
{
  rl_proc_t *p = rl_check_process(L, 1);
  if (!p->held)
    return luaL_error(L, "go: the run was not spawned with hold = true");
  if (p->primed && lua_isnoneornil(L, 2)) { /* the release */
    p->primed = 0;
    if (rl_active(p) && !p->stop_ns)
      rl_ctl_send(p, RL_MSG_GO, 0, 0);
    lua_pushboolean(L, 1);
    return 1;
  }
  int cmd = 0, env = 0, prime = 0;
  if (!lua_isnoneornil(L, 2)) {
    static const char *const keys[] = {"cmd", "env", "prime", NULL};
    luaL_checktype(L, 2, LUA_TTABLE);
    rl_opt_keys(L, 2, keys);
    rl_spec_opts(L, 2, &cmd, &env);
    if (rl_opt(L, 2, "prime", LUA_TBOOLEAN))
      prime = lua_toboolean(L, -1);
    if (prime && !cmd)
      return luaL_error(L, "go: prime = true needs cmd");
  }
  if (!cmd && !p->has_cmd)
    return luaL_error(L, "go: the run was spawned without cmd: go{ cmd = ... } needs one");
  if (rl_active(p) && !p->stop_ns && !p->went) {
    p->went = 1;
    if (!cmd) {
      rl_ctl_send(p, RL_MSG_GO, 0, 0);
    } else {
      size_t len;
      const char *data = rl_push_spec(L, cmd, env, &len);
      rl_msg_t msg = {prime ? RL_MSG_PRIME : RL_MSG_GO_DATA, {(long long)len, 0}};
      rl_ctl_send_data(p, &msg, data, len);
      p->primed = prime;
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* p:next{ cmd = ..., env = {...} } -> true | nil, why
 * Queues the command of the run after this one in the same keeper, which starts it itself once
 * this run's tree is empty: "tree-empty" of this run, then "started" of the next, with no other
 * process to wake in between (keeper_proto.h). Only while this run's keeper may still run one:
 * not once it said its tree was empty without one queued, nor after it gave up on survivors.
 * The events of both runs come through this handle; "dropped" says the next one will not run. */
static int rl_proc_next(lua_State *L)
{
  rl_proc_t *p = rl_check_process(L, 1);
  static const char *const keys[] = {"cmd", "env", NULL};
  luaL_checktype(L, 2, LUA_TTABLE);
  rl_opt_keys(L, 2, keys);
  int cmd = 0, env = 0;
  rl_spec_opts(L, 2, &cmd, &env);
  if (!cmd)
    return luaL_error(L, "next: needs cmd");
  const char *why = p->tree_empty || p->gave_up || p->said_bye ? "the keeper has finished"
                    : !rl_active(p) || p->pid <= 0             ? "the keeper runs nothing"
                    : p->next_queued                           ? "a next run is queued already"
                                                               : NULL;
  if (why) {
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
  }
  size_t len;
  const char *data = rl_push_spec(L, cmd, env, &len);
  rl_msg_t msg = {RL_MSG_NEXT, {(long long)len, 0}};
  rl_ctl_send_data(p, &msg, data, len);
  p->next_queued = 1;
  lua_pushboolean(L, 1);
  return 1;
}

/* p:drop_next() -> true: the queued next run is not wanted; "dropped" follows, or, when the
 * keeper had started it already, that run is stopped and reported as usual. */
static int rl_proc_drop_next(lua_State *L)
{
  rl_proc_t *p = rl_check_process(L, 1);
  if (p->next_queued && rl_active(p)) {
    p->next_queued = 0;
    rl_ctl_send(p, RL_MSG_DROP_NEXT, 0, 0);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* p:kill() -> true   (straight to the SIGKILL sweeps) */
static int rl_proc_kill(lua_State *L)
{
  rl_proc_t *p = rl_check_process(L, 1);
  if (rl_active(p)) {
    if (!p->stop_ns)
      p->stop_ns = uv_hrtime();
    rl_ctl_send(p, RL_MSG_KILL, 0, 0);
    rl_arm_watchdog(p, 0);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* p:signal(sig, scope = "group") -> true   scope: "main" | "group" | "tree"; no teardown */
static int rl_proc_signal(lua_State *L)
{
  static const char *const scopes[] = {
      [RL_SCOPE_MAIN] = "main", [RL_SCOPE_GROUP] = "group", [RL_SCOPE_TREE] = "tree", NULL};
  rl_proc_t *p = rl_check_process(L, 1);
  int sig = rl_check_signal(L, 2);
  int scope = luaL_checkoption(L, 3, "group", scopes);
  if (rl_active(p))
    rl_ctl_send(p, RL_MSG_SIGNAL, sig, scope);
  lua_pushboolean(L, 1);
  return 1;
}

typedef struct {
  rl_pstat_t *list;
  size_t n, cap;
} rl_ps_t;

static int rl_ps_add(int pid, void *ud)
{
  rl_ps_t *ps = ud;
  if (ps->n == ps->cap) {
    rl_pstat_t *bigger = realloc(ps->list, 2 * ps->cap * sizeof *bigger);
    if (!bigger)
      return 1;
    ps->list = bigger;
    ps->cap *= 2;
  }
  rl_pstat_t *st = &ps->list[ps->n];
  if (rl_proc_stat(pid, st) == 0 && st->state != 'Z' && st->state != 'X')
    ps->n++;
  return 0;
}

/* Every live process on the system, from one /proc scan (heap: this is not a teardown path). */
static rl_pstat_t *rl_ps_all(size_t *count)
{
  char dents[16384];
  rl_ps_t ps = {malloc(256 * sizeof(rl_pstat_t)), 0, 256};
  if (ps.list)
    rl_proc_each_pid(dents, sizeof dents, rl_ps_add, &ps);
  *count = ps.n;
  return ps.list;
}

static void rl_push_ps(lua_State *L, const rl_pstat_t *ps)
{
  lua_createtable(L, 0, 4);
  rl_set_int(L, "pid", ps->pid);
  rl_set_int(L, "ppid", ps->ppid);
  rl_set_int(L, "pgid", ps->pgid);
  lua_pushstring(L, ps->comm);
  lua_setfield(L, -2, "comm");
}

/* p:descendants() -> { {pid=, ppid=, pgid=, comm=}, ... } live processes under the keeper,
 * parents before children. Every one is reparented to the keeper at worst, so this is the
 * whole tree. */
static int rl_proc_descendants(lua_State *L)
{
  rl_proc_t *p = rl_check_process(L, 1);
  lua_newtable(L);
  if (!rl_active(p))
    return 1;
  size_t n = 0;
  rl_pstat_t *all = rl_ps_all(&n);
  if (!all)
    return 1;
  char *in_tree = calloc(n ? n : 1, 1);
  /* Walk levels: a process whose parent is the keeper or already in the tree joins it. */
  lua_Integer out = 0;
  for (int grew = 1; grew && in_tree;) {
    grew = 0;
    for (size_t i = 0; i < n; i++) {
      if (in_tree[i])
        continue;
      int parent_in = all[i].ppid == p->keeper_pid;
      for (size_t j = 0; j < n && !parent_in; j++)
        parent_in = in_tree[j] && all[j].pid == all[i].ppid;
      if (parent_in) {
        in_tree[i] = 1;
        grew = 1;
        rl_push_ps(L, &all[i]);
        lua_rawseti(L, -2, ++out);
      }
    }
  }
  free(in_tree);
  free(all);
  return 1;
}

static uv_pipe_t *rl_stdin_pipe(lua_State *L, rl_proc_t *p)
{
  if (p->io_mode[0] != RL_IO_PIPE)
    luaL_error(L, "stdin is not a pipe (spawn with stdin = \"pipe\")");
  return p->io_open[0] ? &p->io[0] : NULL;
}

typedef struct {
  uv_write_t req;
  char data[];
} rl_data_write_t;

/* p:write(data) -> true | nil, err, code */
static int rl_proc_write(lua_State *L)
{
  rl_proc_t *p = rl_check_process(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  uv_pipe_t *pipe = rl_stdin_pipe(L, p);
  if (!pipe)
    return rl_push_error_what(L, UV_EPIPE, "stdin is closed");
  rl_data_write_t *w = malloc(sizeof *w + len);
  if (!w)
    return luaL_error(L, "out of memory");
  memcpy(w->data, data, len);
  w->req.data = w;
  uv_buf_t buf = uv_buf_init(w->data, (unsigned)len);
  int err = uv_write(&w->req, (uv_stream_t *)pipe, &buf, 1, rl_ctl_written);
  if (err) {
    free(w);
    return rl_push_error(L, err);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* p:close_stdin() -> true */
static int rl_proc_close_stdin(lua_State *L)
{
  rl_proc_t *p = rl_check_process(L, 1);
  if (rl_stdin_pipe(L, p)) {
    p->io_open[0] = 0;
    rl_close_handle(p, (uv_handle_t *)&p->io[0]);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* p:close() -- stops a running tree (default signal and grace); idempotent. The handle is
 * released after the "exit" event. */
static int rl_proc_close(lua_State *L)
{
  rl_proc_t *p = rl_check_process(L, 1);
  if (rl_active(p))
    rl_stop(p, p->stop_signal, p->grace_ms, 0);
  return 0;
}

/* __gc: after "exit" the C state goes with the handle. A run still active here means the Lua
 * state itself is closing (the registry held it). Our handles are closed now, with our own
 * callback: stock luv's loop __gc then closes every handle still open with a callback that
 * takes handle->data for its own structure. Closing fd 3 is EOF for the keeper, which tears
 * the tree down as it does when reload dies; no callback touches Lua again. */
static int rl_proc_gc(lua_State *L)
{
  void **box = rl_box_at(L, 1, RL_PROCESS_MT);
  rl_proc_t *p = *box;
  *box = NULL;
  if (!p)
    return 0;
  if (p->finished) {
    free(p);
    return 0;
  }
  p->detached = 1;
  if (!p->finishing)
    rl_close_all(p);
  return 0;
}

static int rl_proc_tostring(lua_State *L)
{
  rl_proc_t *p = rl_check_process(L, 1);
  lua_pushfstring(L, "reload.Process (%s, pid %d)", rl_state_names[p->state], p->pid);
  return 1;
}

/* p:resize(cols, rows) -> true | nil, err, code
 * The size of the run's pty (spawned with pty); its foreground group gets SIGWINCH. */
static int rl_proc_resize(lua_State *L)
{
  rl_proc_t *p = rl_check_process(L, 1);
  lua_Integer cols = luaL_checkinteger(L, 2), rows = luaL_checkinteger(L, 3);
  luaL_argcheck(L, cols >= 1 && cols <= 65535, 2, "from 1 to 65535 expected");
  luaL_argcheck(L, rows >= 1 && rows <= 65535, 3, "from 1 to 65535 expected");
  if (p->master < 0)
    return rl_push_error_what(L, UV_EBADF, "the run has no pty open");
  int err = rl_pty_resize(p->master, (int)cols, (int)rows);
  if (err)
    return rl_push_error_what(L, err, "TIOCSWINSZ");
  lua_pushboolean(L, 1);
  return 1;
}

/* clang-format off */
static const luaL_Reg rl_proc_methods[] = {
  {"pid",          rl_proc_pid},
  {"pgid",         rl_proc_pgid},
  {"keeper_pid",   rl_proc_keeper_pid},
  {"status",       rl_proc_status},
  {"stop",         rl_proc_stop},
  {"go",           rl_proc_go},
  {"next",         rl_proc_next},
  {"drop_next",    rl_proc_drop_next},
  {"kill",         rl_proc_kill},
  {"signal",       rl_proc_signal},
  {"descendants",  rl_proc_descendants},
  {"write",        rl_proc_write},
  {"close_stdin",  rl_proc_close_stdin},
  {"resize",       rl_proc_resize},
  {"close",        rl_proc_close},
  {NULL, NULL},
};
/* clang-format on */

/* clang-format off */
static const luaL_Reg rl_proc_metamethods[] = {
  {"__gc",        rl_proc_gc},
  {"__close",     rl_proc_close},
  {"__tostring",  rl_proc_tostring},
  {NULL, NULL},
};
/* clang-format on */

/* clang-format off */
static const luaL_Reg rl_proc_functions[] = {
  {"spawn",  rl_proc_spawn},
  {NULL, NULL},
};
/* clang-format on */

/* A keeper can exit between our decision to write to its control socket and the write: the
 * write then raises SIGPIPE, whose default action killed reload in the middle of a quit (seen
 * in CI: exit status 141). The EPIPE error is handled where the write completes. A host that
 * already chose a disposition for SIGPIPE keeps it; commands get SIG_DFL back (libuv and the
 * keeper reset every disposition before exec). */
static void rl_proc_ignore_sigpipe(void)
{
  struct sigaction old;
  if (sigaction(SIGPIPE, NULL, &old) == 0 && old.sa_handler == SIG_DFL)
    signal(SIGPIPE, SIG_IGN);
}

void rl_proc_open(lua_State *L)
{
  rl_proc_ignore_sigpipe();
  rl_class(L, RL_PROCESS_MT, rl_proc_metamethods, rl_proc_methods);
  luaL_setfuncs(L, rl_proc_functions, 0);
  rl_push_signals(L);
  lua_setfield(L, -2, "signals");
}
