/*
 * http.c: an incremental HTTP/1.x message parser for Lua, on Debian's kept http-parser library
 * (libhttp-parser 2.9, the parser Node.js used until v12). It reads bytes and reports facts: where
 * a message's head ends and what it says, where its body bytes are (chunked framing removed),
 * where the message ends, and where a connection stops speaking HTTP (an upgrade). It never
 * reads or writes a socket and knows nothing of proxies, holding or injection: the dev proxy
 * (lua/reload/proxy.lua) decides what to do with the bytes.
 *
 * One call, parser:execute(data), returns the events found in data as a list, so no Lua code runs
 * while the library parses (nothing can close the parser under it) and offsets are exact: the
 * parser is paused at each head and each message end, and the library's return value is where.
 *
 * Lua: core.http_parser; metatable reload.HttpParser. An open parser counts as a handle in
 * core._stats() (it holds C memory until closed), so a spec that forgets one is caught.
 */
#include <http_parser.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define RL_HTTP_PARSER_MT "reload.HttpParser"

/* A growable byte buffer: the URL, the reason phrase and the headers of the head being read.
 * The library bounds a head at 80 KiB (HTTP_MAX_HEADER_SIZE), and so these buffers. */
typedef struct {
  char *data;
  size_t len, cap;
} rl_hbuf_t;

/* One header of the head being read: offsets into `fields`. */
typedef struct {
  size_t name, name_len, value, value_len;
} rl_hfield_t;

enum { RL_HTTP_NONE, RL_HTTP_HEAD, RL_HTTP_DONE };

typedef struct {
  http_parser parser;
  int type;    /* HTTP_REQUEST or HTTP_RESPONSE */
  int no_body; /* the next response answers a HEAD request: it has no body */
  int failed;  /* out of memory while reading a head */
  /* During execute only: */
  lua_State *L;
  int events; /* stack index of the event list */
  lua_Integer nevents;
  const char *base; /* the whole string given to execute */
  int pending;      /* the event whose offset the pause gives: RL_HTTP_HEAD or RL_HTTP_DONE */
  /* The head being read: */
  rl_hbuf_t url, reason, fields;
  rl_hfield_t *hdrs;
  size_t nhdrs, caphdrs;
  int in_value; /* the last header callback was a value */
} rl_http_t;

typedef struct {
  rl_http_t *h; /* NULL once closed */
} rl_http_ud_t;

/* Buffers ------------------------------------------------------------------------------------ */

static int rl_hbuf_add(rl_hbuf_t *b, const char *at, size_t len)
{
  if (b->len + len > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + len)
      cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
      return -1;
    b->data = p;
    b->cap = cap;
  }
  if (len)
    memcpy(b->data + b->len, at, len);
  b->len += len;
  return 0;
}

static void rl_http_clear_head(rl_http_t *h)
{
  h->url.len = h->reason.len = h->fields.len = 0;
  h->nhdrs = 0;
  h->in_value = 0;
}

static void rl_http_free(rl_http_t *h)
{
  free(h->url.data);
  free(h->reason.data);
  free(h->fields.data);
  free(h->hdrs);
  free(h);
}

/* Library callbacks ---------------------------------------------------------------------------
 * Each returns 0 to go on; a non-zero return stops the library with HPE_CB_*. */

static int rl_http_on_begin(http_parser *p)
{
  rl_http_clear_head(p->data);
  return 0;
}

static int rl_http_on_url(http_parser *p, const char *at, size_t len)
{
  rl_http_t *h = p->data;
  return (h->failed = rl_hbuf_add(&h->url, at, len));
}

static int rl_http_on_status(http_parser *p, const char *at, size_t len)
{
  rl_http_t *h = p->data;
  return (h->failed = rl_hbuf_add(&h->reason, at, len));
}

/* A name or a value may come in pieces (split across two reads): a name after a value starts the
 * next header, a piece after a piece of the same kind continues it. */
