/*
 * procfs.c: the /proc reader of procfs.h. Plain C, libc, no allocation.
 */
#include "procfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

ssize_t rl_proc_read(const char *path, char *buf, size_t size)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  size_t len = 0;
  while (len < size - 1) {
    ssize_t r = read(fd, buf + len, size - 1 - len);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    len += (size_t)r;
  }
  close(fd);
  buf[len] = '\0';
  return (ssize_t)len;
}

long rl_proc_read_long(const char *path)
{
  char buf[32], *end;
  if (rl_proc_read(path, buf, sizeof buf) <= 0)
    return -1;
  long v = strtol(buf, &end, 10);
  return end == buf ? -1 : v;
}

long rl_proc_last_pid(void)
{
  return rl_proc_read_long("/proc/sys/kernel/ns_last_pid");
}

int rl_proc_each_new_pid(long *since, long max, int (*fn)(int pid, void *ud), void *ud)
{
  static long pid_max;
  long last = rl_proc_last_pid();
  if (last >= pid_max) /* first call, or pid_max was raised */
    pid_max = rl_proc_read_long("/proc/sys/kernel/pid_max");
  if (*since < 0 || last < 0 || last >= pid_max)
    return RL_PIDS_UNKNOWN;
  long n = (last - *since + pid_max) % pid_max;
  if (n > max)
    return RL_PIDS_TOO_MANY;
  for (long pid = *since; pid != last;) {
    pid = pid + 1 < pid_max ? pid + 1 : 1;
    if (fn((int)pid, ud))
      break;
  }
  *since = last;
  return (int)n;
}

int rl_proc_is_number(const char *name)
{
  if (!*name)
    return 0;
  for (; *name; name++)
    if (*name < '0' || *name > '9')
      return 0;
  return 1;
}

/* The next integer of s (after spaces or tabs) into *v; the rest of s, or NULL. */
static const char *rl_next_int(const char *s, int *v)
{
  while (*s == ' ' || *s == '\t')
    s++;
  char *end;
  long x = strtol(s, &end, 10);
  if (end == s)
    return NULL;
  *v = (int)x;
  return end;
}

int rl_proc_stat(int pid, rl_pstat_t *out)
{
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  if (rl_proc_read(path, buf, sizeof buf) <= 0)
    return -1;
  /* "PID (COMM) STATE PPID PGID ...": comm may hold spaces and parentheses, so the fields
   * start after the last ')'. */
  char *open_paren = strchr(buf, '('), *close_paren = strrchr(buf, ')');
  if (!open_paren || !close_paren || close_paren < open_paren || close_paren[1] != ' ' ||
      !close_paren[2])
    return -1;
  out->pid = pid;
  out->state = close_paren[2];
  const char *s = close_paren + 3;
  if (!(s = rl_next_int(s, &out->ppid)) || !rl_next_int(s, &out->pgid))
    return -1;
  snprintf(out->comm, sizeof out->comm, "%.*s", (int)(close_paren - open_paren - 1),
           open_paren + 1);
  return 0;
}

int rl_proc_euid(int pid)
{
  char path[64], buf[2048];
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  if (rl_proc_read(path, buf, sizeof buf) <= 0)
    return -1;
  /* "Uid:\tREAL\tEFFECTIVE\tSAVED\tFS" */
  const char *line = strstr(buf, "\nUid:");
  int real, eff;
  if (!line || !(line = rl_next_int(line + 5, &real)) || !rl_next_int(line, &eff))
    return -1;
  return eff;
}

int rl_proc_each_pid(char *dents, size_t size, int (*fn)(int pid, void *ud), void *ud)
{
  int dir = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0)
    return -1;
  ssize_t got;
  int stop = 0;
  while (!stop && (got = getdents64(dir, dents, size)) > 0) {
    for (ssize_t off = 0; off < got && !stop;) {
      struct dirent64 *d = (struct dirent64 *)(void *)(dents + off);
      off += d->d_reclen;
      if (rl_proc_is_number(d->d_name))
        stop = fn(atoi(d->d_name), ud);
    }
  }
  close(dir);
  return 0;
}

/* Appends the pids of a children file's text ("12 34 ") to out[n..max). */
static int rl_parse_pids(const char *s, pid_t *out, int n, int max)
{
  int v;
  while (n < max && (s = rl_next_int(s, &v)))
    out[n++] = (pid_t)v;
  return n;
}

int rl_proc_children(int pid, pid_t *out, int max, char *dents, size_t dsize, char *text,
                     size_t tsize)
{
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task", pid);
  int dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0)
    return 0;
  int n = 0;
  ssize_t got;
  while ((got = getdents64(dir, dents, dsize)) > 0) {
    for (ssize_t off = 0; off < got;) {
      struct dirent64 *d = (struct dirent64 *)(void *)(dents + off);
      off += d->d_reclen;
      if (!rl_proc_is_number(d->d_name))
        continue;
      char file[320];
      snprintf(file, sizeof file, "/proc/%d/task/%s/children", pid, d->d_name);
      if (rl_proc_read(file, text, tsize) > 0)
        n = rl_parse_pids(text, out, n, max);
    }
  }
  close(dir);
  return n;
}

int rl_proc_environ_has(int pid, const char *entry, char *buf, size_t size)
{
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/environ", pid);
  ssize_t n = rl_proc_read(path, buf, size);
  size_t elen = strlen(entry);
  for (ssize_t off = 0; off < n; off += (ssize_t)strlen(buf + off) + 1)
    if (strncmp(buf + off, entry, elen) == 0 && buf[off + (ssize_t)elen] == '\0')
      return 1;
  return 0;
}
