--- The dev proxy: a port that stays open while the service behind it restarts.
---
--- Theory of operation. The proxy listens on `listen` and forwards to `to`, where the service's
--- current generation listens. It follows the service's lifecycle events (engine:listen) and so
--- knows, without guessing, when a backend may be used:
---
---   ready      from `generation_ready` (the generation's `ready` port accepts connections; a
---              proxied service with no `ready` gets `ready = { port = to }`) until its stop
---              begins (state `stopping`/`settling`) or it is gone
---   coming     anything else while a generation is on its way (building with nothing running,
---              stopping, starting, waiting for `after`, crash backoff): requests are HELD
---   down       at rest with nothing running (the build failed, it crashed, it exited): requests
---              are answered at once with a 503 page that says why (the build output)
---
--- Held requests wait in arrival order, at most `queue` of them and `hold` seconds each, then get
--- a 503 page; they are forwarded, in order, the moment the next generation is ready. A request
--- forwarded to a generation that went away before a byte of the answer came back (it was
--- stopped mid-request, or a kept-alive connection closed under it) is sent again to the next
--- one if its method is idempotent (RFC 9110 9.2.2) and its bytes were kept (bodies up to
--- `replay_max`); otherwise the client gets a 502 page. A response already under way when its
--- generation dies cannot be saved: the client's connection is closed.
---
--- Each client connection gets its own backend connection, opened on its first request and
--- kept while both sides keep it alive and the generation it reached lives; requests on one
--- connection are answered in order. Bytes pass through as they are (heads, chunked framing,
--- streamed bodies, and after a 101 answer both directions of a WebSocket), with two exceptions,
--- both for pages a browser navigates to (GET with `Sec-Fetch-Dest: document`, or `Accept:
--- text/html` when the browser does not say): the request asks for `Accept-Encoding: identity`
--- so the page comes uncompressed, and a `text/html` answer gets the live reload script
--- (livereload.lua), its Content-Length grown by the tag's length or its chunks re-framed. A
--- compressed page (a server that ignores Accept-Encoding) passes untouched, without the script.
--- Paths under /__reload/ are the proxy's own (the script and its event stream).
---
--- HTTP is parsed by core.http_parser (libhttp-parser); sockets are luv TCP handles.
local M = {}
M.__index = M

local uv = require("luv")
local log = require("reload.log")
local livereload = require("reload.livereload")

M.connect_retry_ms = 20 -- a refused connection while ready: try again (until the hold ends)
M.replay_max = 1024 * 1024 -- request bytes kept for a replay
M.buffer_max = 1024 * 1024 -- unsent bytes per direction before reading pauses
M.max_connections = 4096

-- Configuration -------------------------------------------------------------------------------

local function fail(msg)
  error({ dsl = msg }, 0)
end

--- An address: a port number, or "host:port" with an IPv4 host or localhost.
local function address(key, v)
  local host, port = "127.0.0.1", nil
  if math.type(v) == "integer" then
    port = v
  elseif type(v) == "string" then
    local h, p = v:match("^(.*):(%d+)$")
    if h then
      host, port = h, math.tointeger(tonumber(p))
    else
      port = math.tointeger(tonumber(v))
    end
    if host == "localhost" or host == "" then
      host = "127.0.0.1"
    end
    if not host:match("^%d+%.%d+%.%d+%.%d+$") then
      fail(("'%s' must be a port or \"IPv4:port\", not \"%s\""):format(key, v))
    end
  end
  if not port or port < 1 or port > 65535 then
    fail(("'%s' must be a port number (1-65535) or \"host:port\", not %s"):format(key,
      tostring(v)))
  end
  return { host = host, port = port }
end

local PROXY_KEYS = { listen = true, to = true, css = true, hold = true, queue = true,
  live = true }

