/*
 * socket.c: listening sockets that reload owns for a whole session and hands to each generation
 * of a service (the systemd socket-activation protocol: LISTEN_FDS; the keeper puts them at fds
 * 3, 4, ... of the command). Why not luv: uv_listen() watches the socket on reload's own loop
 * and accepts a connection itself as soon as one arrives; these sockets must only be bound and
 * listening, every connection left in the kernel's backlog for the command to accept.
 *
 * Boundary: socket/bind/listen and the fd; which service gets which socket is the engine's.
 * Lua: core.listen, Socket:fd/port/host/close.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core.h"

#define RL_SOCKET_MT "reload.Socket"

typedef struct {
  int fd;
  int port;
  char host[64];
} rl_socket_t;

static rl_socket_t *rl_check_socket(lua_State *L, int idx)
{
  return rl_box_check(L, idx, RL_SOCKET_MT, "closed socket");
}

/* socket + SO_REUSEADDR + bind + listen on one address. Returns the fd, or -errno.
 * CLOEXEC: the socket reaches a command only through the keeper, which puts it at its place
 * on purpose; a build step or a probe must never inherit it (it would hold the port after
 * reload is gone). SO_REUSEADDR: a connection of the previous session in TIME_WAIT must not
 * make the port look taken. */
static int rl_bind_listen(const struct addrinfo *ai, int backlog)
{
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd < 0)
    return -errno;
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, backlog) < 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  return fd;
}

/* The port the socket is bound to (port 0 asks the kernel for a free one). */
static int rl_bound_port(int fd)
{
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
    return -1;
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* core.listen{ host = "127.0.0.1", port = 8080, backlog = 4096 } -> Socket | nil, err, code
 * host is a numeric address (IPv4 or IPv6); port 0 takes a free port (Socket:port() says
 * which). The backlog is capped by net.core.somaxconn; it is what holds the connections that
 * arrive while no generation accepts. */
static int rl_socket_listen(lua_State *L)
{
  static const char *const keys[] = {"host", "port", "backlog", NULL};
  luaL_checktype(L, 1, LUA_TTABLE);
  rl_opt_keys(L, 1, keys);
  const char *host = "127.0.0.1";
  if (rl_opt(L, 1, "host", LUA_TSTRING))
    host = lua_tostring(L, -1);
  lua_Integer port = rl_opt_integer(L, 1, "port", -1, 0);
  if (port < 0 || port > 65535)
    return luaL_error(L, "option 'port': a port number (0-65535) expected");
  lua_Integer backlog = rl_opt_integer(L, 1, "backlog", SOMAXCONN, 1);
  if (backlog > 65535)
    backlog = 65535;
  if (strlen(host) >= sizeof((rl_socket_t *)0)->host)
    return luaL_error(L, "option 'host': too long");

  char service[8];
  snprintf(service, sizeof service, "%d", (int)port);
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
  int gai = getaddrinfo(host, service, &hints, &res);
  if (gai != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "EINVAL: not a numeric address: '%s' (%s)", host, gai_strerror(gai));
    lua_pushliteral(L, "EINVAL");
    return 3;
  }
  int fd = rl_bind_listen(res, (int)backlog);
  freeaddrinfo(res);
  if (fd < 0) {
    lua_pushfstring(L, "%s:%d", host, (int)port);
    return rl_push_error_what(L, fd, lua_tostring(L, -1));
  }
  rl_socket_t *s = malloc(sizeof *s);
  if (!s) {
    close(fd);
    return luaL_error(L, "out of memory");
  }
  s->fd = fd;
  s->port = rl_bound_port(fd);
  snprintf(s->host, sizeof s->host, "%s", host);
  rl_box_new(L, RL_SOCKET_MT, s, 0);
  rl_stat_add(RL_STAT_HANDLES, 1);
  return 1;
}

/* socket:fd() -> integer */
static int rl_socket_fd(lua_State *L)
{
  lua_pushinteger(L, rl_check_socket(L, 1)->fd);
  return 1;
}

/* socket:port() -> integer */
static int rl_socket_port(lua_State *L)
{
  lua_pushinteger(L, rl_check_socket(L, 1)->port);
  return 1;
}

/* socket:host() -> string */
static int rl_socket_host(lua_State *L)
{
  lua_pushstring(L, rl_check_socket(L, 1)->host);
  return 1;
}

/* socket:close() -> true   (idempotent; connections still in the backlog are reset) */
static int rl_socket_close(lua_State *L)
{
  void **box = rl_box_at(L, 1, RL_SOCKET_MT);
  rl_socket_t *s = *box;
  if (s) {
    *box = NULL;
    close(s->fd);
    free(s);
    rl_stat_add(RL_STAT_HANDLES, -1);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* clang-format off */
static const luaL_Reg rl_socket_methods[] = {
  {"fd",     rl_socket_fd},
  {"port",   rl_socket_port},
  {"host",   rl_socket_host},
  {"close",  rl_socket_close},
  {NULL, NULL},
};

static const luaL_Reg rl_socket_meta[] = {
  {"__gc",     rl_socket_close},
  {"__close",  rl_socket_close},
  {NULL, NULL},
};

static const luaL_Reg rl_socket_functions[] = {
  {"listen",  rl_socket_listen},
  {NULL, NULL},
};
/* clang-format on */

void rl_socket_open(lua_State *L)
{
  rl_class(L, RL_SOCKET_MT, rl_socket_meta, rl_socket_methods);
  luaL_setfuncs(L, rl_socket_functions, 0);
}
