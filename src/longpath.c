/*
 * longpath.c: paths of any length (see longpath.h). Boundary: file descriptors and system calls
 * only; callers keep their own notion of paths.
 */
#include "longpath.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

static int rl_close_keep_errno(int fd, int result)
{
  int err = errno;
  close(fd);
  errno = err;
  return result;
}

/* Opens path[0..len) relative to dirfd: at once when it is short enough, else its longest
 * prefix that is (up to a '/') as a directory, then the rest from there. */
static int rl_open_part(int dirfd, const char *path, size_t len, int flags)
{
  if (len < PATH_MAX && path[len] == '\0')
    return openat(dirfd, path, flags | O_CLOEXEC);
  char part[PATH_MAX];
  if (len < PATH_MAX) {
    memcpy(part, path, len);
    part[len] = '\0';
    return openat(dirfd, part, flags | O_CLOEXEC);
  }
  size_t cut = PATH_MAX - 1;
  while (cut > 0 && path[cut] != '/')
    cut--;
  if (cut == 0) { /* one component of 4 KiB: no file system allows that */
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(part, path, cut);
  part[cut] = '\0';
  int fd = openat(dirfd, part, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  return rl_close_keep_errno(fd, rl_open_part(fd, path + cut + 1, len - cut - 1, flags));
}

int rl_open_long(const char *path, int flags)
{
  return rl_open_part(AT_FDCWD, path, strlen(path), flags);
}

int rl_lstat_long(const char *path, struct stat *st)
{
  size_t len = strlen(path);
  const char *slash = strrchr(path, '/');
  if (len < PATH_MAX || !slash)
    return lstat(path, st);
  int fd = rl_open_part(AT_FDCWD, slash == path ? "/" : path,
                        slash == path ? 1 : (size_t)(slash - path), O_PATH | O_DIRECTORY);
  if (fd < 0)
    return -1;
  return rl_close_keep_errno(fd, fstatat(fd, slash + 1, st, AT_SYMLINK_NOFOLLOW));
}