--- Validates and defaults the `proxy` key of a service (the schema calls this): raises
--- { dsl = message } for a bad value, returns the normalized table.
---@param key string
---@param v any
---@return table { listen = {host, port}, to = {host, port}, css = string[], hold = seconds,
--- queue = integer, live = boolean }
function M.validate(key, v)
  if type(v) ~= "table" then
    fail(("'%s' must be a table { listen = PORT, to = PORT, css = { globs } }"):format(key))
  end
  local names = {}
  for name in pairs(PROXY_KEYS) do
    names[#names + 1] = name
  end
  table.sort(names)
  for k in pairs(v) do
    if not PROXY_KEYS[k] then
      fail(("'%s' has an unknown key '%s' (known: %s)"):format(key, tostring(k),
        table.concat(names, ", ")))
    end
  end
  if v.listen == nil or v.to == nil then
    fail(("'%s' needs listen (the port browsers use) and to (the port the server listens on)")
      :format(key))
  end
  local out = {
    listen = address(key .. ".listen", v.listen),
    to = address(key .. ".to", v.to),
    css = {},
    hold = 30,
    queue = 1000,
    live = true,
  }
  if out.listen.port == out.to.port and out.listen.host == out.to.host then
    fail(("'%s': listen and to are the same address"):format(key))
  end
  if v.css ~= nil then
    local list = type(v.css) == "string" and { v.css } or v.css
    if type(list) ~= "table" then
      fail(("'%s.css' must be a glob or a list of globs"):format(key))
    end
    for i, g in ipairs(list) do
      if type(g) ~= "string" then
        fail(("'%s.css'[%d] must be a string"):format(key, i))
      end
      out.css[#out.css + 1] = g
    end
  end
  if v.hold ~= nil then
    if type(v.hold) ~= "number" or v.hold < 0 then
      fail(("'%s.hold' must be a number of seconds >= 0"):format(key))
    end
    out.hold = v.hold
  end
  if v.queue ~= nil then
    if math.type(v.queue) ~= "integer" or v.queue < 0 then
      fail(("'%s.queue' must be an integer >= 0"):format(key))
    end
    out.queue = v.queue
  end
  if v.live ~= nil then
    if type(v.live) ~= "boolean" then
      fail(("'%s.live' must be true or false"):format(key))
    end
    out.live = v.live
  end
  return out
end

--- The `ready` a proxied service gets when it names none: its `to` port accepts connections.
---@param p table a validated proxy table
---@return table|nil
function M.implied_ready(p)
  if p.to.host == "127.0.0.1" then
    return { port = p.to.port, timeout = 30 }
  end
  return nil
end

-- HTTP helpers -------------------------------------------------------------------------------

local function header(head, name)
  name = name:lower()
  for _, h in ipairs(head.headers) do
    if h[1]:lower() == name then
      return h[2]
    end
  end
  return nil
end

local IDEMPOTENT = { GET = true, HEAD = true, OPTIONS = true, TRACE = true, PUT = true,
  DELETE = true }

--- Does a browser navigate to this (so the answer is a page that gets the script)?
local function navigation(head)
  if head.method ~= "GET" then
    return false
  end
  local dest = header(head, "sec-fetch-dest")
  if dest then
    return dest == "document"
  end
  local accept = header(head, "accept")
  return accept ~= nil and accept:lower():find("text/html", 1, true) ~= nil
end

--- The raw head with the value of every `name` header replaced (or the header added).
local function set_header(raw, name, value)
  local lname = name:lower()
  local lines, found = {}, false
  for line in raw:gmatch("([^\n]*)\n") do
    local n = line:match("^([^:%s]+):")
    if n and n:lower() == lname then
      if not found then
        lines[#lines + 1] = ("%s: %s\r"):format(name, value)
        found = true
      end
    else
      lines[#lines + 1] = line
    end
  end
  -- lines ends with the empty line ("\r") that closes the head.
  if not found then
    table.insert(lines, #lines, ("%s: %s\r"):format(name, value))
  end
  return table.concat(lines, "\n") .. "\n"
end

local function drop_header(raw, name)
  local lname = name:lower()
  local lines = {}
  for line in raw:gmatch("([^\n]*)\n") do
    local n = line:match("^([^:%s]+):")
    if not (n and n:lower() == lname) then
      lines[#lines + 1] = line
    end
  end
  return table.concat(lines, "\n") .. "\n"
end

local function html_escape(s)
  return (tostring(s):gsub("[&<>\"]", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
    ['"'] = "&quot;" }))
end

local function strip_ansi(s)
  return (tostring(s or ""):gsub("\27%[[%d;?]*[ -/]*[@-~]", ""))
end

local STATUS_TEXT = { [502] = "Bad Gateway", [503] = "Service Unavailable" }

-- The proxy ---------------------------------------------------------------------------------

---@class reload.Proxy
---@field name string the service
---@field cfg table the validated proxy table
---@field state string the service's state, as its events said
---@field ready_gen integer|nil the generation requests go to, while it is ready
---@field held table[] requests waiting for a ready generation, in arrival order
---@field stats table counters (forwarded, held, replayed, refused503, ...)

---@param opts { name: string, cfg: table, clock: table, core: table }
---@return reload.Proxy|nil, string|nil
function M.new(opts)
  local self = setmetatable({
    name = opts.name,
    cfg = opts.cfg,
    clock = opts.clock,
    core = opts.core,
    state = "idle",
    ready_gen = nil,
    held = {},
    conns = {},
    nconns = 0,
    stats = { connections = 0, requests = 0, held = 0, replayed = 0, answered503 = 0,
      answered502 = 0, injected = 0, aborted = 0 },
  }, M)
  if self.cfg.live then
    self.live = livereload.new({ service = self.name, clock = self.clock })
  end
  self:set_css(self.cfg.css)
  local ok, err = self:listen()
  if not ok then
    return nil, err
  end
  return self
end

function M:set_css(globs)
  self.css = {}
  for _, g in ipairs(globs or {}) do
    self.css[#self.css + 1] = self.core.glob(g)
  end
end

function M:listen()
  local server = uv.new_tcp()
  local a = self.cfg.listen
  local ok, err = server:bind(a.host, a.port)
  if ok then
    ok, err = server:listen(511, function(lerr)
      if not lerr then
        self:accept()
      end
    end)
  end
  if not ok then
    server:close()
    return nil, ("cannot listen on %s:%d: %s"):format(a.host, a.port, tostring(err))
  end
  self.server = server
  return true
end

--- The address pages are opened at.
function M:url()
  return ("http://%s:%d/"):format(self.cfg.listen.host, self.cfg.listen.port)
end

--- A new configuration for the same service (a Reloadfile edit): the same listener if its
--- address is unchanged.
---@param cfg table
---@return boolean|nil, string|nil
function M:reconfigure(cfg)
  local same = cfg.listen.host == self.cfg.listen.host and cfg.listen.port == self.cfg.listen.port
  self.cfg = cfg
  self:set_css(cfg.css)
  if not same then
    self.server:close()
    self.server = nil
    return self:listen()
  end
  return true
end

--- Stops listening and closes every connection.
function M:close()
  if self.closed then
    return
  end
  self.closed = true
  for _, h in ipairs(self.held) do
    h.timer:stop()
  end
  self.held = {}
  if self.retry_timer then
    self.retry_timer:stop()
    self.retry_timer = nil
  end
  if self.css_timer then
    self.css_timer:stop()
    self.css_timer = nil
  end
  if self.server then
    self.server:close()
    self.server = nil
  end
  if self.live then
    self.live:close()
  end
  for conn in pairs(self.conns) do
    conn:close()
  end
end

-- What the service says ---------------------------------------------------------------------

local DOWN = { failed = true, crashed = true, exited = true, done = true, stopped = true }

--- A lifecycle event of its service.
---@param ev table
function M:event(ev)
  if self.closed then
    return
  end
  local t = ev.type
  if t == "state" then
    self.state = ev.to
    if ev.to == "stopping" or ev.to == "settling" then
      self:not_ready()
    elseif DOWN[ev.to] then
      self:not_ready()
      self:answer_held()
    end
  elseif t == "generation_ready" then
    self.ready_gen = ev.generation
    self.failure = nil
    self:flush_held()
  elseif t == "generation_gone" then
    if self.ready_gen == ev.generation then
      self:not_ready()
    end
    self.last_exit = ev
  elseif t == "build_failed" or t == "command_failed" then
    self.failure = ev
  elseif t == "build_ok" then
    self.failure = nil
  end
  if self.live then
    self.live:event(ev)
  end
end

--- Files changed (every batch of the watcher): stylesheets named by `css` are swapped in the
--- pages when nothing else of the service changed with them.
---@param paths string[]
---@param concerns fun(path: string): boolean does the path concern the service?
function M:files(paths, concerns)
  if not self.live or #self.css == 0 then
    return
  end
  local css, other = {}, false
  for _, p in ipairs(paths) do
    local hit = false
    for _, g in ipairs(self.css) do
      if g:match(p) then
        hit = true
        break
      end
    end
    if hit then
      css[#css + 1] = p
    elseif concerns(p) then
      other = true
    end
  end
  if #css == 0 and not self.css_timer then
    return
  end
  self.css_pending = self.css_pending or {}
  if other then
    self.css_pending.reload = true -- a restart follows: its reload shows the new styles too
  end
  for _, p in ipairs(css) do
    self.css_pending[p] = true
  end
  if self.css_timer then
    return
  end
  -- One swap per save: the events of one write come in a burst.
  self.css_timer = self.clock.after(30, function()
    self.css_timer = nil
    local pending = self.css_pending
    self.css_pending = nil
    if pending.reload then
      return
    end
    local list = {}
    for p in pairs(pending) do
      list[#list + 1] = p
    end
    table.sort(list)
    log.info("%s: %s changed: swapping stylesheets in the browser", self.name, log.paths(list))
    self.live:css(list)
  end)
end

function M:not_ready()
  self.ready_gen = nil
  -- Connections to the generation that goes are not used again; idle ones close now.
  for conn in pairs(self.conns) do
    conn:retire_backend()
  end
end

-- Holding -------------------------------------------------------------------------------------

--- Why requests cannot be forwarded now, when nothing is on its way (else nil: hold them).
function M:down_reason()
  if not DOWN[self.state] then
    return nil
  end
  local f = self.failure
  if f then
    local step = f.step or "build"
    if #step > 60 then
      step = step:sub(1, 57) .. "..."
    end
    local title = f.type == "build_failed" and
      ("the build failed (%s%s)"):format(step,
        f.status and (", exit status " .. tostring(f.status)) or "") or
      "its command could not be prepared"
    return title, f.output
  end
  if self.state == "stopped" then
    return "reload is stopping"
  end
  local e = self.last_exit
  if e then
    return ("the server exited (%s) and waits for a change"):format(e.signal and
      ("signal " .. tostring(e.signal)) or ("status " .. tostring(e.status)))
  end
  return "the server is not running (" .. self.state .. ")"
end

--- Sends a request on, holds it, or answers it with a 503.
function M:dispatch(conn, req)
  if self.ready_gen then
    conn:forward(req)
    return
  end
  local why, output = self:down_reason()
  if why then
    self:answer_error(conn, req, 503, why, output)
    return
  end
  if #self.held >= self.cfg.queue then
    self:answer_error(conn, req, 503, ("%d requests are already waiting for the server")
      :format(#self.held))
    return
  end
  self.stats.held = self.stats.held + 1
  local entry = { conn = conn, req = req, t = self.clock.now() }
  entry.timer = self.clock.after(self.cfg.hold * 1000, function()
    entry.timer = nil
    self:unhold(entry)
    self:answer_error(conn, req, 503, ("the server was not ready within %s (hold = %s)")
      :format(log.duration(self.cfg.hold * 1000), tostring(self.cfg.hold)))
  end)
  req.held = entry
  self.held[#self.held + 1] = entry
end

function M:unhold(entry)
  for i, e in ipairs(self.held) do
    if e == entry then
      table.remove(self.held, i)
      break
    end
  end
  if entry.timer then
    entry.timer:stop()
    entry.timer = nil
  end
  entry.req.held = nil
end

--- The generation is ready: every held request goes, in arrival order.
function M:flush_held()
  local list = self.held
  self.held = {}
  if #list > 0 then
    log.verbose("%s: proxy: forwarding %d held request%s", self.name, #list,
      #list == 1 and "" or "s")
  end
  for _, e in ipairs(list) do
    if e.timer then
      e.timer:stop()
      e.timer = nil
    end
    e.req.held = nil
    if not e.conn.closed then
      self:dispatch(e.conn, e.req)
    end
  end
end

--- Nothing is on its way any more (a failed build, a crash): held requests get the 503 now.
function M:answer_held()
  local list = self.held
  self.held = {}
  local why, output = self:down_reason()
  for _, e in ipairs(list) do
    if e.timer then
      e.timer:stop()
    end
    e.req.held = nil
    if not e.conn.closed then
      self:answer_error(e.conn, e.req, 503, why or "the server is not running", output)
    end
  end
end

--- A page (or plain text for a non-browser) saying why there is no answer from the server.
function M:answer_error(conn, req, status, why, output)
  if status == 503 then
    self.stats.answered503 = self.stats.answered503 + 1
  else
    self.stats.answered502 = self.stats.answered502 + 1
  end
  local title = ("%s: %s"):format(self.name, why)
  local body, ctype
  if navigation(req.head) then
    ctype = "text/html; charset=utf-8"
    local script = self.live and self.live:tag(0) or ""
    body = table.concat({
      "<!doctype html><html><head><meta charset=\"utf-8\"><title>", html_escape(title),
      "</title>", script, "<style>body{font:15px/1.5 system-ui,sans-serif;margin:40px;",
      "color:#222}pre{background:#111;color:#eee;padding:16px;white-space:pre-wrap;",
      "font:13px/1.45 ui-monospace,'DejaVu Sans Mono',monospace}h1{font-size:20px;",
      "color:#b00020}</style></head><body><h1>", html_escape(title), "</h1><p>reload's dev ",
      "proxy answered ", tostring(status), " ", STATUS_TEXT[status], " for ",
      html_escape(req.head.url), ".", self.live and
        " This page reloads by itself once the server is up." or "", "</p>",
      output and output ~= "" and ("<pre>" .. html_escape(strip_ansi(output)) .. "</pre>") or "",
      "</body></html>\n",
    })
  else
    ctype = "text/plain; charset=utf-8"
    body = title .. "\n" .. (output and output ~= "" and (strip_ansi(output) .. "\n") or "")
  end
  conn:answer(req, status, STATUS_TEXT[status], {
    { "Content-Type", ctype },
    { "Cache-Control", "no-store" },
    { "Retry-After", "1" },
  }, body)
end

-- Connections ---------------------------------------------------------------------------------

local Conn = {}
Conn.__index = Conn

function M:accept()
  local client = uv.new_tcp()
  if not self.server or not self.server:accept(client) then
    client:close()
    return
  end
  if self.nconns >= M.max_connections then
    client:close()
    return
  end
  client:nodelay(true)
  local conn = setmetatable({
    proxy = self,
    client = client,
    parser = self.core.http_parser("request"),
    queue = {}, -- requests in arrival order; the first is the one being answered
    partial = {}, -- bytes of a head not complete yet
    closed = false,
  }, Conn)
  self.conns[conn] = true
  self.nconns = self.nconns + 1
  self.stats.connections = self.stats.connections + 1
  client:read_start(function(err, chunk)
    if err or not chunk then
      conn:client_eof()
    else
      conn:client_data(chunk)
    end
  end)
end

--- Closes both sides at once.
function Conn:close()
  if self.closed then
    return
  end
  self.closed = true
  local p = self.proxy
  p.conns[self] = nil
  p.nconns = p.nconns - 1
  for _, req in ipairs(self.queue) do
    if req.held then
      p:unhold(req.held)
    end
  end
  self.queue = {}
  if self.sse then
    p.live:remove(self.sse)
    self.sse = nil
  end
  if self.retry then
    self.retry:stop()
    self.retry = nil
  end
  self:drop_backend()
  if not self.client:is_closing() then
    self.client:close()
  end
  self.parser:close()
end

--- Writes to the client; stops reading the backend while the client lags.
function Conn:to_client(data)
  if self.closed or data == "" then
    return
  end
  self.client:write(data, function()
    self:maybe_resume_backend()
  end)
  local b = self.backend
  if b and self.client:get_write_queue_size() > M.buffer_max and not b.paused then
    b.paused = true
    b.tcp:read_stop()
  end
end

function Conn:maybe_resume_backend()
  local b = self.backend
  if b and b.paused and not self.closed and self.client:get_write_queue_size() <= M.buffer_max then
    b.paused = false
    b.tcp:read_start(b.reader)
  end
end

--- Writes to the backend; stops reading the client while the backend lags.
function Conn:to_backend(data)
  local b = self.backend
  if not b or data == "" then
    return
  end
  b.tcp:write(data, function()
    if self.client_paused and not self.closed and self.backend == b and
      b.tcp:get_write_queue_size() <= M.buffer_max then
      self.client_paused = false
      self.client:read_start(function(err, chunk)
        if err or not chunk then
          self:client_eof()
        else
          self:client_data(chunk)
        end
      end)
    end
  end)
  if b.tcp:get_write_queue_size() > M.buffer_max then
    self:pause_client()
  end
end

function Conn:pause_client()
  if not self.client_paused and not self.closed then
    self.client_paused = true
    self.client:read_stop()
  end
end

function Conn:resume_client()
  if self.client_paused and not self.closed and not self.client_eofed then
    self.client_paused = false
    self.client:read_start(function(err, chunk)
      if err or not chunk then
        self:client_eof()
      else
        self:client_data(chunk)
      end
    end)
  end
end

-- Client side: requests in --------------------------------------------------------------------

function Conn:client_data(chunk)
  if self.tunnel then
    self:to_backend(chunk)
    return
  end
  if self.after_upgrade then
    -- A request asked for an upgrade: what follows waits for the answer.
    self.after_upgrade = self.after_upgrade .. chunk
    return
  end
  local evs, err = self.parser:execute(chunk)
  if not evs then
    log.verbose("%s: proxy: bad request from a client (%s): closing it", self.proxy.name, err)
    if #self.queue == 0 then
      self.client:write("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n" ..
        "Connection: close\r\n\r\n")
      self:shutdown_client()
    else
      self:close()
    end
    return
  end
  local mark = 1
  local cur = self.receiving
  for _, ev in ipairs(evs) do
    if ev.type == "head" then
      self.partial[#self.partial + 1] = chunk:sub(mark, ev.at)
      local raw = table.concat(self.partial)
      self.partial = {}
      mark = ev.at + 1
      cur = { head = ev, raw_head = raw, pending = {}, pending_bytes = 0, copy = {},
        body_bytes = 0, complete = false }
      self.receiving = cur
      self.queue[#self.queue + 1] = cur
      self.proxy.stats.requests = self.proxy.stats.requests + 1
      if #self.queue == 1 then
        self:start(cur)
      end
    elseif ev.type == "done" then
      self:request_body(cur, chunk:sub(mark, ev.at))
      mark = ev.at + 1
      cur.complete = true
      self.receiving = nil
      cur = nil
    elseif ev.type == "upgrade" then
      self.after_upgrade = chunk:sub(ev.at + 1)
      mark = #chunk + 1
    end
  end
  if mark <= #chunk then
    if cur then
      self:request_body(cur, chunk:sub(mark))
    else
      self.partial[#self.partial + 1] = chunk:sub(mark)
    end
  end
end

--- Raw body bytes of a request (chunked framing included): to the backend once the request is
--- being written there, else kept until it is; and a copy for a replay while they fit.
function Conn:request_body(req, data)
  if data == "" then
    return
  end
  req.body_bytes = req.body_bytes + #data
  if req.copy then
    if req.body_bytes <= M.replay_max then
      req.copy[#req.copy + 1] = data
    else
      req.copy = nil -- too large to send twice
    end
  end
  if req.writing and self.backend then
    self:to_backend(data)
    return
  end
  req.pending[#req.pending + 1] = data
  req.pending_bytes = req.pending_bytes + #data
  if req.pending_bytes > M.buffer_max then
    self:pause_client() -- a large upload waits in the kernel until the server is there
  end
end

function Conn:client_eof()
  self.client_eofed = true
  if self.tunnel or #self.queue == 0 or self.sse then
    self:close()
    return
  end
  -- A half-closed client still gets its answers.
  self.client:read_stop()
end

--- The first request of the queue is up: the proxy's own paths, or the service.
function Conn:start(req)
  local url = req.head.url
  if url:sub(1, #livereload.prefix) == livereload.prefix and self.proxy.live then
    self:serve_own(req)
    return
  end
  self.proxy:dispatch(self, req)
end

--- The next request on this connection, once the previous one is answered.
function Conn:next_request()
  table.remove(self.queue, 1)
  if self.closed then
    return
  end
  if self.close_after then
    self:shutdown_client()
    return
  end
  local req = self.queue[1]
  if req then
    self:start(req)
  elseif self.client_eofed then
    self:close()
  end
end

function Conn:shutdown_client()
  if self.closed or self.shutting then
    return
  end
  self.shutting = true
  self.client:shutdown(function()
    self:close()
  end)
end

--- Answers the current request from the proxy itself (503/502 pages, /__reload/ files).
function Conn:answer(req, status, reason, headers, body)
  if self.closed then
    return
  end
  local keep = req.head.keep_alive and req.complete and not self.client_eofed
  local lines = { ("HTTP/1.1 %d %s"):format(status, reason) }
  for _, h in ipairs(headers) do
    lines[#lines + 1] = h[1] .. ": " .. h[2]
  end
  lines[#lines + 1] = "Content-Length: " .. #body
  lines[#lines + 1] = keep and "Connection: keep-alive" or "Connection: close"
  local text = table.concat(lines, "\r\n") .. "\r\n\r\n"
  if req.head.method ~= "HEAD" then
    text = text .. body
  end
  self.client:write(text)
  if not keep then
    self.close_after = true
  end
  if req == self.queue[1] then
    self:next_request()
  end
end

function Conn:serve_own(req)
  local p = self.proxy
  local path = req.head.url:match("^[^?#]*")
  if path == livereload.prefix .. "client.js" then
    self:answer(req, 200, "OK", {
      { "Content-Type", "text/javascript; charset=utf-8" },
      { "Cache-Control", "no-cache" },
    }, livereload.client_js)
  elseif path == livereload.prefix .. "events" then
    self.client:write("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" ..
      "Cache-Control: no-store\r\nConnection: close\r\nX-Accel-Buffering: no\r\n\r\n")
    local sse = {}
    sse.write = function(data)
      if not self.closed then
        self.client:write(data)
      end
    end
    sse.close = function()
      self:close()
    end
    self.sse = sse
    p.live:add(sse)
  else
    self:answer(req, 404, "Not Found", { { "Content-Type", "text/plain" } },
      "reload: no such path\n")
  end
end

-- Backend side: forwarding --------------------------------------------------------------------

--- The generation it reached is stopping: an idle backend connection closes now, a busy one
--- once its answer is complete.
function Conn:retire_backend()
  local b = self.backend
  if not b then
    return
  end
  b.retired = true
  if not b.busy then
    self:drop_backend()
  end
end

function Conn:drop_backend()
  local b = self.backend
  if not b then
    return
  end
  self.backend = nil
  b.dead = true
  if not b.tcp:is_closing() then
    b.tcp:close()
  end
  b.parser:close()
end

--- Sends the first request of the queue to the ready generation.
function Conn:forward(req)
  local p = self.proxy
  local b = self.backend
  if b and (b.retired or b.gen ~= p.ready_gen) then
    self:drop_backend()
    b = nil
  end
  req.navigate = p.live ~= nil and navigation(req.head)
  if not b then
    self:connect(req)
    return
  end
  self:send(req)
end

function Conn:connect(req)
  local p = self.proxy
  local tcp = uv.new_tcp()
  local b = { tcp = tcp, gen = p.ready_gen, connecting = true, busy = true,
    parser = p.core.http_parser("response") }
  self.backend = b
  local ok, err = tcp:connect(p.cfg.to.host, p.cfg.to.port, function(cerr)
    if b.dead then
      return
    end
    b.connecting = false
    if cerr then
      self:backend_refused(req, cerr)
      return
    end
    tcp:nodelay(true)
    b.reader = function(rerr, chunk)
      if b.dead then
        return
      end
      if rerr or not chunk then
        self:backend_eof(b, rerr)
      else
        self:backend_data(b, chunk)
      end
    end
    tcp:read_start(b.reader)
    self:send(req)
  end)
  if not ok then
    b.connecting = false
    self:backend_refused(req, err)
  end
end

--- The port refused the connection although the generation was said to be ready (its `ready`
--- came before its listen, or it died a moment ago): try again shortly, within the hold time.
function Conn:backend_refused(req, err)
  self:drop_backend()
  local p = self.proxy
  req.refused_since = req.refused_since or p.clock.now()
  if p.clock.now() - req.refused_since > p.cfg.hold * 1000 then
    p:answer_error(self, req, 502, ("the server refused the connection to port %d (%s)")
      :format(p.cfg.to.port, tostring(err)))
    return
  end
  self.retry = p.clock.after(M.connect_retry_ms, function()
    self.retry = nil
    if not self.closed and self.queue[1] == req then
      p:dispatch(self, req)
    end
  end)
end

function Conn:send(req)
  local b = self.backend
  b.busy = true
  b.req = req
  b.started = false -- no byte of the answer went to the client yet
  if req.head.method == "HEAD" then
    b.parser:no_body()
  end
  local head = req.raw_head
  if req.navigate then
    head = set_header(head, "Accept-Encoding", "identity")
  end
  self:to_backend(head)
  for _, piece in ipairs(req.pending) do
    self:to_backend(piece)
  end
  req.pending, req.pending_bytes = {}, 0
  req.writing = true
  self:resume_client()
end

--- Decides, from the answer's head, whether the page gets the live reload script.
function Conn:inject_plan(req, head)
  local p = self.proxy
  if not req.navigate or head.no_body or head.status < 200 or head.status == 204 or
    head.status == 304 then
    return nil
  end
  local ctype = header(head, "content-type")
  if not ctype or not ctype:lower():find("^%s*text/html") then
    return nil
  end
  local enc = header(head, "content-encoding")
  if enc and enc:lower() ~= "identity" then
    if not p.warned_encoding then
      p.warned_encoding = true
      log.warn("%s: proxy: a page came compressed (Content-Encoding: %s) although the proxy " ..
        "asked for identity: served without the live reload script", p.name, enc)
    end
    return nil
  end
  return { tag = p.live:tag(self.backend.gen or 0) }
end

function Conn:backend_data(b, chunk)
  if self.tunnel then
    self:to_client(chunk)
    return
  end
  local evs, err = b.parser:execute(chunk)
  if not evs then
    self:backend_broken(b, err)
    return
  end
  local mark = 1
  for _, ev in ipairs(evs) do
    if ev.type == "head" then
      local raw = table.concat(b.head_parts or {}) .. chunk:sub(mark, ev.at)
      b.head_parts = nil
      mark = ev.at + 1
      b.started = true
      b.head = ev
      local plan = ev.status >= 200 and self:inject_plan(b.req, ev) or nil
      b.inject = plan and livereload.injector(plan.tag)
      if b.inject then
        self.proxy.stats.injected = self.proxy.stats.injected + 1
        b.chunked = ev.chunked
        if ev.length then
          raw = set_header(raw, "Content-Length", tostring(ev.length + #plan.tag))
        end
        raw = drop_header(raw, "Content-MD5")
      end
      self:to_client(raw)
    elseif ev.type == "body" then
      if b.inject then
        self:inject_out(b, b.inject:push(chunk:sub(ev.from, ev.to)))
      end
    elseif ev.type == "done" and b.head and b.head.status == 101 then
      -- Switching protocols (WebSocket): both sides speak another protocol from here; the
      -- proxy passes bytes until either side closes.
      self:to_client(chunk:sub(mark))
      self:start_tunnel()
      return
    elseif ev.type == "done" then
      if b.inject then
        self:inject_out(b, b.inject:finish())
        if b.chunked then
          self:to_client("0\r\n\r\n")
        end
      else
        self:to_client(chunk:sub(mark, ev.at))
      end
      mark = ev.at + 1
      if b.head and b.head.status >= 100 and b.head.status < 200 and b.head.status ~= 101 then
        b.head = nil -- an interim answer (100 Continue, 103): the real one follows
      else
        self:response_done(b, ev.keep_alive)
        if b.dead or self.backend ~= b then
          return
        end
      end
    end
  end
  if mark <= #chunk then
    if not b.head then
      b.head_parts = b.head_parts or {}
      b.head_parts[#b.head_parts + 1] = chunk:sub(mark)
    elseif not b.inject then
      self:to_client(chunk:sub(mark))
    end
  end
end

function Conn:inject_out(b, data)
  if data == "" then
    return
  end
  if b.chunked then
    self:to_client(("%x\r\n%s\r\n"):format(#data, data))
  else
    self:to_client(data)
  end
end

function Conn:start_tunnel()
  self.tunnel = true
  local rest = self.after_upgrade or ""
  self.after_upgrade = nil
  table.remove(self.queue, 1)
  self:to_backend(rest)
  self:resume_client()
end

--- One answer is complete.
function Conn:response_done(b, keep_alive)
  local req = b.req
  b.busy = false
  b.req = nil
  b.head = nil
  b.inject = nil
  if req.head.upgrade and self.after_upgrade then
    -- The server refused the upgrade: the client may go on speaking HTTP.
    local rest = self.after_upgrade
    self.after_upgrade = nil
    self.parser:reset()
    if rest ~= "" then
      self:client_data(rest)
    end
  end
  if not keep_alive or b.retired then
    self:drop_backend()
  end
  if not (keep_alive and req.head.keep_alive) then
    self.close_after = true
  end
  if not req.complete then
    -- The server answered before the request's body was all sent (an early error): the
    -- rest of the body cannot be told apart from the next request on this connection.
    self.close_after = true
  end
  self:next_request()
end

--- The backend closed (or failed): completes an answer that runs to the end of the connection,
--- replays a request that got no answer, or gives up on one that was under way.
function Conn:backend_eof(b, err)
  if self.tunnel then
    self:drop_backend()
    self:shutdown_client()
    return
  end
  local req = b.req
  if not err and req then
    local evs = b.parser:finish()
    if evs and #evs > 0 and evs[#evs].type == "done" then
      for _, ev in ipairs(evs) do
        if ev.type == "done" and b.inject then
          self:inject_out(b, b.inject:finish())
        end
      end
      self:drop_backend()
      self:response_done(b, false)
      return
    end
  end
  self:backend_broken(b, err or "the connection closed")
end

function Conn:backend_broken(b, err)
  local req = b.req
  local p = self.proxy
  self:drop_backend()
  if not req then
    return -- an idle connection closed: the next request opens a new one
  end
  if b.started then
    p.stats.aborted = p.stats.aborted + 1
    log.verbose("%s: proxy: the server went away during an answer to %s %s (%s)", p.name,
      req.head.method, req.head.url, tostring(err))
    self:close()
    return
  end
  req.writing = false
  if IDEMPOTENT[req.head.method] and req.copy and (req.replays or 0) < 5 then
    p.stats.replayed = p.stats.replayed + 1
    req.replays = (req.replays or 0) + 1
    -- Everything of the body that came so far goes again; the rest follows as it comes.
    req.pending, req.pending_bytes = {}, 0
    for _, piece in ipairs(req.copy) do
      req.pending[#req.pending + 1] = piece
      req.pending_bytes = req.pending_bytes + #piece
    end
    p:dispatch(self, req)
    return
  end
  p:answer_error(self, req, 502, ("the server closed the connection before answering %s %s " ..
    "(it was probably stopped for a restart); a %s is not sent twice"):format(req.head.method,
    req.head.url, req.head.method))
end

-- Wiring to the engine --------------------------------------------------------------------------

--- Starts a proxy for every service whose definition has `proxy`, fed by the engine's events.
--- Returns an object with close().
---@param engine reload.Engine
---@param core table
---@param clock table
function M.attach(engine, core, clock)
  local set = { proxies = {} }
  local function sync(name)
    local svc = engine.by_name[name]
    local cfg = svc and (svc.cfg.proxy)
    local px = set.proxies[name]
    if px and not cfg then
      px:close()
      set.proxies[name] = nil
      log.info("%s: proxy on %s closed", name, px:url())
    elseif cfg and not px then
      local err
      px, err = M.new({ name = name, cfg = cfg, clock = clock, core = core })
      if px then
        px.state = svc.state.name
        if svc.up and svc.gen then
          px.ready_gen = svc.gen.n
          if px.live then
            px.live.gen = svc.gen.n
          end
        end
        set.proxies[name] = px
        log.info("%s: proxy on %s -> %s:%d%s", name, px:url(), cfg.to.host, cfg.to.port,
          cfg.live and " (live reload)" or "")
      else
        log.error("%s: proxy: %s", name, err)
      end
    elseif cfg and px and cfg ~= px.cfg then
      local ok, err = px:reconfigure(cfg)
      if not ok then
        log.error("%s: proxy: %s", name, err)
      end
    end
  end
  for _, svc in ipairs(engine.services) do
    sync(svc.name)
  end
  engine:listen(function(ev)
    if ev.type == "files" then
      for name, px in pairs(set.proxies) do
        local svc = engine.by_name[name]
        if svc then
          px:files(ev.paths, function(path)
            return svc:concerns(path)
          end)
        end
      end
      return
    end
    local name = ev.service
    if not name then
      return
    end
    if ev.type == "generation_started" or (ev.type == "state" and ev.from == "idle") then
      sync(name) -- a new definition applies from the generation that runs with it
    end
    local px = set.proxies[name]
    if px then
      px:event(ev)
    end
  end)
  function set.close()
    for _, px in pairs(set.proxies) do
      px:close()
    end
    set.proxies = {}
  end
  return set
end

return M
