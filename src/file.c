/*
 * file.c: the one file operation luv cannot express: creating a file that must not exist yet,
 * not even as a symbolic link (luv's constants have no O_NOFOLLOW). Used for the files reload
 * hands to commands (RELOAD_CHANGED_FILE); where they live is the engine's business.
 *
 * Lua: core.write_private.
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "core.h"

/* core.write_private(path, data) -> true | nil, err, code
 * Creates path with mode 0600, O_EXCL|O_NOFOLLOW (an existing file or link is an error, never
 * followed nor truncated), and writes data to it. On a failed write the file is removed. */
static int rl_file_write_private(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0)
    return rl_push_error_what(L, -errno, path);
  size_t off = 0;
  int err = 0;
  while (off < len && !err) {
    ssize_t n = write(fd, data + off, len - off);
    if (n < 0 && errno != EINTR)
      err = errno;
    else if (n > 0)
      off += (size_t)n;
  }
  if (close(fd) < 0 && !err && errno != EINTR)
    err = errno;
  if (err) {
    unlink(path);
    return rl_push_error_what(L, -err, path);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* clang-format off */
static const luaL_Reg rl_file_functions[] = {
  {"write_private", rl_file_write_private},
  {NULL, NULL},
};
/* clang-format on */

void rl_file_open(lua_State *L)
{
  luaL_setfuncs(L, rl_file_functions, 0);
}
