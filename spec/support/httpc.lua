--- A small HTTP/1.1 client on luv for the proxy specs and bench: keep-alive connections that
--- send raw requests and read whole responses (with core.http_parser), a server-sent events
--- reader, and a steady load of keep-alive connections that counts what failed.
--- Nothing here runs the loop: callers pump it (spec/helpers.lua) or run it (bench).
local uv = require("luv")
local core = require("reload.core")

local M = {}

local function now_ms()
  return uv.hrtime() / 1e6
end

---@class httpc.Conn
local Conn = {}
Conn.__index = Conn

--- Opens a connection to 127.0.0.1:port; fn(conn, err) once connected (or not).
function M.connect(port, fn)
  local self = setmetatable({ tcp = uv.new_tcp(), parser = core.http_parser("response"),
    closed = false }, Conn)
  self.tcp:connect("127.0.0.1", port, function(err)
    if err then
      self:close()
      fn(nil, err)
      return
    end
    self.tcp:read_start(function(rerr, chunk)
      if rerr or not chunk then
        self:eof(rerr or "EOF")
      else
        self:data(chunk)
      end
    end)
    fn(self)
  end)
  return self
end

--- Sends a raw request; fn(res, err) with res = { status, reason, headers (lower-case name ->
--- value), head (raw), body (decoded), raw (every byte received), chunked, length }.
function Conn:request(raw, fn, opts)
  self.pending = { fn = fn, raw_parts = {}, body = {}, t0 = now_ms() }
  if opts and opts.head then
    self.parser:no_body()
  end
  self.tcp:write(raw)
end

