/*
 * pty.h: pseudo-terminals for proc.c (a terminal per run, core.spawn{pty = ...}) and the
 * terminal's foreground for a command that reads it (core.tty_foreground, core.tty_reclaim).
 */
#ifndef RELOAD_PTY_H
#define RELOAD_PTY_H

/* Opens a pty pair, both ends close-on-exec and neither a controlling terminal of reload; the
 * slave's output post-processing keeps "\n" as it is (no ONLCR: logs carry plain newlines), its
 * size is cols x rows. Returns 0, or -errno with nothing left open. */
int rl_pty_pair(int *master, int *slave, int cols, int rows);

/* Sets the terminal size of the pty whose master is fd (the kernel sends SIGWINCH to its
 * foreground group). Returns 0 or -errno. */
int rl_pty_resize(int master, int cols, int rows);

#endif
