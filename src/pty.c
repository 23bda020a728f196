/*
 * pty.c: the terminal side of running commands. A pseudo-terminal per run, so that programs
 * line-buffer and keep their colours as they do on a terminal (their output reaches reload on
 * the master, which proc.c reads like a pipe); and, for the one command that reads reload's
 * terminal, the terminal's foreground process group given back to reload.
 *
 * Boundary: mechanism. Whether a service gets a pty, its size, and when the foreground is taken
 * back are the engine's choices. The command's side (a new session with the slave as its
 * controlling terminal, or tcsetpgrp to its own group) is done by the keeper's child.
 *
 * Lua: core.tty_foreground, core.tty_reclaim.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "core.h"
#include "pty.h"

int rl_pty_resize(int master, int cols, int rows)
{
  struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
  return ioctl(master, TIOCSWINSZ, &ws) < 0 ? -errno : 0;
}

int rl_pty_pair(int *master, int *slave, int cols, int rows)
{
  /* O_NOCTTY on both: reload may have no controlling terminal (a service, CI), and opening a
   * terminal without it would make the pty reload's own. */
  int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0)
    return -errno;
  char name[128];
  int s = -1;
  if (grantpt(m) == 0 && unlockpt(m) == 0 && ptsname_r(m, name, sizeof name) == 0)
    s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
  struct termios t;
  if (s >= 0 && tcgetattr(s, &t) == 0) {
    t.c_oflag &= (tcflag_t)~ONLCR; /* a program's "\n" stays "\n", not "\r\n" */
    if (tcsetattr(s, TCSANOW, &t) == 0 && rl_pty_resize(m, cols, rows) == 0) {
      *master = m;
      *slave = s;
      return 0;
    }
  }
  int err = errno ? -errno : -EIO;
  if (s >= 0)
    close(s);
  close(m);
  return err;
}

/* core.tty_foreground() -> boolean
 * True when stdin is a terminal whose foreground process group is reload's: only then may a
 * command be given the terminal (a reload started with `&` must not take it from the shell). */
static int rl_tty_foreground(lua_State *L)
{
  lua_pushboolean(L, isatty(0) && tcgetpgrp(0) == getpgrp());
  return 1;
}

/* core.tty_reclaim() -> true | nil, err, code
 * Makes reload's process group the foreground of the terminal on stdin again, after a command
 * that had it is gone (or when reload exits). SIGTTOU is blocked meanwhile: tcsetpgrp from a
 * background group would stop reload otherwise (tini's comment on the same call). */
static int rl_tty_reclaim(lua_State *L)
{
  if (!isatty(0) || tcgetpgrp(0) == getpgrp()) {
    lua_pushboolean(L, 1);
    return 1;
  }
  sigset_t ttou, old;
  sigemptyset(&ttou);
  sigaddset(&ttou, SIGTTOU);
  sigprocmask(SIG_BLOCK, &ttou, &old);
  int err = tcsetpgrp(0, getpgrp()) < 0 ? -errno : 0;
  sigprocmask(SIG_SETMASK, &old, NULL);
  if (err)
    return rl_push_error_what(L, err, "tcsetpgrp");
  lua_pushboolean(L, 1);
  return 1;
}

/* clang-format off */
static const luaL_Reg rl_pty_functions[] = {
  {"tty_foreground", rl_tty_foreground},
  {"tty_reclaim",    rl_tty_reclaim},
  {NULL, NULL},
};
/* clang-format on */

void rl_pty_open(lua_State *L)
{
  luaL_setfuncs(L, rl_pty_functions, 0);
}
