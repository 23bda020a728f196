--- Zero-downtime benchmark: a steady load from this process against a server that reload
--- restarts N times, with and without the dev proxy in front of it, and with and without socket
--- handoff (`listen`), in the same run.
---
---   lua5.4 bench/proxy.lua [--restarts N] [--connections C]     (after scripts/build)
---
--- The server is spec/fixtures/httpserve.js (Node's http, keep-alive), which dies at once on
--- SIGTERM as most dev servers do. The load is C keep-alive connections, each sending GET /text
--- as soon as its previous answer came (spec/support/httpc.lua); a refused connection is counted
--- and tried again 5 ms later. Each restart is an edit of msg.txt; its restart time runs from the
--- edit to the first answer that shows the new text, and the requests started in that window
--- are "during restarts". The handoff rows use spec/fixtures/handoff.js, which serves fd 3
--- when reload passes it and stops gracefully on SIGTERM (a server that dies at once cuts the
--- requests it accepted, handoff or not: docs/sockets.md), under a load of one request per
--- connection, and the same load without handoff beside it; then keep-alive connections with
--- handoff. Prints markdown tables. bench/run can call it as
--- `lua5.4 bench/proxy.lua` and append the table to its report.
local uv = require("luv")

local root = (debug.getinfo(1, "S").source:sub(2):match("^(.*)/bench/[^/]*$")) or uv.cwd()
local build_dir = os.getenv("RELOAD_BUILD_DIR") or (root .. "/build")
package.cpath = build_dir .. "/lib/?.so;" .. package.cpath
package.path = root .. "/bench/?.lua;" .. root .. "/?.lua;" .. root .. "/lua/?.lua;" ..
  package.path
local lib = require("lib")
local httpc = require("spec.support.httpc")

local restarts, connections = 20, 16
do
  local args = _G.arg or {}
  local i = 1
  while args[i] do
    if args[i] == "--restarts" then
      restarts = assert(math.tointeger(tonumber(args[i + 1])), "--restarts N")
      i = i + 1
    elseif args[i] == "--connections" then
      connections = assert(math.tointeger(tonumber(args[i + 1])), "--connections C")
      i = i + 1
    end
    i = i + 1
  end
end

local reload_bin = build_dir .. "/bin/reload"
local server_js = root .. "/spec/fixtures/httpserve.js"
local handoff_js = root .. "/spec/fixtures/handoff.js"

local function write(path, s)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "w"))
  f:write(s)
  f:close()
  assert(os.rename(tmp, path))
end