static int rl_http_on_field(http_parser *p, const char *at, size_t len)
{
  rl_http_t *h = p->data;
  if (h->nhdrs == 0 || h->in_value) {
    if (h->nhdrs == h->caphdrs) {
      size_t cap = h->caphdrs ? h->caphdrs * 2 : 16;
      rl_hfield_t *n = realloc(h->hdrs, cap * sizeof *n);
      if (!n)
        return (h->failed = -1);
      h->hdrs = n;
      h->caphdrs = cap;
    }
    rl_hfield_t *f = &h->hdrs[h->nhdrs++];
    f->name = h->fields.len;
    f->name_len = f->value = f->value_len = 0;
    h->in_value = 0;
  }
  h->hdrs[h->nhdrs - 1].name_len += len;
  return (h->failed = rl_hbuf_add(&h->fields, at, len));
}

static int rl_http_on_value(http_parser *p, const char *at, size_t len)
{
  rl_http_t *h = p->data;
  if (h->nhdrs == 0)
    return 0; /* the library sends no value before a name */
  rl_hfield_t *f = &h->hdrs[h->nhdrs - 1];
  if (!h->in_value) {
    f->value = h->fields.len;
    h->in_value = 1;
  }
  f->value_len += len;
  return (h->failed = rl_hbuf_add(&h->fields, at, len));
}

/* Appends the table on the top of the stack to the event list. */
static void rl_http_push_event(rl_http_t *h)
{
  lua_rawseti(h->L, h->events, ++h->nevents);
}

static void rl_http_set_bool(lua_State *L, const char *key, int v)
{
  lua_pushboolean(L, v);
  lua_setfield(L, -2, key);
}

/* The head is read: an event with everything it says (its offset is set once the pause tells
 * it). Pauses the library, and returns 1 (no body) for a response to a HEAD request. */
static int rl_http_on_headers_complete(http_parser *p)
{
  rl_http_t *h = p->data;
  lua_State *L = h->L;
  lua_createtable(L, 0, 12);
  lua_pushliteral(L, "head");
  lua_setfield(L, -2, "type");
  if (h->type == HTTP_REQUEST) {
    lua_pushstring(L, http_method_str((enum http_method)p->method));
    lua_setfield(L, -2, "method");
    lua_pushlstring(L, h->url.data ? h->url.data : "", h->url.len);
    lua_setfield(L, -2, "url");
  } else {
    lua_pushinteger(L, p->status_code);
    lua_setfield(L, -2, "status");
    lua_pushlstring(L, h->reason.data ? h->reason.data : "", h->reason.len);
    lua_setfield(L, -2, "reason");
  }
  lua_pushinteger(L, p->http_major);
  lua_setfield(L, -2, "major");
  lua_pushinteger(L, p->http_minor);
  lua_setfield(L, -2, "minor");
  lua_createtable(L, (int)h->nhdrs, 0);
  for (size_t i = 0; i < h->nhdrs; i++) {
    rl_hfield_t *f = &h->hdrs[i];
    lua_createtable(L, 2, 0);
    lua_pushlstring(L, h->fields.data + f->name, f->name_len);
    lua_rawseti(L, -2, 1);
    lua_pushlstring(L, f->value_len ? h->fields.data + f->value : "", f->value_len);
    lua_rawseti(L, -2, 2);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "headers");
  rl_http_set_bool(L, "keep_alive", http_should_keep_alive(p));
  rl_http_set_bool(L, "upgrade", p->upgrade);
  rl_http_set_bool(L, "chunked", (p->flags & F_CHUNKED) != 0);
  if ((p->flags & F_CONTENTLENGTH) && !(p->flags & F_CHUNKED)) {
    lua_pushinteger(L, (lua_Integer)p->content_length);
    lua_setfield(L, -2, "length");
  }
  int skip = 0;
  if (h->type == HTTP_RESPONSE && h->no_body) {
    h->no_body = 0;
    skip = 1;
  }
  rl_http_set_bool(L, "no_body", skip);
  rl_http_push_event(h);
  rl_http_clear_head(h);
  h->pending = RL_HTTP_HEAD;
  http_parser_pause(p, 1);
  return skip;
}

