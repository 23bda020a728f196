--- reload side by side with the tools users would pick instead (entr, reflex, nodemon, an
--- inotifywait loop), on one fixture: bench/fixture/server.c run directly, under a
--- `sh -> sh -> server` chain, and under one whose server calls setsid. The command alone,
--- spawned by the bench itself, gives each shape's floor: what no tool can go below. Not part
--- of the test suite; run by bench/run.
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

---@class Shape
---@field key string
---@field label string
---@field setsid boolean the server leaves its process group and session
---@field direct boolean the tool runs the server itself (argv, no shell)
local shapes = {
  { key = "direct", label = "server", setsid = false, direct = true },
  { key = "chain", label = "sh→sh→server", setsid = false, direct = false },
  { key = "setsid", label = "sh→sh→server+setsid", setsid = true, direct = false },
}

--- The command of a shape, from the fixture directory, as argv. Direct: the server reads the
--- generation from the watched file itself. Chain: sh reads it and exports it to
--- sh -> sh -> server (`; true` keeps each shell alive).
local function command(shape, port, stamps)
  if shape.direct then
    return { server, tostring(port), stamps, "--gen-file", "src/gen.txt" }
  end
  local srv = ("%s %d %s%s"):format(server, port, stamps, shape.setsid and " --setsid" or "")
  return { "sh", "-c",
    ("read g < src/gen.txt; export BENCH_GEN=$g; exec sh -c 'sh -c \"%s; true\"; true'")
      :format(srv) }
end

--- argv as one shell word list (for the tools that take a command string).
local function shell_words(argv)
  local out = {}
  for i, a in ipairs(argv) do out[i] = lib.q(a) end
  return table.concat(out, " ")
end

---@class Tool
---@field name string
---@field needs string|nil   executable that must exist
---@field argv fun(cmd: string[]): string[]
local tools = {
  { name = "reload", needs = reload, argv = function(cmd)
    return { reload, "run", "-w", "src/gen.txt", "--", table.unpack(cmd) }
  end },
  { name = "reload --debounce 0", needs = reload, argv = function(cmd)
    return { reload, "run", "--debounce", "0", "-w", "src/gen.txt", "--", table.unpack(cmd) }
  end },
  { name = "entr -r", needs = lib.which("entr"), argv = function(cmd)
    return { "sh", "-c", "echo src/gen.txt | exec entr -n -r " .. shell_words(cmd) }
  end },
  { name = "reflex -s", needs = lib.which("reflex"), argv = function(cmd)
    return { "reflex", "-r", "^src/gen\\.txt$", "-s", "--", table.unpack(cmd) }
  end },
  { name = "nodemon --delay 0", needs = uv.fs_access(nodemon, "X") and nodemon or nil,
    argv = function(cmd)
      return { nodemon, "--delay", "0", "-w", "src", "-e", "txt", "--exec", shell_words(cmd) }
    end },
  { name = "inotifywait loop", needs = lib.which("inotifywait"), argv = function(cmd)
    -- what a shell user writes: restart on every close_write, kill the child it started
    local c = shell_words(cmd)
    local loop = ("(%s) & p=$!; while inotifywait -qq -e close_write src; do "
      .. "kill $p; wait $p; (%s) & p=$!; done"):format(c, c)
    return { "sh", "-c", loop }
  end },
}

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

--- Processes of a generation below `gen` (any generation when nil) alive now, by the
--- BENCH_GEN in their environment; killed when `kill` is set. Returns how many.
local function earlier_gen(marker, gen, kill)
  local n = 0
  for _, p in ipairs(lib.marked(marker)) do
    local g = tonumber(p.env:match("%zBENCH_GEN=(%-?%d+)") or p.env:match("^BENCH_GEN=(%-?%d+)"))
    if g and (gen == nil or g < gen) then
      n = n + 1
      if kill then uv.kill(p.pid, "sigkill") end
    end
  end
  return n
end

--- Direct shape (no BENCH_GEN in any environment): servers of a generation below `gen` that
--- are still alive, by the pids of their stamps; killed when `kill` is set.
local function stamped_alive(stampfile, gen, kill)
  local n = 0
  for _, st in ipairs(stamps(stampfile)) do
    local stat = st.gen < gen and lib.read("/proc/" .. st.pid .. "/stat")
    if stat and stat:match("%(server%) [^Z]") then
      n = n + 1
      if kill then uv.kill(st.pid, "sigkill") end
    end
  end
  return n