--- Starts reload in a new project; returns { pid, output, stop() }.
local function start_reload(dir, reloadfile)
  write(dir .. "/msg.txt", "v0")
  write(dir .. "/Reloadfile.lua", reloadfile)
  local out, err = uv.new_pipe(false), uv.new_pipe(false)
  local self = { output = {} }
  local handle, pid
  handle, pid = uv.spawn(reload_bin, { args = { "-v" }, cwd = dir,
    stdio = { nil, out, err }, env = lib.env_with("NO_COLOR=1") }, function(code, sig)
    self.exit = sig ~= 0 and 128 + sig or code
    handle:close()
  end)
  assert(handle, pid)
  self.pid = pid
  for _, p in ipairs({ out, err }) do
    p:read_start(function(_, chunk)
      if chunk then
        self.output[#self.output + 1] = chunk
      else
        p:close()
      end
    end)
  end
  function self.text()
    return table.concat(self.output)
  end
  function self.stop()
    uv.kill(pid, "sigint")
    lib.wait(20000, function() return self.exit ~= nil end)
  end
  return self
end

--- opts: proxied, handoff (listen = the port), js (the server), headers (of each request)
local function one_mode(name, opts)
  local dir = assert(uv.fs_mkdtemp((os.getenv("TMPDIR") or "/tmp") .. "/reload-bench-XXXXXX"))
  local to, listen = lib.free_port(), nil
  local extra = ""
  if opts.proxied then
    listen = lib.free_port()
    extra = ("  proxy = { listen = %d, to = %d },\n"):format(listen, to)
  end
  if opts.handoff then
    extra = extra .. ("  listen = %d,\n"):format(to)
  end
  local r = start_reload(dir, ([[
service "web" {
  watch = { "msg.txt" },
  run = { "sh", "-c", "exec node %s %d \"$(cat msg.txt)\"" },
  ready = { port = %d },
%s}
]]):format(opts.js or server_js, to, to, extra))
  local port = listen or to
  -- Up before the load starts (the first start is not what is measured).
  assert(lib.wait(20000, function() return r.text():find("ready after", 1, true) ~= nil end),
    "reload did not start:\n" .. r.text())
  lib.wait(300)
  local load = httpc.load(port, { connections = connections, path = "/text",
    headers = opts.headers, label = function(res) return res.body end })
  lib.wait(1000) -- steady state first
  local windows = {}
  for i = 1, restarts do
    local t_edit = lib.now_ms()
    write(dir .. "/msg.txt", "v" .. i)
    local want = "v" .. i
    local seen_at
    local ok = lib.wait(30000, function()
      for j = #load.samples, 1, -1 do
        local s = load.samples[j]
        if s.t + s.ms < t_edit then
          break
        end
        if s.label == want then
          seen_at = s.t + s.ms
        end
      end
      return seen_at ~= nil
    end, 2)
    if not ok then
      io.stderr:write(("bench/proxy: %s: restart %d never answered\n"):format(name, i))
      seen_at = lib.now_ms()
    end
    windows[#windows + 1] = { from = t_edit, to = seen_at }
    lib.wait(400) -- steady again before the next edit
  end
  load.stop()
  lib.wait(200)
  r.stop()
  os.execute("rm -rf " .. lib.q(dir))
  -- Latencies: requests started in a restart window, and the others.
  local during, steady, restart_ms = {}, {}, {}
  for _, w in ipairs(windows) do
    restart_ms[#restart_ms + 1] = w.to - w.from
  end
  for _, s in ipairs(load.samples) do
    local inside = false
    for _, w in ipairs(windows) do
      if s.t >= w.from and s.t <= w.to then
        inside = true
        break
      end
    end
    if inside then
      during[#during + 1] = s.ms
    else
      steady[#steady + 1] = s.ms
    end
  end
  local restarted = select(2, r.text():gsub("restarted in", ""))
  return {
    name = name, restarts = restarted, requests = #load.samples + load.failed,
    ok = load.ok, refused = load.refused, failed = load.failed, bad = load.bad,
    restart = restart_ms, during = during, steady = steady, errors = load.errors,
  }
end

local function ms(x)
  return x and ("%.1f ms"):format(x) or "-"
end

local function table_of(rows)
  print("| mode | restarts | requests | refused connections | failed requests | non-200 |" ..
    " restart time median (max) | p99 during restarts | p99 steady |")
  print("|---|---|---|---|---|---|---|---|---|")
  for _, r in ipairs(rows) do
    print(("| %s | %d | %d | %d | %d | %d | %s (%s) | %s (%d req) | %s |"):format(r.name,
      r.restarts, r.requests, r.refused, r.failed, r.bad, ms(lib.pct(r.restart, 50)),
      ms(lib.pct(r.restart, 100)), ms(lib.pct(r.during, 99)), #r.during,
      ms(lib.pct(r.steady, 99))))
  end
  print()
end

local close = { "Connection: close" }
local rows = {
  one_mode("no proxy (what users see today)", {}),
  one_mode("dev proxy", { proxied = true }),
}
local handoff_rows = {
  one_mode("no handoff, graceful server", { js = handoff_js, headers = close }),
  one_mode("socket handoff (`listen`)", { js = handoff_js, handoff = true, headers = close }),
  one_mode("socket handoff, keep-alive load", { js = handoff_js, handoff = true }),
}
print(("### Zero-downtime: %d restarts under a steady load (%d keep-alive connections, GET)")
  :format(restarts, connections))
print()
table_of(rows)
print(("### Socket handoff: %d restarts, %d clients each sending one request per connection " ..
  "(Connection: close), a server that stops gracefully"):format(restarts, connections))
print()
table_of(handoff_rows)
for _, r in ipairs(handoff_rows) do
  rows[#rows + 1] = r
end
print("Restart time: from the edit to the first answer showing the new text (Node's start-up" ..
  " included). A refused connection is retried 5 ms later, and counted each time.")
for _, r in ipairs(rows) do
  if #r.errors > 0 then
    print(("\n%s, first errors: %s"):format(r.name, table.concat(r.errors, "; "):sub(1, 400)))
  end
end