function Conn:data(chunk)
  local p = self.pending
  if not p then
    self.extra = (self.extra or "") .. chunk
    return
  end
  p.raw_parts[#p.raw_parts + 1] = chunk
  local evs, err = self.parser:execute(chunk)
  if not evs then
    self:fail(err)
    return
  end
  for _, ev in ipairs(evs) do
    if ev.type == "head" then
      p.res = { status = ev.status, reason = ev.reason, headers = {}, list = ev.headers,
        chunked = ev.chunked, length = ev.length, keep_alive = ev.keep_alive }
      for _, h in ipairs(ev.headers) do
        p.res.headers[h[1]:lower()] = h[2]
      end
    elseif ev.type == "body" then
      p.body[#p.body + 1] = chunk:sub(ev.from, ev.to)
      if p.on_body then
        p.on_body(chunk:sub(ev.from, ev.to))
      end
    elseif ev.type == "done" then
      if p.res.status >= 200 or p.res.status == 101 then
        self:complete()
        return
      end
    elseif ev.type == "upgrade" then
      self:complete()
      return
    end
  end
end

function Conn:complete()
  local p = self.pending
  self.pending = nil
  local res = p.res
  res.body = table.concat(p.body)
  res.raw = table.concat(p.raw_parts)
  res.ms = now_ms() - p.t0
  p.fn(res)
end

function Conn:fail(err)
  local p = self.pending
  self.pending = nil
  self:close()
  if p then
    p.fn(nil, tostring(err))
  end
end

function Conn:eof(err)
  local p = self.pending
  if p and p.res and not p.done then
    local evs = self.parser:finish()
    if evs and #evs > 0 then
      self:complete()
      self:close()
      return
    end
  end
  self.eofed = true
  self:fail(err)
end

function Conn:close()
  if self.closed then
    return
  end
  self.closed = true
  if not self.tcp:is_closing() then
    self.tcp:close()
  end
  self.parser:close()
end

--- GET path with these extra header lines; a request for a keep-alive connection.
function M.get(path, headers)
  local lines = { "GET " .. path .. " HTTP/1.1", "Host: 127.0.0.1" }
  for _, h in ipairs(headers or {}) do
    lines[#lines + 1] = h
  end
  return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

-- Server-sent events ---------------------------------------------------------------------------

--- Reads /__reload/events: self.events gets { name =, data = } for each event, in order.
function M.events(port, path)
  local self = { events = {}, buf = "", open = false }
  self.conn = M.connect(port, function(conn, err)
    if not conn then
      self.error = err
      return
    end
    self.open = true
    conn.pending = nil
    -- The stream never ends: read raw bytes past the head.
    conn.data = function(_, chunk)
      self.buf = self.buf .. chunk
      if not self.head_seen then
        local at = self.buf:find("\r\n\r\n", 1, true)
        if not at then
          return
        end
        self.status = tonumber(self.buf:match("^HTTP/1%.%d (%d+)"))
        self.buf = self.buf:sub(at + 4)
        self.head_seen = true
      end
      while true do
        local at = self.buf:find("\n\n", 1, true)
        if not at then
          break
        end
        local block = self.buf:sub(1, at)
        self.buf = self.buf:sub(at + 2)
        local name = block:match("^event: ([^\n]*)") or block:match("\nevent: ([^\n]*)")
        local data = block:match("data: ([^\n]*)")
        if name then
          self.events[#self.events + 1] = { name = name, data = data }
        end
      end
    end
    conn.tcp:write(M.get(path or "/__reload/events", { "Accept: text/event-stream" }))
  end)
  function self.close()
    self.conn:close()
  end
  --- The events named `name` so far.
  function self.named(name)
    local out = {}
    for _, e in ipairs(self.events) do
      if e.name == name then
        out[#out + 1] = e
      end
    end
    return out
  end
  return self
end

-- Load --------------------------------------------------------------------------------------

--- A steady load: `connections` keep-alive connections, each sending GET `path` again as soon
--- as the previous answer came (a new connection after a failure or a close). Counts answers by
--- status, refused connections and failed requests, and keeps every latency with its start time.
---@param port integer
---@param opts { connections: integer, path: string, check?: fun(res): boolean,
--- label?: fun(res): any } label: kept with each sample (e.g. which version answered)
function M.load(port, opts)
  local self = { ok = 0, bad = 0, refused = 0, failed = 0, statuses = {}, samples = {},
    running = true, conns = {}, errors = {} }
  local request = M.get(opts.path, opts.headers) -- "Connection: close": one per request
  local function note(err)
    if #self.errors < 20 then
      self.errors[#self.errors + 1] = tostring(err)
    end
  end
  local function loop(slot)
    local function go(conn)
      if not self.running then
        conn:close()
        return
      end
      local t0 = now_ms()
      conn:request(request, function(res, err)
        if not res and not self.running then
          return -- cut by stop(): not part of the measurement
        end
        if not res then
          self.failed = self.failed + 1
          note(err)
          self.conns[slot] = nil
          if self.running then
            loop(slot)
          end
          return
        end
        self.statuses[res.status] = (self.statuses[res.status] or 0) + 1
        self.samples[#self.samples + 1] = { t = t0, ms = res.ms,
          label = opts.label and opts.label(res) }
        if res.status == 200 and (not opts.check or opts.check(res)) then
          self.ok = self.ok + 1
        else
          self.bad = self.bad + 1
          note(("status %d: %s"):format(res.status, res.body:sub(1, 200)))
        end
        if not res.keep_alive then
          conn:close()
          self.conns[slot] = nil
          if self.running then
            loop(slot)
          end
          return
        end
        go(conn)
      end)
    end
    self.conns[slot] = M.connect(port, function(conn, err)
      if not conn and not self.running then
        return -- cancelled by stop()
      end
      if not conn then
        self.refused = self.refused + 1
        note(err)
        self.conns[slot] = nil
        if self.running then
          -- A client retries after a refusal; count it and try again shortly.
          local t = uv.new_timer()
          t:start(5, 0, function()
            t:close()
            if self.running then
              loop(slot)
            end
          end)
        end
        return
      end
      go(conn)
    end)
  end
  for i = 1, opts.connections do
    loop(i)
  end
  --- Stops sending; connections close as their current request ends (or now).
  function self.stop()
    self.running = false
    for _, c in pairs(self.conns) do
      c:close()
    end
    self.conns = {}
  end
  --- The p-th percentile (0-100) of latencies of requests started in [from, to) (ms clock).
  function self.percentile(p, from, to)
    local list = {}
    for _, s in ipairs(self.samples) do
      if (not from or s.t >= from) and (not to or s.t < to) then
        list[#list + 1] = s.ms
      end
    end
    if #list == 0 then
      return nil, 0
    end
    table.sort(list)
    return list[math.max(1, math.ceil(#list * p / 100))], #list
  end
  return self
end

M.now_ms = now_ms

return M
