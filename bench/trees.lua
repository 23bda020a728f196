--- Whole-tool figures on generated source trees (bench/tree.lua), reload beside the peers:
--- start-up until a change is detected, RSS and inotify watches of the tool's own processes
--- (reload's keepers included; the command's sh and server excluded), idle CPU and context
--- switches, and a storm of 5,000 rewritten files. Not part of the test suite; run by bench/run.
---
---   lua5.4 bench/trees.lua [--quick]
---
--- The tool watches the whole tree with its defaults (reload: every file not ignored) and runs
--- sh -> sh -> server (bench/fixture/server.c), whose stamps count the restarts.
local uv = require("luv")

local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local lib = require("lib")

local quick = arg[1] == "--quick"
local root = uv.fs_realpath(here .. "/..")
local build = os.getenv("RELOAD_BUILD_DIR") or (root .. "/build")
local reload = build .. "/bin/reload"
local server = build .. "/bench/server"
local nodemon = root .. "/bench/.peers/node_modules/.bin/nodemon"
local clk_tck = 100 -- Linux USER_HZ

local tools = {
  { name = "reload", needs = reload, argv = function(cmd)
    return { reload, "run", "--", "sh", "-c", cmd }
  end },
  { name = "entr -r", needs = lib.which("entr"), argv = function(cmd)
    return { "sh", "-c", "ulimit -n 1048576 2>/dev/null; find . -name '*.go' -o -name gen.txt "
      .. "| grep -v -e ^./.git/ -e ^./node_modules/ | exec entr -n -r sh -c " .. lib.q(cmd) }
  end },
  { name = "reflex -s", needs = lib.which("reflex"), argv = function(cmd)
    return { "reflex", "-r", "\\.(go|txt)$", "-s", "--", "sh", "-c", cmd }
  end },
  { name = "nodemon --delay 0", needs = uv.fs_access(nodemon, "X") and nodemon or nil,
    argv = function(cmd)
      return { nodemon, "--delay", "0", "-w", ".", "-e", "go,txt", "--exec", cmd }
    end },
  { name = "inotifywait loop", needs = lib.which("inotifywait"), argv = function(cmd)
    local loop = ("(%s) & p=$!; while inotifywait -r -qq -e close_write "
      .. "--exclude '^./(.git|node_modules)/' .; do kill $p; wait $p; (%s) & p=$!; done")
      :format(cmd, cmd)
    return { "sh", "-c", loop }
  end },
}

local function nstamps(path)
  local n, first = 0, nil
  for line in (lib.read(path) or ""):gmatch("[^\n]+") do
    n = n + 1
    local s = tonumber(line:match("^%-?%d+ %d+ (%d+)"))
    first = first or s
  end
  return n
end

