/*
 * watchdog.c: a deadline for each test of the busted process (spec/helpers.lua arms it before
 * every test and disarms it after). Test support only: never linked into reload.
 *
 * A test that runs past its budget must become a failure with a traceback, and the suite must go
 * on. At the deadline a SIGALRM handler sets a flag and a Lua hook, as lua.c does for Ctrl-C (a
 * signal handler cannot touch the Lua state; the hook runs at the next Lua instruction, where
 * raising is safe). spec/helpers.lua checks the flag after every loop turn and raises there; the
 * hook calls the Lua function given to arm(), which raises when no loop turn is under way (a test
 * spinning in Lua). A test blocked in a C call that runs no Lua at all (a pclose(), a read from a
 * child that never writes) gets a second deadline: the handler SIGKILLs this process's children,
 * which ends such waits, and the hook fires at the next instruction.
 *
 *   watchdog.arm(ms, grace_ms, fn)  fn() runs from the hook at the deadline (it may raise)
 *   watchdog.disarm()
 *   watchdog.expired() -> boolean
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

int luaopen_watchdog(lua_State *L);

static lua_State *wd_L;
static volatile sig_atomic_t wd_expired;
static volatile sig_atomic_t wd_stage;
static long wd_grace_ms;
static const char wd_key = 'w';

static void wd_set_timer(long ms)
{
  struct itimerval it;
  memset(&it, 0, sizeof it);
  it.it_value.tv_sec = ms / 1000;
  it.it_value.tv_usec = (ms % 1000) * 1000;
  setitimer(ITIMER_REAL, &it, NULL);
}

static void wd_hook(lua_State *L, lua_Debug *ar)
{
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &wd_key);
  if (lua_isfunction(L, -1))
    lua_call(L, 0, 0);
  else
    lua_pop(L, 1);
}

/* Async-signal-safe (plain syscalls): reads the main thread's children from /proc and SIGKILLs
 * each. */
static void wd_kill_children(void)
{
  char path[64] = "/proc/self/task/";
  char digits[24];
  int n = 0;
  for (long pid = getpid(); pid > 0; pid /= 10)
    digits[n++] = (char)('0' + pid % 10);
  size_t at = strlen(path);
  while (n > 0)
    path[at++] = digits[--n];
  memcpy(path + at, "/children", sizeof "/children");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  char buf[4096];
  ssize_t len = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (len <= 0)
    return;
  long pid = 0;
  for (ssize_t i = 0; i <= len; i++) {
    if (i < len && buf[i] >= '0' && buf[i] <= '9') {
      pid = pid * 10 + (buf[i] - '0');
    } else if (pid > 0) {
      /* A child leading its own group (spec/helpers.lua starts them so) goes with its group:
       * a grandchild holding the pipe that the test reads would keep the read blocked. */
      if (getpgid((pid_t)pid) == (pid_t)pid)
        kill((pid_t)-pid, SIGKILL);
      kill((pid_t)pid, SIGKILL);
      pid = 0;
    }
  }
}

static void wd_on_alarm(int sig)
{
  (void)sig;
  int saved = errno;
  if (wd_stage == 0) {
    wd_expired = 1;
    wd_stage = 1;
    wd_set_timer(wd_grace_ms);
  } else {
    static const char msg[] =
      "\nwatchdog: the test is still blocked outside Lua; killing this process's children\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    wd_kill_children();
  }
  if (wd_L)
    lua_sethook(wd_L, wd_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
  errno = saved;
}

/* watchdog.arm(ms, grace_ms, fn) */
static int wd_arm(lua_State *L)
{
  lua_Integer ms = luaL_checkinteger(L, 1);
  lua_Integer grace = luaL_checkinteger(L, 2);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  luaL_argcheck(L, ms > 0, 1, "must be > 0");
  luaL_argcheck(L, grace > 0, 2, "must be > 0");
  lua_pushvalue(L, 3);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &wd_key);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  wd_L = lua_tothread(L, -1);
  lua_pop(L, 1);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = wd_on_alarm;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGALRM, &sa, NULL);
  wd_expired = 0;
  wd_stage = 0;
  wd_grace_ms = (long)grace;
  wd_set_timer((long)ms);
  return 0;
}

/* watchdog.disarm() */
static int wd_disarm(lua_State *L)
{
  wd_set_timer(0);
  wd_expired = 0;
  wd_stage = 0;
  if (wd_L)
    lua_sethook(wd_L, NULL, 0, 0);
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &wd_key);
  return 0;
}

/* watchdog.expired() -> boolean */
static int wd_is_expired(lua_State *L)
{
  lua_pushboolean(L, wd_expired);
  return 1;
}

static const luaL_Reg wd_functions[] = {
  {"arm",     wd_arm},
  {"disarm",  wd_disarm},
  {"expired", wd_is_expired},
  {NULL, NULL},
};

int luaopen_watchdog(lua_State *L)
{
  luaL_newlib(L, wd_functions);
  return 1;
}