end

--- A fresh fixture directory (src/gen.txt holding 0), a free port, the stamp file, and a
--- session marker with the environment that carries it.
local function fixture()
  local dir = assert(uv.fs_mkdtemp("/tmp/reload-cmp-XXXXXX"))
  assert(uv.fs_mkdir(dir .. "/src", 448))
  lib.write(dir .. "/src/gen.txt", "0\n")
  local marker = ("BENCH_MARK=%d-%d"):format(uv.os_getpid(), uv.hrtime())
  return dir, lib.free_port(), dir .. "/stamps", marker, lib.env_with(marker)
end

--- Waits (up to 3 s) for the stamp of generation `gen`; returns it or nil.
local function wait_gen(stampfile, gen)
  local mine
  lib.wait(3000, function()
    for _, st in ipairs(stamps(stampfile)) do
      if st.gen == gen then mine = st return true end
    end
    return false
  end, 1)
  return mine
end

--- Starts `tool` in a fresh fixture directory; returns a session or nil, why.
local function start(tool, shape)
  local dir, port, stampfile, marker, env = fixture()
  local log = assert(uv.fs_open(dir .. "/tool.log", "w", 420))
  local argv = tool.argv(command(shape, port, stampfile))
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
  earlier_gen(s.marker, nil, true)
  if not s.handle:is_closing() then s.handle:close() end
  uv.run("nowait")
  os.execute("rm -rf " .. lib.q(s.dir))
end

--- N changes; returns per-change figures.
local function measure(tool, shape, n)
  local s, err = start(tool, shape)
  local r = { started = {}, answering = {}, survivors = 0, eaddrinuse = 0, extra = 0, missed = 0,
    first_ms = 0, n = n }
  if not s then r.failed = err return r end
  r.first_ms = s.first_ms
  if s.failed then r.failed = s.failed stop(s) return r end
  local seen = #stamps(s.stampfile)
  for gen = 1, n do
    local t0 = lib.now_ms()
    lib.write(s.dir .. "/src/gen.txt", gen .. "\n")
    local mine = wait_gen(s.stampfile, gen)
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
    if shape.direct then
      r.survivors = r.survivors + stamped_alive(s.stampfile, gen, true)
    else
      r.survivors = r.survivors + earlier_gen(s.marker, gen, true)
    end
  end
  if os.getenv("BENCH_KEEP") then -- keep the stamps for a closer look
    local name = tool.name:gsub("%W", "") .. "-" .. shape.key
    os.execute(("cp %s /tmp/bench-stamps-%s"):format(lib.q(s.stampfile), name))
  end
  stop(s)
  return r
end