local function stamp_starts(path)
  local out = {}
  for line in (lib.read(path) or ""):gmatch("[^\n]+") do
    out[#out + 1] = tonumber(line:match("^%-?%d+ %d+ (%d+)")) / 1e6
  end
  return out
end

--- The tool's own processes: marked, without a generation.
local function own(marker)
  local out = {}
  for _, p in ipairs(lib.marked(marker)) do
    if not p.env:find("BENCH_GEN=", 1, true) then out[#out + 1] = p.pid end
  end
  return out
end

local function one(tool, dir, files)
  local tree = dir .. "/tree"
  local stampfile = dir .. "/stamps-" .. tool.name:gsub("%W", "")
  os.remove(stampfile)
  local gen = files[#files]:match("^(.*/)") .. "gen.txt"
  lib.write(tree .. "/" .. gen, "0\n")
  local cmd = ("read g < %s; export BENCH_GEN=$g; exec sh -c 'sh -c \"%s %d %s; true\"; true'")
    :format(gen, server, lib.free_port(), stampfile)
  local marker = ("BENCH_MARK=%d-%d"):format(uv.os_getpid(), uv.hrtime())
  local env = lib.env_with(marker)
  local log = assert(uv.fs_open(dir .. "/tool.log", "a", 420))
  local argv = tool.argv(cmd)
  local t0 = lib.now_ms()
  local handle, pid = uv.spawn(argv[1], { args = { table.unpack(argv, 2) }, cwd = tree,
    env = env, stdio = { nil, log, log }, detached = true }, function() end)
  uv.fs_close(log)
  local r = {}
  if not handle then r.failed = tostring(pid) return r end
  local function finish()
    pcall(uv.kill, -pid, "sigterm")
    lib.wait(1500, function() return #own(marker) == 0 end, 20)
    pcall(uv.kill, -pid, "sigkill")
    for _, p in ipairs(lib.marked(marker)) do uv.kill(p.pid, "sigkill") end
    lib.wait(100)
    handle:close()
    uv.run("nowait")
  end
  -- start-up: rewrite the generation file until a restart shows that a change was seen:
  -- every 10 ms for the first 150 ms (the precision where the targets are), then at growing
  -- intervals (x1.5 up to 1 s) so that a tool that waits for a quiet spell (entr, reflex)
  -- fires too. The same probe for every tool.
  local limit = quick and 30000 or 60000
  local k = 0
  local first = lib.wait(limit, function() return nstamps(stampfile) >= 1 end, 1)
  local detected = first and lib.wait(limit, function()
    k = k + 1
    lib.write(tree .. "/" .. gen, k .. "\n")
    local elapsed = lib.now_ms() - t0
    local interval = elapsed < 150 and 10 or math.min(1000, elapsed * 0.5)
    return lib.wait(interval, function() return nstamps(stampfile) >= 2 end, 1)
  end, 1)
  if not detected then
    r.failed = first and "no change detected in time" or "command not started in time"
    finish()
    return r
  end
  r.ready = stamp_starts(stampfile)[2] - t0
  lib.wait(1000)
  local procs = own(marker)
  r.rss, r.watches = 0, 0
  for _, p in ipairs(procs) do
    r.rss = r.rss + (lib.status_kb(p, "VmRSS") or 0) / 1024
    r.watches = r.watches + lib.inotify_watches(p)
  end
  r.nprocs = #procs
  -- idle
  local idle_s = quick and 2 or 10
  local c0, x0 = 0, 0
  for _, p in ipairs(procs) do
    local c, x = lib.cost(p)
    c0, x0 = c0 + c, x0 + x
  end
  lib.wait(idle_s * 1000)
  local c1, x1 = 0, 0
  for _, p in ipairs(procs) do
    local c, x = lib.cost(p)
    c1, x1 = c1 + c, x1 + x
  end
  r.idle_cpu, r.idle_cs, r.idle_s = (c1 - c0) * 1000 / clk_tck, x1 - x0, idle_s
  -- storm: 5,000 files rewritten as fast as we can
  local before = nstamps(stampfile)
  local n = math.min(5000, #files - 1)
  local storm_start = lib.now_ms()
  for i = 1, n do lib.write(tree .. "/" .. files[i], "package y\n") end
  local storm_end = lib.now_ms()
  r.storm_ms = storm_end - storm_start
  lib.wait(3000)
  local starts = stamp_starts(stampfile)
  r.storm_restarts = #starts - before
  r.storm_first = starts[before + 1] and (starts[before + 1] - storm_end)
  r.storm_last = #starts > before and (starts[#starts] - storm_end) or nil
  -- and the next change
  local t1 = lib.now_ms()
  local after = #starts
  lib.write(tree .. "/" .. gen, "next\n")
  if lib.wait(3000, function() return nstamps(stampfile) > after end, 2) then
    r.next = stamp_starts(stampfile)[after + 1] - t1
  end
  finish()
  return r
end

local sizes = quick and { { 1000, 10000 } } or { { 1000, 10000 }, { 10000, 100000 } }
local runs = quick and 1 or 3
local rows = {}
for _, s in ipairs(sizes) do
  local dir = assert(uv.fs_mkdtemp("/tmp/reload-trees-XXXXXX"))
  assert(uv.fs_mkdir(dir .. "/tree", 493))
  io.stderr:write(("trees: generating %d dirs / %d files\n"):format(s[1], s[2]))
  local files = require("tree").generate(dir .. "/tree", s[1], s[2])
  for _, tool in ipairs(tools) do
    local row = { tool = tool.name, files = s[2], dirs = s[1], runs = {} }
    for i = 1, runs do
      io.stderr:write(("trees: %s on %d files, run %d of %d\n"):format(tool.name, s[2], i, runs))
      local r = tool.needs and one(tool, dir, files) or { failed = "not installed" }
      if r.failed then row.failed = r.failed break end
      row.runs[#row.runs + 1] = r
    end
    rows[#rows + 1] = row
  end
  os.execute("rm -rf " .. lib.q(dir))
end

--- The values of field over a row's runs (nil ones left out) and how many were nil.
local function values(row, field)
  local xs, missing = {}, 0
  for _, r in ipairs(row.runs) do
    if r[field] ~= nil then xs[#xs + 1] = r[field] else missing = missing + 1 end
  end
  return xs, missing
end

--- "median (min–max)" of a field, formatted with fmt; one run: the value alone.
local function fig(row, field, fmt)
  local xs = values(row, field)
  if #xs == 0 then return "-" end
  local med = fmt:format(lib.pct(xs, 50))
  if #xs == 1 then return med end
  return ("%s (%s–%s)"):format(med, fmt:format(lib.pct(xs, 0)), fmt:format(lib.pct(xs, 100)))
end

--- The median of a field over the runs (nil if none).
local function med(row, field)
  return lib.pct((values(row, field)), 50)
end

local function ms(x) return x and ("%.1f ms"):format(x) or "-" end
print(("\n## 3–5. Whole tree watched: start-up, memory, idle, storm (%d run%s per tool, median "
  .. "(min–max))\n"):format(runs, runs == 1 and "" or "s"))
print("Ready = spawn → first restart caused by a change (the generation file is rewritten every "
  .. "10 ms for 150 ms, then at growing intervals, until one is seen). RSS and watches: the "
  .. "tool's processes (reload's keepers included), not the command. Storm: 5,000 files "
  .. "rewritten; restarts = server starts.\n")
print("| tree | tool | ready | RSS | procs | inotify watches | idle CPU | idle ctx switches "
  .. "| storm (writing) | storm restarts | storm end → restart | next change |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for _, row in ipairs(rows) do
  local tree = ("%dk/%dk"):format(row.dirs // 1000, row.files // 1000)
  if row.failed then
    print(("| %s | %s | %s | | | | | | | | | |"):format(tree, row.tool, row.failed))
  else
    local _, lost = values(row, "next")
    local idle_s = row.runs[1].idle_s
    print(("| %s | %s | %s | %s | %s | %s | %s / %d s | %s | %s | %s | %s | %s |"):format(tree,
      row.tool, fig(row, "ready", "%.1f ms"), fig(row, "rss", "%.1f MiB"),
      fig(row, "nprocs", "%d"), fig(row, "watches", "%d"), fig(row, "idle_cpu", "%.0f ms"),
      idle_s, fig(row, "idle_cs", "%d"), fig(row, "storm_ms", "%.1f ms"),
      fig(row, "storm_restarts", "%d"), fig(row, "storm_first", "%.1f ms"),
      lost == 0 and fig(row, "next", "%.1f ms") or ("**lost** in %d of %d"):format(lost,
      #row.runs)))
  end
end
print("\n| target (reload, medians) | |")
print("|---|---|")
for _, row in ipairs(rows) do
  if row.tool == "reload" and not row.failed then
    local tree = ("%dk files"):format(row.files // 1000)
    local ready, rss, cs = med(row, "ready"), med(row, "rss"), med(row, "idle_cs")
    local restarts, first = med(row, "storm_restarts"), med(row, "storm_first")
    local _, lost = values(row, "next")
    if row.files >= 100000 then
      print(("| %s: change detected within 100 ms of start-up (%s) | %s |"):format(tree,
        ms(ready), lib.yes(ready < 100)))
      print(("| %s: RSS < 8 MiB (%.1f MiB) | %s |"):format(tree, rss, lib.yes(rss < 8)))
    end
    print(("| %s: idle, zero context switches (%d over %d s) | %s |"):format(tree, cs,
      row.runs[1].idle_s, lib.yes(cs == 0)))
    print(("| %s: storm, exactly one restart within 50 ms (%d, %s) | %s |"):format(tree,
      restarts, ms(first), lib.yes(restarts == 1 and (first or 1e9) < 50)))
    print(("| %s: next change detected after the storm (every run) | %s |"):format(tree,
      lib.yes(lost == 0)))
  elseif row.tool == "reload" then
    print(("| %s files: %s | **not met** |"):format(row.files // 1000, row.failed))
  end
end
