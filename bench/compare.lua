--- reload side by side with the tools users would pick instead (entr, reflex, nodemon, an
--- inotifywait loop), on one fixture: bench/fixture/server.c under a `sh -> sh -> server` chain
--- (and one whose server calls setsid). Not part of the test suite; run by bench/run.
---
---   lua5.4 bench/compare.lua [--quick] [--changes N] [--only TOOL]   (TOOL: a row's name)
---
--- Per tool and chain: start the tool, then N times write the watched file (recording
--- uv.hrtime()) and read the server's stamps (CLOCK_MONOTONIC at main() and after listen()).
--- Each generation's processes carry BENCH_GEN=<n> in /proc/PID/environ, so processes of an
--- earlier generation still alive after a restart are counted exactly; they are then killed so
--- that every change is measured on its own. Prints markdown.
local uv = require("luv")

local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local lib = require("lib")

local quick, changes, only = false, nil, nil
do
  local i = 1
  while arg[i] do
    if arg[i] == "--quick" then quick = true
    elseif arg[i] == "--changes" then i = i + 1; changes = tonumber(arg[i])
    elseif arg[i] == "--only" then i = i + 1; only = arg[i]
    else error("usage: lua5.4 bench/compare.lua [--quick] [--changes N] [--only TOOL]") end
    i = i + 1
  end
end
changes = changes or (quick and 8 or 30)

local root = uv.fs_realpath(here .. "/..")
local build = os.getenv("RELOAD_BUILD_DIR") or (root .. "/build")
local reload = build .. "/bin/reload"
local server = build .. "/bench/server"
local nodemon = root .. "/bench/.peers/node_modules/.bin/nodemon"

local function which(name)
  local p = io.popen("command -v " .. name .. " 2>/dev/null")
  local s = p and p:read("l")
  if p then p:close() end
  return s and s ~= "" and s or nil
end

-- The command every tool runs, from the fixture directory: reads the generation the bench
-- wrote, puts it in the environment of sh -> sh -> server (`; true` keeps each shell alive).
local function command(port, stamps, setsid)
  local srv = ("%s %d %s%s"):format(server, port, stamps, setsid and " --setsid" or "")
  return ("read g < src/gen.txt; export BENCH_GEN=$g; exec sh -c 'sh -c \"%s; true\"; true'")
    :format(srv)
end

---@class Tool
---@field name string
---@field needs string|nil   executable that must exist
---@field argv fun(cmd: string): string[]
local tools = {
  { name = "reload", needs = reload, argv = function(cmd)
    return { reload, "run", "-w", "src/gen.txt", "--", "sh", "-c", cmd }
  end },
  { name = "reload --debounce 0", needs = reload, argv = function(cmd)
    return { reload, "run", "--debounce", "0", "-w", "src/gen.txt", "--", "sh", "-c", cmd }
  end },
  { name = "entr -r", needs = which("entr"), argv = function(cmd)
    return { "sh", "-c", "echo src/gen.txt | exec entr -n -r sh -c " .. lib.q(cmd) }
  end },
  { name = "reflex -s", needs = which("reflex"), argv = function(cmd)
    return { "reflex", "-r", "^src/gen\\.txt$", "-s", "--", "sh", "-c", cmd }
  end },
  { name = "nodemon --delay 0", needs = uv.fs_access(nodemon, "X") and nodemon or nil,
    argv = function(cmd)
      return { nodemon, "--delay", "0", "-w", "src", "-e", "txt", "--exec", cmd }
    end },
  { name = "inotifywait loop", needs = which("inotifywait"), argv = function(cmd)
    -- what a shell user writes: restart on every close_write, kill the child it started
    local loop = ("(%s) & p=$!; while inotifywait -qq -e close_write src; do "
      .. "kill $p; wait $p; (%s) & p=$!; done"):format(cmd, cmd)
    return { "sh", "-c", loop }
  end },
}

local base_env = {}
for k, v in pairs(uv.os_environ()) do
  if k ~= "BENCH_GEN" then base_env[#base_env + 1] = k .. "=" .. v end
end

--- Stamp lines of the fixture: { gen, pid, start_ms, listen_ms, status }.
local function stamps(path)
  local out = {}
  for line in (lib.read(path) or ""):gmatch("[^\n]+") do
    local gen, pid, s, l, st = line:match("^(%-?%d+) (%d+) (%d+) (%d+) (%S+)")
    if gen then
      out[#out + 1] = { gen = tonumber(gen), pid = tonumber(pid), start = tonumber(s) / 1e6,
        listen = tonumber(l) / 1e6, status = st }
    end
  end
  return out
end

local function kill_marked(marker, below_gen)
  local n = 0
  for _, p in ipairs(lib.marked(marker)) do
    local g = tonumber(p.env:match("%zBENCH_GEN=(%-?%d+)") or p.env:match("^BENCH_GEN=(%-?%d+)"))
    if g and (below_gen == nil or g < below_gen) then
      n = n + 1
      uv.kill(p.pid, "sigkill")
    end
  end
  return n
end

--- Processes of a generation below `gen` alive now.
local function survivors(marker, gen)
  local n = 0
  for _, p in ipairs(lib.marked(marker)) do
    local g = tonumber(p.env:match("%zBENCH_GEN=(%-?%d+)") or p.env:match("^BENCH_GEN=(%-?%d+)"))
    if g and g < gen then n = n + 1 end
  end
  return n
end

--- Starts `tool` in a fresh fixture directory; returns a session or nil, why.
local function start(tool, setsid)
  local dir = assert(uv.fs_mkdtemp("/tmp/reload-cmp-XXXXXX"))
  assert(uv.fs_mkdir(dir .. "/src", 448))
  lib.write(dir .. "/src/gen.txt", "0\n")
  local port = lib.free_port()
  local stampfile = dir .. "/stamps"
  local marker = ("BENCH_MARK=%d-%d"):format(uv.os_getpid(), uv.hrtime())
  local env = { marker }
  table.move(base_env, 1, #base_env, 2, env)
  local log = assert(uv.fs_open(dir .. "/tool.log", "w", 420))
  local argv = tool.argv(command(port, stampfile, setsid))
  local handle, pid = uv.spawn(argv[1], { args = { table.unpack(argv, 2) }, cwd = dir, env = env,
    stdio = { nil, log, log }, detached = true }, function() end)
  uv.fs_close(log)
  if not handle then return nil, tostring(pid) end
  local s = { dir = dir, port = port, stampfile = stampfile, marker = marker, handle = handle,
    pid = pid }
  local t0 = lib.now_ms()
  if not lib.wait(20000, function() return #stamps(stampfile) > 0 end, 2) then
    s.failed = "no first start within 20 s"
  end
  s.first_ms = lib.now_ms() - t0
  -- let the tool settle its watches (nodemon, reflex scan after starting the command)
  lib.wait(quick and 300 or 500)
  return s
end

local function stop(s)
  pcall(uv.kill, -s.pid, "sigterm")
  lib.wait(2000, function() return not uv.kill(s.pid, 0) or s.handle:is_closing() end, 5)
  pcall(uv.kill, -s.pid, "sigkill")
  lib.wait(100)
  kill_marked(s.marker)
  if not s.handle:is_closing() then s.handle:close() end
  uv.run("nowait")
  os.execute("rm -rf " .. lib.q(s.dir))
end

--- N changes; returns per-change figures.
local function measure(tool, setsid, n)
  local s, err = start(tool, setsid)
  local r = { started = {}, answering = {}, survivors = 0, eaddrinuse = 0, extra = 0, missed = 0,
    first_ms = 0, n = n }
  if not s then r.failed = err return r end
  r.first_ms = s.first_ms
  if s.failed then r.failed = s.failed stop(s) return r end
  local seen = #stamps(s.stampfile)
  for gen = 1, n do
    local t0 = lib.now_ms()
    lib.write(s.dir .. "/src/gen.txt", gen .. "\n")
    local mine
    lib.wait(3000, function()
      for _, st in ipairs(stamps(s.stampfile)) do
        if st.gen == gen then mine = st return true end
      end
      return false
    end, 1)
    -- a quiet spell: extra starts for one change, survivors still alive after it
    lib.wait(quick and 150 or 200)
    local all = stamps(s.stampfile)
    if mine then
      r.started[#r.started + 1] = mine.start - t0
      if mine.status == "ok" then
        r.answering[#r.answering + 1] = mine.listen - t0
        local tcp = uv.new_tcp()
        local got
        tcp:connect("127.0.0.1", s.port, function(e)
          if e then got = "" tcp:close() return end
          tcp:read_start(function(_, chunk) got = chunk or "" tcp:close() end)
        end)
        lib.wait(1000, function() return got ~= nil end)
        if tonumber(got) ~= gen then r.wrong_answer = (r.wrong_answer or 0) + 1 end
      end
    else
      r.missed = r.missed + 1
    end
    for i = seen + 1, #all do
      if all[i].status == "eaddrinuse" then r.eaddrinuse = r.eaddrinuse + 1 end
    end
    r.extra = r.extra + math.max(0, #all - seen - 1)
    seen = #all
    r.survivors = r.survivors + survivors(s.marker, gen)
    kill_marked(s.marker, gen)
  end
  if os.getenv("BENCH_KEEP") then -- keep the stamps for a closer look
    local name = tool.name:gsub("%W", "") .. (setsid and "-setsid" or "")
    os.execute(("cp %s /tmp/bench-stamps-%s"):format(lib.q(s.stampfile), name))
  end
  stop(s)
  return r
end

local results = {}
for _, tool in ipairs(tools) do
  for _, setsid in ipairs({ false, true }) do
    local key = tool.name .. (setsid and " (setsid)" or "")
    io.stderr:write(("compare: %s, %d changes\n"):format(key, changes))
    if only and tool.name ~= only and tool.name ~= "reload" then
      results[key] = { failed = "skipped (--only)", started = {}, answering = {} }
    elseif tool.needs then
      results[key] = measure(tool, setsid, changes)
    else
      results[key] = { failed = "not installed (run bench/setup)", started = {}, answering = {} }
    end
  end
end

local base = results["reload"]
local function ratio(xs)
  local b = base and lib.pct(base.answering, 50)
  local v = lib.pct(xs, 50)
  if not b or not v or b == 0 then return "-" end
  return ("%.2f"):format(v / b)
end

print(("\n## 1–2. Change → restart, old generation gone (%d changes per tool, same run)\n")
  :format(changes))
print("Started = change written → fixture's main(); answering = change → its listen() "
  .. "returned (confirmed by a GET answering the new generation). Median (p10–p90).\n")
print("| tool | chain | started | answering | vs reload (answering p50) | answering p90 "
  .. "| old-gen survivors | EADDRINUSE | extra starts | missed |")
print("|---|---|---|---|---|---|---|---|---|---|")
for _, tool in ipairs(tools) do
  for _, setsid in ipairs({ false, true }) do
    local r = results[tool.name .. (setsid and " (setsid)" or "")]
    local chain = setsid and "sh→sh→server+setsid" or "sh→sh→server"
    if r.failed then
      print(("| %s | %s | %s | | | | | | | |"):format(tool.name, chain, r.failed))
    else
      local p90 = lib.pct(r.answering, 90)
      print(("| %s | %s | %s | %s | %s | %s | %d | %d | %d | %d%s |"):format(tool.name, chain,
        lib.fig(r.started), lib.fig(r.answering), ratio(r.answering),
        p90 and ("%.1f ms"):format(p90) or "-", r.survivors, r.eaddrinuse, r.extra, r.missed,
        r.wrong_answer and (" (%d wrong answers)"):format(r.wrong_answer) or ""))
    end
  end
end

local function target(label, ok)
  print(("| %s | %s |"):format(label, lib.yes(ok)))
end
local d0 = results["reload --debounce 0"]
local r, rs = results["reload"], results["reload (setsid)"]
local d0s = results["reload --debounce 0 (setsid)"]
print("\n| target (reload) | |")
print("|---|---|")
target("change → answering p50 < 10 ms (default debounce)",
  not r.failed and (lib.pct(r.answering, 50) or 1e9) < 10)
target("change → answering p50 < 3 ms (--debounce 0)",
  not d0.failed and (lib.pct(d0.answering, 50) or 1e9) < 3)
local surv, inuse = 0, 0
for _, x in ipairs({ r, rs, d0, d0s }) do
  surv, inuse = surv + (x.survivors or 1), inuse + (x.eaddrinuse or 1)
end
target(("zero old-generation survivors (%d)"):format(surv), surv == 0)
target(("zero EADDRINUSE (%d)"):format(inuse), inuse == 0)
