/* A tiny HTTP server for the c-make example: answers every request with MESSAGE. */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "message.h"

int main(void)
{
  const char *port_env = getenv("PORT");
  int port = port_env ? atoi(port_env) : 8080;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 16) != 0) {
    perror("server: bind 127.0.0.1");
    return 1;
  }
  printf("c-make server listening on http://127.0.0.1:%d\n", port);
  fflush(stdout);
  for (;;) {
    int c = accept(fd, NULL, NULL);
    if (c < 0)
      continue;
    char req[1024];
    (void)read(c, req, sizeof req);
    char resp[512];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s\n",
                     strlen(MESSAGE) + 1, MESSAGE);
    (void)write(c, resp, (size_t)n);
    close(c);
  }
}
