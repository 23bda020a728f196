/*
 * keeper_proto.c: reading and writing the lines of keeper_proto.h. Plain C and libc, no
 * allocation (the keeper's teardown path uses it).
 */
#include "keeper_proto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const rl_stage_names[RL_STAGE_COUNT] = {"setup", "fork", "exec"};
const char *const rl_scope_names[RL_SCOPE_COUNT] = {"main", "group", "tree"};

/* Each verb's arguments: 'i' an integer, 's' a stage name, 'c' a scope name. */
static const struct {
  const char *name;
  const char *args;
} rl_verbs[RL_MSG_COUNT] = {
    [RL_MSG_HELD] = {"held", ""},
    [RL_MSG_STARTED] = {"started", "ii"},
    [RL_MSG_ERROR] = {"error", "si"},
    [RL_MSG_MAIN_EXIT] = {"main-exit", "ii"},
    [RL_MSG_STOPPING] = {"stopping", ""},
    [RL_MSG_FORCING] = {"forcing", ""},
    [RL_MSG_TREE_EMPTY] = {"tree-empty", "ii"},
    [RL_MSG_CANCELLED] = {"cancelled", ""},
    [RL_MSG_SURVIVOR] = {"survivor", "ii"},
    [RL_MSG_GAVE_UP] = {"gave-up", "ii"},
    [RL_MSG_TERM] = {"term", "ii"},
    [RL_MSG_TERMED] = {"termed", "ii"},
    [RL_MSG_KILL] = {"kill", ""},
    [RL_MSG_SIGNAL] = {"signal", "ic"},
    [RL_MSG_GO] = {"go", ""},
    [RL_MSG_GO_DATA] = {"go", "i"},
    [RL_MSG_PRIME] = {"prime", "i"},
    [RL_MSG_DROPPED] = {"dropped", ""},
    [RL_MSG_NEXT] = {"next", "i"},
    [RL_MSG_DROP_NEXT] = {"drop-next", ""},
    [RL_MSG_BYE] = {"bye", ""},
    [RL_MSG_ACK] = {"ack", ""},
};

static int rl_word_index(const char *s, size_t len, const char *const names[], int count)
{
  for (int i = 0; i < count; i++)
    if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
      return i;
  return -1;
}

/* Parses the arguments of one verb from s (after the verb itself); 0 or -1. */
static int rl_parse_args(const char *s, const char *kinds, rl_msg_t *msg)
{
  for (int k = 0; kinds[k]; k++) {
    if (*s++ != ' ')
      return -1;
    size_t len = strcspn(s, " ");
    if (len == 0)
      return -1;
    long long v;
    if (kinds[k] == 'i') {
      char *end;
      errno = 0;
      v = strtoll(s, &end, 10);
      if (errno || end != s + len || (*s != '-' && (*s < '0' || *s > '9')))
        return -1;
    } else {
      v = kinds[k] == 's' ? rl_word_index(s, len, rl_stage_names, RL_STAGE_COUNT)
                          : rl_word_index(s, len, rl_scope_names, RL_SCOPE_COUNT);
      if (v < 0)
        return -1;
    }
    msg->arg[k] = v;
    s += len;
  }
  return *s == '\0' ? 0 : -1;
}

rl_verb_t rl_msg_parse(const char *line, rl_msg_t *msg)
{
  memset(msg, 0, sizeof *msg);
  size_t len = strcspn(line, " ");
  for (int v = 1; v < RL_MSG_COUNT; v++) {
    if (strlen(rl_verbs[v].name) != len || memcmp(rl_verbs[v].name, line, len) != 0)
      continue;
    if (rl_parse_args(line + len, rl_verbs[v].args, msg) == 0) {
      msg->verb = (rl_verb_t)v;
      return msg->verb;
    }
  }
  memset(msg, 0, sizeof *msg);
  return RL_MSG_NONE;
}

size_t rl_msg_format(char *buf, size_t size, const rl_msg_t *msg)
{
  if (msg->verb <= RL_MSG_NONE || msg->verb >= RL_MSG_COUNT || size == 0)
    return 0;
  const char *kinds = rl_verbs[msg->verb].args;
  int n = snprintf(buf, size, "%s", rl_verbs[msg->verb].name);
  for (int k = 0; kinds[k] && n >= 0 && (size_t)n < size; k++) {
    long long v = msg->arg[k];
    int m;
    if (kinds[k] == 'i')
      m = snprintf(buf + n, size - (size_t)n, " %lld", v);
    else if (v >= 0 && v < (kinds[k] == 's' ? RL_STAGE_COUNT : RL_SCOPE_COUNT))
      m = snprintf(buf + n, size - (size_t)n, " %s",
                   kinds[k] == 's' ? rl_stage_names[v] : rl_scope_names[v]);
    else
      return 0;
    n = m < 0 ? -1 : n + m;
  }
  if (n < 0 || (size_t)n + 1 >= size)
    return 0;
  buf[n++] = '\n';
  buf[n] = '\0';
  return (size_t)n;
}
