/*
 * procfs.h: reading /proc, shared by the keeper (its sweeps find a tree's processes) and
 * reload (p:descendants(), the fallback sweep when a keeper died). Plain C and libc, and no
 * allocation: the caller gives every buffer, because the keeper's teardown must work when memory
 * is short (and the static keeper links this file alone).
 */
#ifndef RELOAD_PROCFS_H
#define RELOAD_PROCFS_H

#include <stddef.h>
#include <sys/types.h>

/* Reads the file at path into buf (at most size - 1 bytes, then a NUL). Returns the length, or
 * -1 when it cannot be opened. */
ssize_t rl_proc_read(const char *path, char *buf, size_t size);

/* The number in the file at path (such as /proc/sys/kernel/pid_max), or -1. */
long rl_proc_read_long(const char *path);

/* The last pid the kernel gave out in this pid namespace (/proc/sys/kernel/ns_last_pid), or -1. */
long rl_proc_last_pid(void);

enum { RL_PIDS_UNKNOWN = -1, RL_PIDS_TOO_MANY = -2 };

/* A scan of /proc misses a process made after the scan passed its pid (a fork-and-exit loop
 * always has one). Pids are given out in order, wrapping at pid_max: the processes made since
 * the last pid was `*since` have the pids after it. Calls fn(pid, ud) for each pid given out
 * since *since (a process or not, or not any more; stops early when fn returns non-zero), and
 * moves *since to the last. Returns how many were given out (0: none, the scan is complete),
 * RL_PIDS_UNKNOWN when it cannot be told (no ns_last_pid, *since < 0), RL_PIDS_TOO_MANY when
 * more than max (then scan again). */
int rl_proc_each_new_pid(long *since, long max, int (*fn)(int pid, void *ud), void *ud);

/* True when name is all digits (a pid or tid directory). */
int rl_proc_is_number(const char *name);

/* The fields of /proc/PID/stat that reload uses. */
typedef struct {
  int pid, ppid, pgid;
  char state; /* 'R', 'S', ..., 'Z' (a zombie), 'X' */
  char comm[32];
} rl_pstat_t;

/* Reads /proc/PID/stat into out; 0, or -1 when the process is gone (or the line is not one). */
int rl_proc_stat(int pid, rl_pstat_t *out);

/* The effective user ID of pid (the "Uid:" line of /proc/PID/status, as ps shows it), or -1 when
 * the process is gone. */
int rl_proc_euid(int pid);

/* Calls fn(pid, ud) for each process in /proc, reading the directory with getdents64 into dents
 * (size bytes); stops early when fn returns non-zero. Returns -1 when /proc cannot be read. */
int rl_proc_each_pid(char *dents, size_t size, int (*fn)(int pid, void *ud), void *ud);

/* The children of pid through every thread's children file (a child forked by a thread other
 * than the main one, as Go's runtime does, is listed under that thread's tid only), at most
 * max into out. dents and text are scratch buffers. Returns how many. */
int rl_proc_children(int pid, pid_t *out, int max, char *dents, size_t dsize, char *text,
                     size_t tsize);

/* True when /proc/PID/environ holds exactly the entry `entry` ("K=V", not a longer value it
 * prefixes). buf: scratch space for the environment (size bytes). */
int rl_proc_environ_has(int pid, const char *entry, char *buf, size_t size);

#endif
