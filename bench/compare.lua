--- reload side by side with the tools users would pick instead (entr, reflex, nodemon, an
--- inotifywait loop), on one fixture: bench/fixture/server.c run directly, under a
--- `sh -> sh -> server` chain, and under one whose server calls setsid. The command alone,
--- spawned by the bench itself, gives each shape's floor: what no tool can go below. The
--- minimal restarter (bench/fixture/restarter.c: inotify, kill, waitpid, posix_spawn) is the
--- floor of a restart on the server shape; section 1b measures it interleaved with reload
--- (default and --debounce 0), change by change, and prints the ratios. Not part of the test
--- suite; run by bench/run.
---
---   lua5.4 bench/compare.lua [--quick] [--changes N] [--rounds N] [--only TOOL] [--base DIR]
---                                                  (TOOL: a row's name; N rounds for 1b)
---
--- --base DIR: another build of reload (DIR/bin/reload, e.g. a build of main made with
--- RELOAD_BUILD_DIR=DIR scripts/build) joins 1b as a fourth session at default settings, so
--- that a change is measured before and after in the same run.
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

local quick, changes, rounds, only, base_dir = false, nil, nil, nil, nil
do
  local i = 1
  while arg[i] do
    if arg[i] == "--quick" then quick = true
    elseif arg[i] == "--changes" then i = i + 1; changes = tonumber(arg[i])
    elseif arg[i] == "--rounds" then i = i + 1; rounds = tonumber(arg[i])
    elseif arg[i] == "--only" then i = i + 1; only = arg[i]
    elseif arg[i] == "--base" then i = i + 1; base_dir = arg[i]
    else
      error("usage: lua5.4 bench/compare.lua [--quick] [--changes N] [--rounds N] [--only TOOL] "
        .. "[--base DIR]")
    end
    i = i + 1
  end
end
changes = changes or (quick and 8 or 30)
rounds = rounds or (quick and 20 or 60)

local root = uv.fs_realpath(here .. "/..")
local build = os.getenv("RELOAD_BUILD_DIR") or (root .. "/build")
local reload = build .. "/bin/reload"
local server = build .. "/bench/server"
local restarter = build .. "/bench/restarter"
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
---@field floor boolean|nil  the minimal restarter: not a peer
---@field direct_only boolean|nil runs the server shape only (no process tree)
---@field only_1b boolean|nil another build of reload (--base): section 1b only
local tools = {
  { name = "minimal restarter (C)", needs = restarter, floor = true, direct_only = true,
    argv = function(cmd)
      return { restarter, "src/gen.txt", "--", table.unpack(cmd) }
    end },
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
--- are still alive, by the pids of their stamps; killed when `kill` is set. A pid counts only
--- while its process carries the session's marker: with pid_max at 32768, a busy machine gives
--- an old server's pid to another session's server within a run (counted and killed as a
--- survivor before this check, for the floor as much as for reload). Nor does a pid that a
--- later stamp of the session holds: the session's own newer server was given it.
local function stamped_alive(stampfile, gen, kill, marker)
  local n, latest, seen = 0, {}, {}
  local all = stamps(stampfile)
  for _, st in ipairs(all) do
    latest[st.pid] = math.max(latest[st.pid] or st.gen, st.gen)
  end
  for _, st in ipairs(all) do
    local stat = st.gen < gen and latest[st.pid] < gen and lib.read("/proc/" .. st.pid .. "/stat")
    local env = stat and lib.read("/proc/" .. st.pid .. "/environ")
    if stat and stat:match("%(server%) [^Z]") and env and env:find(marker, 1, true) then
      n = n + 1
      seen[#seen + 1] = ("generation %d's (pid %d)"):format(st.gen, st.pid)
      if kill then uv.kill(st.pid, "sigkill") end
    end
  end
  return n, table.concat(seen, ", ")
end

--- A fresh fixture directory (src/gen.txt holding 0), a free port, the stamp file, and a
--- session marker with the environment that carries it.
local function fixture()
  local dir = assert(uv.fs_mkdtemp("/tmp/reload-cmp-XXXXXX"))
  assert(uv.fs_mkdir(dir .. "/src", 448))
  lib.write(dir .. "/src/gen.txt", "0\n")
  lib.write(dir .. "/stamps", "") -- exists from the start: wait_gen watches it
  local marker = ("BENCH_MARK=%d-%d"):format(uv.os_getpid(), uv.hrtime())
  return dir, lib.free_port(), dir .. "/stamps", marker, lib.env_with(marker)
end

--- Waits (up to 3 s) for the stamp of generation `gen`; returns it or nil. Woken by the
--- stamp file's changes, so that the bench sleeps while the restart runs; with spin_ms, by a
--- poll every spin_ms instead, which keeps a CPU awake (1b measures both).
local function wait_gen(stampfile, gen, spin_ms)
  local mine
  local function seen()
    for _, st in ipairs(stamps(stampfile)) do
      if st.gen == gen then mine = st return true end
    end
    return false
  end
  if spin_ms then
    lib.wait(3000, seen, spin_ms)
  else
    lib.wait_file(stampfile, 3000, seen)
  end
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
  -- every process of the session (earlier_gen alone spares those without BENCH_GEN: the
  -- servers of the server shape)
  for _, p in ipairs(lib.marked(s.marker)) do uv.kill(p.pid, "sigkill") end
  if not s.handle:is_closing() then s.handle:close() end
  uv.run("nowait")
  os.execute("rm -rf " .. lib.q(s.dir))
end

--- Figures of a series of changes to one session.
local function new_result(n, first_ms)
  return { started = {}, answering = {}, survivors = 0, eaddrinuse = 0, extra = 0, missed = 0,
    first_ms = first_ms or 0, n = n }
end

--- One change to session s (generation gen): the write, the new generation's stamp, a quiet
--- spell, the GET; survivors of earlier generations are counted and killed. Adds to r.
local function change(s, shape, gen, r, spin_ms)
  local t0 = lib.now_ms()
  lib.write(s.dir .. "/src/gen.txt", gen .. "\n")
  local mine = wait_gen(s.stampfile, gen, spin_ms)
  -- a quiet spell: extra starts for one change, survivors still alive after it
  lib.wait(quick and 150 or 200, nil, 10)
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
  for i = s.seen + 1, #all do
    if all[i].status == "eaddrinuse" then r.eaddrinuse = r.eaddrinuse + 1 end
  end
  r.extra = r.extra + math.max(0, #all - s.seen - 1)
  s.seen = #all
  if shape.direct then
    local n, which = stamped_alive(s.stampfile, gen, true, s.marker)
    if n > 0 then
      io.stderr:write(("compare: at generation %d, servers still run: %s\n"):format(gen, which))
    end
    r.survivors = r.survivors + n
  else
    r.survivors = r.survivors + earlier_gen(s.marker, gen, true)
  end
end

--- Keeps the stamps of a session for a closer look (BENCH_KEEP=1).
local function keep(s, tool, shape, suffix)
  if os.getenv("BENCH_KEEP") then
    local name = tool.name:gsub("%W", "") .. "-" .. shape.key .. (suffix or "")
    os.execute(("cp %s /tmp/bench-stamps-%s"):format(lib.q(s.stampfile), name))
  end
end

--- N changes; returns per-change figures.
local function measure(tool, shape, n)
  local s, err = start(tool, shape)
  if not s then local r = new_result(n) r.failed = err return r end
  local r = new_result(n, s.first_ms)
  if s.failed then r.failed = s.failed stop(s) return r end
  s.seen = #stamps(s.stampfile)
  for gen = 1, n do
    change(s, shape, gen, r)
  end
  keep(s, tool, shape)
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
    local handle, pid = uv.spawn(argv[1], { args = { table.unpack(argv, 2) }, cwd = dir,
      env = env, detached = true }, function() end)
    local mine = wait_gen(stampfile, gen)
    if mine and mine.status == "ok" then
      r.started[#r.started + 1] = mine.start - t0
      r.answering[#r.answering + 1] = mine.listen - t0
    end
    -- its group, whether it stamped or not (a server that had not stamped yet outlived the
    -- bench once), then whatever left the group
    if handle then pcall(uv.kill, -pid, "sigkill") end
    earlier_gen(marker, nil, true)
    stamped_alive(stampfile, gen + 1, true, marker)
    lib.wait(2000, function() return lib.port_free(port) end, 1)
    if handle and not handle:is_closing() then handle:close() end
  end
  for _, p in ipairs(lib.marked(marker)) do uv.kill(p.pid, "sigkill") end
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
    if tool.direct_only and not shape.direct then
      results[key] = { failed = "- (a single process only)", started = {}, answering = {} }
    elseif only and tool.name ~= only and tool.name ~= "reload" and not tool.floor then
      results[key] = { failed = "skipped (--only)", started = {}, answering = {} }
    elseif tool.needs then
      results[key] = measure(tool, shape, changes)
    else
      results[key] = { failed = "not installed (run bench/setup)", started = {}, answering = {} }
    end
  end
end

--- 1b: reload (default and --debounce 0) and the minimal restarter on the server shape,
--- interleaved: each round makes one change to each session, in turn (the order rotates from
--- round to round), so that all three are measured under the same load of a shared machine.
local floor_names = { "minimal restarter (C)", "reload", "reload --debounce 0" }
if base_dir then
  -- 1b only: not a peer of sections 1–2
  local exe = base_dir .. "/bin/reload"
  local row = { name = "reload at " .. base_dir, only_1b = true,
    needs = uv.fs_access(exe, "X") and exe or nil,
    argv = function(cmd)
      return { exe, "run", "-w", "src/gen.txt", "--", table.unpack(cmd) }
    end }
  if not row.needs then error("--base: no executable " .. exe) end
  tools[#tools + 1] = row
  floor_names[#floor_names + 1] = row.name
end
--- CPU time of a process's threads so far, in ms (the kernel's /proc/PID/task/*/schedstat:
--- time on a CPU, in ns); nil when it cannot be read.
local function cpu_ms(pid)
  local total, any = 0, false
  local req = uv.fs_scandir("/proc/" .. pid .. "/task")
  while req do
    local tid = uv.fs_scandir_next(req)
    if not tid then break end
    local stat = lib.read(("/proc/%d/task/%s/schedstat"):format(pid, tid)) or ""
    local ns = tonumber(stat:match("^%d+"))
    if ns then total, any = total + ns, true end
  end
  return any and total / 1e6 or nil
end

local inter, inter_spin = {}, {}
local inter_cpu = {} -- ms of CPU per change of each tool's own process (its threads), 1b
do
  local by_name = {}
  for _, tool in ipairs(tools) do by_name[tool.name] = tool end
  local shape = shapes[1]
  local sessions = {}
  io.stderr:write(("compare: reload against the minimal restarter, %d interleaved rounds\n")
    :format(rounds))
  for i, name in ipairs(floor_names) do
    local tool = by_name[name]
    local s, err = start(tool, shape)
    inter[i] = new_result(rounds, s and s.first_ms)
    inter_spin[i] = new_result(rounds, s and s.first_ms)
    if not s or s.failed then
      inter[i].failed = err or s.failed
      inter_spin[i].failed = inter[i].failed
      if s then stop(s) end
    else
      s.seen = #stamps(s.stampfile)
      sessions[i] = s
    end
  end
  local cpu0 = {}
  for i, s in pairs(sessions) do cpu0[i] = cpu_ms(s.pid) end
  -- each round: every session once with the bench asleep while it waits, once with the bench
  -- polling every millisecond (which keeps a CPU from idling); which comes first alternates
  for round = 1, rounds do
    for half = 0, 1 do
      local spin = (round + half) % 2 == 0
      local gen = 2 * round - 1 + half
      for k = 0, #floor_names - 1 do
        local i = (round + k - 1) % #floor_names + 1
        if sessions[i] then
          change(sessions[i], shape, gen, spin and inter_spin[i] or inter[i], spin and 1 or nil)
        end
      end
    end
  end
  for i, s in pairs(sessions) do
    local cpu1 = cpu_ms(s.pid)
    if cpu0[i] and cpu1 then inter_cpu[i] = (cpu1 - cpu0[i]) / (2 * rounds) end
    keep(s, by_name[floor_names[i]], shape, "-interleaved")
    stop(s)
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
  for _, shape in ipairs(tool.only_1b and {} or shapes) do
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
    if not tool.name:match("^reload") and not tool.floor then
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

-- 1b ---------------------------------------------------------------------------------------

local edges = { 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50 }

--- Counts of xs per bucket of `edges` (the last bucket open).
local function histogram(xs)
  local counts = {}
  for i = 1, #edges + 1 do counts[i] = 0 end
  for _, x in ipairs(xs) do
    local i = 1
    while edges[i] and x > edges[i] do i = i + 1 end
    counts[i] = counts[i] + 1
  end
  return counts
end

--- Share (0..1) of xs beyond their median + ms.
local function beyond(xs, ms)
  local m, n = lib.pct(xs, 50), 0
  if not m then return 0 end
  for _, x in ipairs(xs) do
    if x > m + ms then n = n + 1 end
  end
  return n / #xs
end

local fl = inter[1]
print(("\n## 1b. reload against the floor: the minimal restarter, interleaved (%d rounds, "
  .. "server shape)\n"):format(rounds))
print("The floor is bench/fixture/restarter.c: inotify `IN_CLOSE_WRITE` on the watched file → "
  .. "`kill` → `waitpid` → `posix_spawn` of the same server with the same stamps; nothing a "
  .. "restart can skip. Each round writes the watched file of each session (three, four with "
  .. "--base: another build of reload at default settings) in "
  .. "turn (the order rotates), so that all see the same load, and does so twice: once with "
  .. "the bench asleep until the new stamp (first table, where the targets are judged: a save "
  .. "on an otherwise idle machine), once with the bench polling every millisecond, which "
  .. "keeps a CPU from idling (second table; earlier reports measured this way). Ratios are "
  .. "of the same percentile. Change → answering (listen() returned).\n")
print("| tool | started | answering | answering p90 | vs floor p50 | vs floor p90 | over floor p50 "
  .. "| old-gen survivors | EADDRINUSE | extra starts | missed |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
local function pr(q, xs, ys)
  local a, b = lib.pct(xs, q), lib.pct(ys, q)
  if not a or not b or b == 0 then return nil end
  return a / b
end
for i, name in ipairs(floor_names) do
  local r = inter[i]
  if r.failed then
    print(("| %s | %s | | | | | | | | | |"):format(name, r.failed))
  else
    local p90 = lib.pct(r.answering, 90)
    local r50, r90 = pr(50, r.answering, fl.answering), pr(90, r.answering, fl.answering)
    local f50, m50 = lib.pct(fl.answering, 50), lib.pct(r.answering, 50)
    print(("| %s | %s | %s | %s | %s | %s | %s | %d | %d | %d | %d%s |"):format(
      i == 1 and "*floor: " .. name .. "*" or name, lib.fig(r.started), lib.fig(r.answering),
      p90 and ("%.1f ms"):format(p90) or "-", r50 and ("%.2f"):format(r50) or "-",
      r90 and ("%.2f"):format(r90) or "-",
      (f50 and m50) and ("%+.1f ms"):format(m50 - f50) or "-", r.survivors, r.eaddrinuse,
      r.extra, r.missed,
      r.wrong_answer and (" (%d wrong answers)"):format(r.wrong_answer) or ""))
  end
end

print("\nThe same rounds, with the bench polling every millisecond while it waits:\n")
print("| tool | answering | answering p90 | vs floor p50 | vs floor p90 | over floor p50 |")
print("|---|---|---|---|---|---|")
for i, name in ipairs(floor_names) do
  local r, f = inter_spin[i], inter_spin[1]
  if not r.failed then
    local r50, r90 = pr(50, r.answering, f.answering), pr(90, r.answering, f.answering)
    local f50, m50 = lib.pct(f.answering, 50), lib.pct(r.answering, 50)
    print(("| %s | %s | %s | %s | %s | %s |"):format(
      i == 1 and "*floor: " .. name .. "*" or name, lib.fig(r.answering),
      lib.pct(r.answering, 90) and ("%.1f ms"):format(lib.pct(r.answering, 90)) or "-",
      r50 and ("%.2f"):format(r50) or "-", r90 and ("%.2f"):format(r90) or "-",
      (f50 and m50) and ("%+.1f ms"):format(m50 - f50) or "-"))
  end
end

print("\nCPU of each tool's own process per change, over the same rounds (its threads' time on a "
  .. "CPU, /proc/PID/task/*/schedstat; not its keepers' nor its commands'). On a machine with two "
  .. "CPUs, the tool's work competes with the old server's end and the new one's start:\n")
print("| tool | CPU per change | vs floor |")
print("|---|---|---|")
for i, name in ipairs(floor_names) do
  local c, f = inter_cpu[i], inter_cpu[1]
  if c then
    print(("| %s | %.2f ms | %s |"):format(i == 1 and "*floor: " .. name .. "*" or name, c,
      (f and f > 0) and ("%.1f×"):format(c / f) or "-"))
  end
end

print("\nHow the changes spread (bench asleep; change → answering, number of changes per "
  .. "bucket; a second cluster would be a debounce firing late):\n")
local head, rule = { "| tool" }, { "|---" }
for i = 1, #edges + 1 do
  head[#head + 1] = i == 1 and ("≤ %d ms"):format(edges[1])
    or i <= #edges and ("%d–%d"):format(edges[i - 1], edges[i]) or ("> %d"):format(edges[#edges])
  rule[#rule + 1] = "---:"
end
print(table.concat(head, " | ") .. " | beyond p50 + 10 ms |")
print(table.concat(rule, "|") .. "|---:|")
for i, name in ipairs(floor_names) do
  local r = inter[i]
  if not r.failed then
    print(("| %s | %s | %.0f%% |"):format(name, table.concat(histogram(r.answering), " | "),
      100 * beyond(r.answering, 10)))
  end
end

local def, d0 = inter[2], inter[3]
print("\n| target (reload, server shape, interleaved with the floor) | |")
print("|---|---|")
if not (fl.failed or def.failed or d0.failed) then
  local r50, r90 = pr(50, def.answering, fl.answering), pr(90, def.answering, fl.answering)
  target(("default settings / floor, answering p50 ≤ 1.2× (%.2f×)"):format(r50), r50 <= 1.2)
  target(("default settings / floor, answering p90 ≤ 1.3× (%.2f×)"):format(r90), r90 <= 1.3)
  for _, q in ipairs({ 50, 90 }) do
    local a, b = lib.pct(def.answering, q), lib.pct(d0.answering, q)
    target(("default within 2 ms of --debounce 0, p%d (%.1f ms vs %.1f ms, %+.1f ms)")
      :format(q, a, b, a - b), a - b <= 2)
  end
  local sd, s0 = beyond(def.answering, 10), beyond(d0.answering, 10)
  target(("default unimodal: no more changes beyond p50 + 10 ms than --debounce 0, give or "
    .. "take 5 points (%.0f%% vs %.0f%%)"):format(100 * sd, 100 * s0), sd <= s0 + 0.05)
  local bad = 0
  for i = 2, 3 do
    for _, r in ipairs({ inter[i], inter_spin[i] }) do
      bad = bad + r.survivors + r.eaddrinuse + r.extra + r.missed
    end
  end
  target(("no survivor, EADDRINUSE, extra start or missed change (%d)"):format(bad), bad == 0)
else
  print("| a session failed: no verdict | **not met** |")
end