static int rl_http_on_body(http_parser *p, const char *at, size_t len)
{
  rl_http_t *h = p->data;
  lua_State *L = h->L;
  lua_createtable(L, 0, 3);
  lua_pushliteral(L, "body");
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, (lua_Integer)(at - h->base) + 1);
  lua_setfield(L, -2, "from");
  lua_pushinteger(L, (lua_Integer)(at - h->base) + (lua_Integer)len);
  lua_setfield(L, -2, "to");
  rl_http_push_event(h);
  return 0;
}

static int rl_http_on_message_complete(http_parser *p)
{
  rl_http_t *h = p->data;
  lua_State *L = h->L;
  lua_createtable(L, 0, 3);
  lua_pushliteral(L, "done");
  lua_setfield(L, -2, "type");
  rl_http_set_bool(L, "keep_alive", http_should_keep_alive(p));
  rl_http_push_event(h);
  h->pending = RL_HTTP_DONE;
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings rl_http_settings = {
    .on_message_begin = rl_http_on_begin,
    .on_url = rl_http_on_url,
    .on_status = rl_http_on_status,
    .on_header_field = rl_http_on_field,
    .on_header_value = rl_http_on_value,
    .on_headers_complete = rl_http_on_headers_complete,
    .on_body = rl_http_on_body,
    .on_message_complete = rl_http_on_message_complete,
};

/* Sets the `at` of the last event: the offset (1-based, inclusive) of its last byte. */
static void rl_http_set_at(rl_http_t *h, size_t at)
{
  lua_State *L = h->L;
  lua_rawgeti(L, h->events, h->nevents);
  lua_pushinteger(L, (lua_Integer)at);
  lua_setfield(L, -2, "at");
  lua_pop(L, 1);
}

/* Parsing ------------------------------------------------------------------------------------ */

static rl_http_t *rl_check_http(lua_State *L, int idx)
{
  rl_http_ud_t *ud = luaL_checkudata(L, idx, RL_HTTP_PARSER_MT);
  if (!ud->h)
    luaL_argerror(L, idx, "closed parser");
  return ud->h;
}

/* Runs the library over data[0, len) (len 0: the stream ended) and leaves the event list on the
 * stack; returns 1, or pushes the error triple and returns 3. */
static int rl_http_run(lua_State *L, rl_http_t *h, const char *data, size_t len)
{
  lua_newtable(L);
  h->L = L;
  h->events = lua_gettop(L);
  h->nevents = 0;
  h->base = data;
  size_t off = 0;
  int eof = len == 0;
  while (off < len || eof) {
    h->pending = RL_HTTP_NONE;
    size_t n = http_parser_execute(&h->parser, &rl_http_settings, data + off, len - off);
    enum http_errno err = HTTP_PARSER_ERRNO(&h->parser);
    if (err == HPE_PAUSED) {
      http_parser_pause(&h->parser, 0);
      if (h->pending == RL_HTTP_HEAD) {
        /* Paused on the head's last LF, which the library reads again when it goes on. */
        rl_http_set_at(h, off + n + 1);
        off += n;
        continue;
      }
      /* RL_HTTP_DONE: paused just past the message's last byte. */
      off += n;
      rl_http_set_at(h, off);
      if (h->parser.upgrade) {
        /* What follows is another protocol: the library must not read it as HTTP. */
        lua_createtable(L, 0, 2);
        lua_pushliteral(L, "upgrade");
        lua_setfield(L, -2, "type");
        lua_pushinteger(L, (lua_Integer)off);
        lua_setfield(L, -2, "at");
        rl_http_push_event(h);
        break;
      }
      if (eof)
        break;
      continue;
    }
    if (err != HPE_OK) {
      h->L = NULL;
      if (h->failed)
        return luaL_error(L, "out of memory");
      lua_pushnil(L);
      lua_pushfstring(L, "%s: %s", http_errno_name(err), http_errno_description(err));
      lua_pushstring(L, http_errno_name(err));
      return 3;
    }
    off += n;
    if (eof || n == 0)
      break;
  }
  h->L = NULL;
  return 1;
}

/* core.http_parser(kind) -> HttpParser    kind: "request" | "response" */
static int rl_http_new(lua_State *L)
{
  static const char *const kinds[] = {"request", "response", NULL};
  int kind = luaL_checkoption(L, 1, NULL, kinds);
  rl_http_ud_t *ud = lua_newuserdatauv(L, sizeof *ud, 0);
  ud->h = NULL;
  luaL_setmetatable(L, RL_HTTP_PARSER_MT);
  rl_http_t *h = calloc(1, sizeof *h);
  if (!h)
    return luaL_error(L, "out of memory");
  h->type = kind == 0 ? HTTP_REQUEST : HTTP_RESPONSE;
  http_parser_init(&h->parser, (enum http_parser_type)h->type);
  h->parser.data = h;
  ud->h = h;
  rl_stat_add(RL_STAT_HANDLES, 1);
  return 1;
}

/* parser:execute(data) -> events | nil, err, code
 * events: a list of
 *   { type = "head", at =, method =, url = | status =, reason =, major =, minor =,
 *     headers = { { name, value }, ... }, keep_alive =, upgrade =, chunked =, length =?,
 *     no_body = }
 *   { type = "body", from =, to = }     body bytes, chunked framing removed: data:sub(from, to)
 *   { type = "done", at =, keep_alive = }
 *   { type = "upgrade", at = }           data after `at` is not HTTP; the parser stops here
 * `at` is the offset in data of the last byte of the head or message. A message may span several
 * calls; its events come in the calls that hold its bytes. An error (HPE_*) is final. */
static int rl_http_execute(lua_State *L)
{
  rl_http_t *h = rl_check_http(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (len == 0)
    return luaL_argerror(L, 2, "empty data (parser:finish() says the stream ended)");
  return rl_http_run(L, h, data, len);
}

/* parser:finish() -> events | nil, err, code   the stream ended: completes a body that runs to
 * the end of the connection; an error if a message was cut short. */
static int rl_http_finish(lua_State *L)
{
  rl_http_t *h = rl_check_http(L, 1);
  return rl_http_run(L, h, "", 0);
}

/* parser:no_body() -> true   the next response answers a HEAD request (it has no body, whatever
 * its headers say). */
static int rl_http_no_body(lua_State *L)
{
  rl_http_t *h = rl_check_http(L, 1);
  h->no_body = 1;
  lua_pushboolean(L, 1);
  return 1;
}

/* parser:reset() -> true   a new stream: after an upgrade that did not happen, or an error. */
static int rl_http_reset(lua_State *L)
{
  rl_http_t *h = rl_check_http(L, 1);
  http_parser_init(&h->parser, (enum http_parser_type)h->type);
  h->parser.data = h;
  h->no_body = 0;
  h->failed = 0;
  rl_http_clear_head(h);
  lua_pushboolean(L, 1);
  return 1;
}

/* parser:close() -> true   (idempotent; also __gc and __close) */
static int rl_http_close(lua_State *L)
{
  rl_http_ud_t *ud = luaL_checkudata(L, 1, RL_HTTP_PARSER_MT);
  if (ud->h) {
    rl_http_free(ud->h);
    ud->h = NULL;
    rl_stat_add(RL_STAT_HANDLES, -1);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg rl_http_methods[] = {
    {"execute", rl_http_execute}, {"finish", rl_http_finish}, {"no_body", rl_http_no_body},
    {"reset", rl_http_reset},     {"close", rl_http_close},   {NULL, NULL},
};

static const luaL_Reg rl_http_meta[] = {
    {"__gc", rl_http_close},
    {"__close", rl_http_close},
    {NULL, NULL},
};

static const luaL_Reg rl_http_functions[] = {
    {"http_parser", rl_http_new},
    {NULL, NULL},
};

void rl_http_open(lua_State *L)
{
  luaL_newmetatable(L, RL_HTTP_PARSER_MT);
  luaL_setfuncs(L, rl_http_meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, rl_http_methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_setfuncs(L, rl_http_functions, 0);
}
