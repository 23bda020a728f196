--- The watch benchmark: start-up time, memory, idle cost and an event storm of core.watch,
--- against `inotifywait -r -m` as the baseline. Not part of the test suite.
---
---   lua5.4 bench/watch.lua [--quick] [--runs N]
---
--- Each measurement runs in a fresh child process (so that memory figures are not polluted by
--- an earlier run); medians over the runs are printed as a markdown table.
local uv = require("luv")

local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/[^/]*$") or "."
local build = os.getenv("RELOAD_BUILD_DIR") or (here .. "/../build")
package.cpath = build .. "/lib/?.so;" .. package.cpath
package.path = here .. "/?.lua;" .. package.path

local function now_ms()
  return uv.hrtime() / 1e6
end

local function status_kb(pid, field)
  local f = io.open("/proc/" .. pid .. "/status")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return tonumber(s:match(field .. ":%s+(%d+)"))
end

local function cpu_ms()
  local f = assert(io.open("/proc/self/stat"))
  local s = f:read("a")
  f:close()
  local rest = s:match("%) (.*)$")
  local fields = {}
  for x in rest:gmatch("%S+") do fields[#fields + 1] = x end
  -- utime and stime are fields 14 and 15 of the line, 12 and 13 after ") "
  return (tonumber(fields[12]) + tonumber(fields[13])) * 10 -- clock ticks of 10 ms
end

local function run_loop(ms, until_fn)
  -- The loop's clock is cached: refresh it, or the timer counts from a stale instant. The timer
  -- repeats: libuv 1.44 runs due timers before it polls, and a one-shot timer that fired there
  -- leaves uv.run("once") polling with no timeout, until unrelated I/O.
  uv.update_time()
  local done = false
  local t = uv.new_timer()
  t:start(math.floor(ms), 1, function() done = true end)
  while not done and not (until_fn and until_fn()) do
    uv.run("once")
  end
  t:close()
  uv.run("nowait")
end

-- Child mode -------------------------------------------------------------------------------

local function child(mode, dir, a)
  local core = require("reload.core")
  local base = status_kb("self", "VmRSS")
  local events = {}
  local t0 = now_ms()
  local w = assert(core.watch({ root = dir, on_events = function(batch)
    for _, e in ipairs(batch) do events[#events + 1] = e end
  end }))
  local ready = now_ms() - t0
  local st = w:stats()
  if mode == "start" then
    local rss = status_kb("self", "VmRSS")
    print(("%f %d %d %d %d"):format(ready, base, rss, st.dirs, st.files))
  elseif mode == "idle" then
    local seconds = tonumber(a)
    local c0, v0 = cpu_ms(), status_kb("self", "voluntary_ctxt_switches")
    run_loop(seconds * 1000)
    local c1, v1 = cpu_ms(), status_kb("self", "voluntary_ctxt_switches")
    -- one wake-up is the end of the wait itself
    print(("%f %d"):format(c1 - c0, math.max(0, v1 - v0 - 1)))
  elseif mode == "storm" then
    local n = tonumber(a)
    local files = {}
    for line in io.lines(dir .. "/.files") do
      files[#files + 1] = line
      if #files == n then break end
    end
    -- Rewrite them all while the loop is not running: the kernel queues everything at once.
    for _, rel in ipairs(files) do
      local f = assert(io.open(dir .. "/" .. rel, "w"))
      f:write("package y\n")
      f:close()
    end
    local seen, overflow = {}, false
    local count = 0
    run_loop(10000, function()
      for i = #events, 1, -1 do
        local e = table.remove(events, i)
        if e.kind == "overflow" then overflow = true
        elseif not seen[e.path] then seen[e.path] = true; count = count + 1 end
      end
      return count >= #files or overflow
    end)
    -- then one more change: is it seen, and how fast?
    local t1 = now_ms()
    local f = assert(io.open(dir .. "/after.go", "w"))
    f:write("x")
    f:close()
    local after
    run_loop(5000, function()
      for _, e in ipairs(events) do
        if e.path == "after.go" then after = now_ms() - t1; return true end
      end
    end)
    os.remove(dir .. "/after.go")
    print(("%d %s %s"):format(count, tostring(overflow), after and ("%f"):format(after) or "lost"))
  end
  w:close()
  uv.run("nowait")
end

if arg[1] == "--child" then
  child(arg[2], arg[3], arg[4])
  return
end

-- Parent -------------------------------------------------------------------------------------

local quick, runs = false, nil
local i = 1
while arg[i] do
  if arg[i] == "--quick" then quick = true
  elseif arg[i] == "--runs" then i = i + 1; runs = tonumber(arg[i])
  else error("usage: lua5.4 bench/watch.lua [--quick] [--runs N]") end
  i = i + 1
end
runs = runs or (quick and 3 or 5)
local lua = arg[-1] or "lua5.4"
local script = debug.getinfo(1, "S").source:sub(2)

local function capture(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return out
end

local function median(xs)
  table.sort(xs)
  local n = #xs
  if n == 0 then return 0 / 0 end
  return n % 2 == 1 and xs[(n + 1) // 2] or (xs[n // 2] + xs[n // 2 + 1]) / 2
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function reload_child(mode, dir, a)
  return capture(("%s %s --child %s %s %s"):format(q(lua), q(script), mode, q(dir), a or ""))
end

-- inotifywait -r -m: time until "Watches established." and its RSS then.
local function inotifywait_start(dir)
  local handle, pid, buf, ready
  local stderr = uv.new_pipe(false)
  local t0 = now_ms()
  buf = ""
  handle, pid = uv.spawn("inotifywait", { args = { "-r", "-m", "-e", "modify", dir },
    stdio = { nil, nil, stderr } }, function() handle:close() end)
  if not handle then
    stderr:close()
    return nil
  end
  stderr:read_start(function(_, chunk)
    if chunk then
      buf = buf .. chunk
      if buf:find("Watches established") and not ready then ready = now_ms() - t0 end
    end
  end)
  run_loop(60000, function() return ready ~= nil end)
  local rss = status_kb(pid, "VmRSS")
  stderr:read_stop()
  stderr:close()
  uv.process_kill(handle, "sigkill")
  run_loop(50)
  return ready, rss
end

local function bench(ndirs, nfiles, idle_s, storm_n)
  local dir = assert(uv.fs_mkdtemp((os.getenv("TMPDIR") or "/tmp") .. "/reload-bench-XXXXXX"))
  io.stderr:write(("generating %d dirs / %d files in %s\n"):format(ndirs, nfiles, dir))
  local files = require("tree").generate(dir, ndirs, nfiles)
  local f = assert(io.open(dir .. "/.files", "w"))
  f:write(table.concat(files, "\n"), "\n")
  f:close()
  local r = { ready = {}, rss = {}, rss_total = {}, iw_ready = {}, iw_rss = {} }
  for _ = 1, runs do
    local ready, base, rss, dirs, nf = reload_child("start", dir):match(
      "(%S+) (%d+) (%d+) (%d+) (%d+)")
    r.ready[#r.ready + 1] = tonumber(ready)
    r.rss[#r.rss + 1] = (tonumber(rss) - tonumber(base)) / 1024
    r.rss_total[#r.rss_total + 1] = tonumber(rss) / 1024
    r.dirs, r.files = tonumber(dirs), tonumber(nf)
    local iw_ready, iw_rss = inotifywait_start(dir)
    if iw_ready then
      r.iw_ready[#r.iw_ready + 1] = iw_ready
      r.iw_rss[#r.iw_rss + 1] = iw_rss / 1024
    end
  end
  io.stderr:write("idle " .. idle_s .. " s\n")
  local cpu, wakeups = reload_child("idle", dir, idle_s):match("(%S+) (%d+)")
  io.stderr:write("storm of " .. storm_n .. " rewrites\n")
  local delivered, overflow, after = reload_child("storm", dir, storm_n):match(
    "(%d+) (%S+) (%S+)")
  os.execute("rm -rf " .. q(dir))
  return {
    ndirs = ndirs, nfiles = nfiles, dirs = r.dirs, files = r.files,
    ready = median(r.ready), rss = median(r.rss), rss_total = median(r.rss_total),
    iw_ready = median(r.iw_ready), iw_rss = median(r.iw_rss),
    cpu = tonumber(cpu), wakeups = tonumber(wakeups), idle_s = idle_s,
    delivered = tonumber(delivered), overflow = overflow == "true", storm_n = storm_n,
    after = after,
  }
end

local sizes = quick and { { 1000, 10000 } } or { { 1000, 10000 }, { 10000, 100000 } }
local idle_s = quick and 3 or 10
local results = {}
for _, s in ipairs(sizes) do
  results[#results + 1] = bench(s[1], s[2], idle_s, 5000)
end

local function yes(b) return b and "met" or "**not met**" end
print(("\n## core.watch vs inotifywait -r -m (median of %d runs)\n"):format(runs))
print("| tree | metric | reload | inotifywait | ratio | target |")
print("|---|---|---|---|---|---|")
for _, r in ipairs(results) do
  local tree = ("%dk dirs / %dk files"):format(r.ndirs // 1000, r.nfiles // 1000)
  local big = r.nfiles >= 100000
  print(("| %s | ready (every dir watched) | %.1f ms | %.1f ms | %.2f | %s |"):format(tree,
    r.ready, r.iw_ready, r.ready / r.iw_ready,
    big and ("< 60 ms: " .. yes(r.ready < 60)) or "-"))
  print(("| %s | RSS added by the watcher | %.2f MiB | - | - | %s |"):format(tree, r.rss,
    big and ("< 8 MiB: " .. yes(r.rss < 8)) or "-"))
  print(("| %s | RSS of the process | %.2f MiB | %.2f MiB | %.2f | - |"):format(tree,
    r.rss_total, r.iw_rss, r.rss_total / r.iw_rss))
  print(("| %s | watched dirs / files seen | %d / %d | - | - | ignored .git, node_modules pruned |")
    :format(tree, r.dirs, r.files))
  print(("| %s | CPU over %d s idle | %.0f ms | - | - | %s |"):format(tree, r.idle_s, r.cpu,
    yes(r.cpu == 0)))
  print(("| %s | wake-ups over %d s idle | %d | - | - | 0: %s |"):format(tree, r.idle_s,
    r.wakeups, yes(r.wakeups == 0)))
  print(("| %s | %d files rewritten at once: paths delivered | %d%s | - | - | all: %s |")
    :format(tree, r.storm_n, r.delivered, r.overflow and " + overflow" or "",
      yes(r.delivered == r.storm_n or r.overflow)))
  print(("| %s | a change right after the storm | %s | - | - | seen: %s |"):format(tree,
    r.after == "lost" and "lost" or (("%.1f ms"):format(tonumber(r.after))),
    yes(r.after ~= "lost")))
end