--- The shape's floor: the bench spawns the command itself (no tool), n times; spawn → main()
--- and spawn → listen() returned.
local function floor(shape, n)
  local dir, port, stampfile, marker, env = fixture()
  local argv = command(shape, port, stampfile)
  local r = { started = {}, answering = {}, n = n }
  for gen = 1, n do
    lib.write(dir .. "/src/gen.txt", gen .. "\n")
    local t0 = lib.now_ms()
    local handle = uv.spawn(argv[1], { args = { table.unpack(argv, 2) }, cwd = dir, env = env,
      detached = true }, function() end)
    local mine = wait_gen(stampfile, gen)
    if mine and mine.status == "ok" then
      r.started[#r.started + 1] = mine.start - t0
      r.answering[#r.answering + 1] = mine.listen - t0
    end
    earlier_gen(marker, nil, true)
    stamped_alive(stampfile, gen + 1, true)
    lib.wait(2000, function() return lib.port_free(port) end, 1)
    if handle and not handle:is_closing() then handle:close() end
  end
  uv.run("nowait")
  os.execute("rm -rf " .. lib.q(dir))
  return r
end

local results, floors = {}, {}
for _, shape in ipairs(shapes) do
  io.stderr:write(("compare: the command alone (%s), %d runs\n"):format(shape.label, changes))
  floors[shape.key] = floor(shape, changes)
end
for _, tool in ipairs(tools) do
  for _, shape in ipairs(shapes) do
    local key = tool.name .. " " .. shape.key
    io.stderr:write(("compare: %s (%s), %d changes\n"):format(tool.name, shape.label, changes))
    if only and tool.name ~= only and tool.name ~= "reload" then
      results[key] = { failed = "skipped (--only)", started = {}, answering = {} }
    elseif tool.needs then
      results[key] = measure(tool, shape, changes)
    else
      results[key] = { failed = "not installed (run bench/setup)", started = {}, answering = {} }
    end
  end
end

--- answering p50 of xs over reload's (default settings) on the same shape.
local function ratio(xs, shape)
  local base = results["reload " .. shape.key]
  local b = base and lib.pct(base.answering, 50)
  local v = lib.pct(xs, 50)
  if not b or not v or b == 0 then return "-" end
  return ("%.2f"):format(v / b)
end

--- answering p50 above the shape's floor (what the tool itself costs).
local function over_floor(xs, shape)
  local f = lib.pct(floors[shape.key].answering, 50)
  local v = lib.pct(xs, 50)
  if not f or not v then return "-" end
  return ("%+.1f ms"):format(v - f)
end

print(("\n## 1–2. Change → restart, old generation gone (%d changes per tool, same run)\n")
  :format(changes))
print("Started = change written → fixture's main(); answering = change → its listen() "
  .. "returned (confirmed by a GET answering the new generation). Median (p10–p90). "
  .. "*Floor*: the bench spawns the command itself, no tool and no change to notice: each "
  .. "shell or exec on the way costs the same for every tool; *over floor* is what the tool "
  .. "adds.\n")
print("| tool | command | started | answering | vs reload (answering p50) | over floor "
  .. "| answering p90 | old-gen survivors | EADDRINUSE | extra starts | missed |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for _, shape in ipairs(shapes) do
  local f = floors[shape.key]
  print(("| *floor: the command alone* | %s | %s | %s | - | - | %s | - | - | - | - |"):format(
    shape.label, lib.fig(f.started), lib.fig(f.answering),
    lib.pct(f.answering, 90) and ("%.1f ms"):format(lib.pct(f.answering, 90)) or "-"))
end
for _, tool in ipairs(tools) do
  for _, shape in ipairs(shapes) do
    local r = results[tool.name .. " " .. shape.key]
    if r.failed then
      print(("| %s | %s | %s | | | | | | | | |"):format(tool.name, shape.label, r.failed))
    else
      local p90 = lib.pct(r.answering, 90)
      print(("| %s | %s | %s | %s | %s | %s | %s | %d | %d | %d | %d%s |"):format(tool.name,
        shape.label, lib.fig(r.started), lib.fig(r.answering), ratio(r.answering, shape),
        over_floor(r.answering, shape), p90 and ("%.1f ms"):format(p90) or "-", r.survivors,
        r.eaddrinuse, r.extra, r.missed,
        r.wrong_answer and (" (%d wrong answers)"):format(r.wrong_answer) or ""))
    end
  end
end

local function target(label, ok)
  print(("| %s | %s |"):format(label, lib.yes(ok)))
end
local function p50(key)
  local x = results[key]
  return not x.failed and lib.pct(x.answering, 50) or 1e9
end
--- The fastest peer's answering p50 on a shape (nil if none ran).
local function fastest_peer(shape)
  local best
  for _, tool in ipairs(tools) do
    if not tool.name:match("^reload") then
      local v = p50(tool.name .. " " .. shape.key)
      if v < 1e9 and (not best or v < best.v) then best = { v = v, name = tool.name } end
    end
  end
  return best
end
print("\n| target (reload) | |")
print("|---|---|")
target(("change → answering p50 < 10 ms, default debounce, server (%.1f ms)")
  :format(p50("reload direct")), p50("reload direct") < 10)
target(("change → answering p50 < 3 ms, --debounce 0, server (%.1f ms)")
  :format(p50("reload --debounce 0 direct")), p50("reload --debounce 0 direct") < 3)
for _, shape in ipairs(shapes) do
  local best = fastest_peer(shape)
  if best then
    local mine = p50("reload --debounce 0 " .. shape.key)
    target(("as fast as the fastest peer at its lowest setting, %s (%.1f ms vs %s %.1f ms)")
      :format(shape.label, mine, best.name, best.v), mine <= best.v)
  end
end
local surv, inuse = 0, 0
for _, name in ipairs({ "reload", "reload --debounce 0" }) do
  for _, shape in ipairs(shapes) do
    local x = results[name .. " " .. shape.key]
    surv, inuse = surv + (x.survivors or 1), inuse + (x.eaddrinuse or 1)
  end
end
target(("zero old-generation survivors (%d)"):format(surv), surv == 0)
target(("zero EADDRINUSE (%d)"):format(inuse), inuse == 0)
