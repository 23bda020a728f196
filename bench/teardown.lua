--- Teardown benchmark: for each tree shape of the treegen fixture, time from the stop request
--- to the "exit" event (tree empty, keeper reaped) and to the port being bindable again. Then
--- the floor: chain3 under reload's keeper and under a minimal C subreaper
--- (bench/fixture/subreaper.c: kill of the group, blocking waitpid until ECHILD), run by run in
--- turn, with the ratios.
---
---   build/bin/reload script bench/teardown.lua [--runs N] [--grace MS]
---   lua5.4 bench/teardown.lua [--runs N]          (from the source tree, after scripts/build)
---
--- Prints markdown tables with the targets of issue 3. Not part of the test suite: timings on
--- a shared machine are noisy, so the specs only assert generous bounds.
local uv = require("luv")

local build_dir = os.getenv("RELOAD_BUILD_DIR") or (uv.cwd() .. "/build")
package.cpath = build_dir .. "/lib/?.so;" .. package.cpath
local core = require("reload.core")
local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local lib = require("lib")
local treegen = build_dir .. "/fixtures/treegen"
local subreaper = build_dir .. "/bench/subreaper"

local runs, grace = 20, 300
do
  local args = _G.arg or {}
  local i = 1
  while args[i] do
    if args[i] == "--runs" then
      runs = assert(tonumber(args[i + 1]), "--runs N")
      i = i + 1
    elseif args[i] == "--grace" then
      grace = assert(tonumber(args[i + 1]), "--grace MS")
      i = i + 1
    end
    i = i + 1
  end
end

local function now_ms()
  return uv.hrtime() / 1e6
end

local function port_bindable(port)
  local tcp = uv.new_tcp()
  local ok = tcp:bind("127.0.0.1", port) and tcp:listen(1, function() end)
  tcp:close()
  return ok and true or false
end

local function port_listening(port)
  local tcp = uv.new_tcp()
  local result
  tcp:connect("127.0.0.1", port, function(err) result = err == nil end)
  while result == nil do
    uv.run("once")
  end
  tcp:close()
  return result
end

local next_port = 20000 + math.floor(uv.os_getpid() * 53) % 10000 -- an integer (see lib.lua)
local function free_port()
  repeat
    next_port = next_port >= 31999 and 20000 or next_port + 1
  until port_bindable(next_port)
  return next_port
end

local function wait(cond, max_ms, what)
  local deadline = now_ms() + max_ms
  local timer = uv.new_timer()
  timer:start(1, 1, function() end)
  while not cond() do
    assert(now_ms() < deadline, "timed out waiting for " .. what)
    uv.run("once")
  end
  timer:close()
end

--- Live processes whose environment holds marker (lib.marked: a scan, and the pids given out
--- since it began, so that a process forking and exiting in a loop is not missed).
local function survivors(marker)
  return #lib.marked(marker)
end

--- One run: returns ms to "exit", ms to port bindable, survivors once the port is free, ms to
--- "tree-empty". (Survivors are counted after the port check: a /proc scan in between would
--- count as teardown time.)
local function one(mode, how)
  local port = free_port()
  local marker = ("RELOAD_BENCH_TAG=%d-%d"):format(uv.os_getpid(), uv.hrtime())
  local env = lib.env_with(marker)
  local exit_at, empty_at
  local p = assert(core.spawn({
    cmd = { treegen, mode, tostring(port) }, env = env, grace_ms = grace,
    on_event = function(ev)
      if ev.type == "exit" then
        exit_at = now_ms()
      elseif ev.type == "tree-empty" then
        empty_at = now_ms()
      end
    end,
  }))
  wait(function() return port_listening(port) end, 10000, mode .. " listening")
  if mode == "forkloop" or mode == "hopper" then
    local t = uv.new_timer()
    local ready = false
    t:start(60, 0, function() ready = true end)
    wait(function() return ready end, 1000, "fork loop warm-up")
    t:close()
  end
  local t0 = now_ms()
  if how == "kill" then p:kill() else p:stop() end
  wait(function() return exit_at ~= nil end, grace + 10000, mode .. " exit")
  while not port_bindable(port) do
    uv.run("nowait")
  end
  local port_at = now_ms()
  local left = survivors(marker)
  p:close()
  uv.run("nowait")
  return exit_at - t0, port_at - t0, left, (empty_at or exit_at) - t0
end

--- One run of chain3 under the minimal subreaper: the same figures, the stop request being
--- SIGTERM to the subreaper, "exit" its exit as libuv reports it.
local function one_floor()
  local port = free_port()
  local marker = ("RELOAD_BENCH_TAG=%d-%d"):format(uv.os_getpid(), uv.hrtime())
  local exit_at
  local handle, pid = uv.spawn(subreaper, { args = { treegen, "chain3", tostring(port) },
    env = lib.env_with(marker) }, function() exit_at = now_ms() end)
  assert(handle, pid)
  wait(function() return port_listening(port) end, 10000, "subreaper chain3 listening")
  local t0 = now_ms()
  uv.kill(pid, "sigterm")
  wait(function() return exit_at ~= nil end, 10000, "subreaper exit")
  while not port_bindable(port) do
    uv.run("nowait")
  end
  local port_at = now_ms()
  local left = survivors(marker)
  handle:close()
  uv.run("nowait")
  return exit_at - t0, port_at - t0, left
end

local function median(xs)
  table.sort(xs)
  local n = #xs
  return n % 2 == 1 and xs[(n + 1) / 2] or (xs[n / 2] + xs[n / 2 + 1]) / 2
end

local shapes = {
  { mode = "chain3", target = 2 },
  { mode = "setsid", target = 2 },
  { mode = "daemon", target = 2 },
  { mode = "daemon_exit", target = 2 },
  { mode = "threadfork_setsid", target = 2 },
  { mode = "forkloop", target = 10 },
  { mode = "ignterm", target = grace + 5, label = ("grace+5 (%d)"):format(grace + 5) },
  { mode = "setsid", how = "kill", target = 2 },
  { mode = "forkloop", how = "kill", target = 10 },
  { mode = "hopper", target = 10 },
  { mode = "hopper", how = "kill", target = 10 },
}

print(("teardown: %d runs per shape, grace %d ms, stop -> exit event / port bindable"):format(runs,
  grace))
print("")
print("| shape | median exit ms | worst exit ms | median port ms | worst port ms | survivors "
  .. "| target (median) | met |")
print("|---|---|---|---|---|---|---|---|")
for _, s in ipairs(shapes) do
  local exits, ports, left = {}, {}, 0
  for i = 1, runs do
    local l
    exits[i], ports[i], l = one(s.mode, s.how)
    left = left + l
  end
  local worst_exit, worst_port = math.max(table.unpack(exits)), math.max(table.unpack(ports))
  local med_exit, med_port = median(exits), median(ports)
  local met = med_exit < s.target and med_port < s.target and left == 0
  print(("| %s%s | %.2f | %.2f | %.2f | %.2f | %d | < %s ms | %s |"):format(s.mode,
    s.how and (" (" .. s.how .. ")") or "", med_exit, worst_exit, med_port, worst_port, left,
    s.label or tostring(s.target), met and "met" or "not met"))
end

-- The floor: chain3 under reload's keeper and under the minimal subreaper, in turn.
local function pct(xs, p)
  return lib.pct(xs, p)
end
local keeper = { exit = {}, port = {}, empty = {}, left = 0 }
local floor = { exit = {}, port = {}, left = 0 }
local floor_runs = math.max(runs, 10)
for i = 1, floor_runs do
  local function k()
    local e, p, l, t = one("chain3")
    keeper.exit[i], keeper.port[i], keeper.empty[i], keeper.left = e, p, t, keeper.left + l
  end
  local function f()
    local e, p, l = one_floor()
    floor.exit[i], floor.port[i], floor.left = e, p, floor.left + l
  end
  if i % 2 == 1 then k() f() else f() k() end
end
print("")
print(("chain3 against the floor (bench/fixture/subreaper.c: PR_SET_CHILD_SUBREAPER, "
  .. "SIGTERM to the group, blocking waitpid until ECHILD), %d runs each, in turn; "
  .. "median (p10–p90) ms"):format(floor_runs))
print("")
print("| teardown of chain3 | stop → tree-empty | stop → exit | stop → port bindable "
  .. "| survivors | exit vs floor p50 | exit vs floor p90 | port vs floor p50 |")
print("|---|---|---|---|---|---|---|---|")
local function f3(xs)
  return ("%.2f (%.2f–%.2f)"):format(pct(xs, 50), pct(xs, 10), pct(xs, 90))
end
local function ratio(xs, ys, p)
  return ("%.2f"):format(pct(xs, p) / pct(ys, p))
end
print(("| *floor: minimal subreaper (C)* | - | %s | %s | %d | 1.00 | 1.00 | 1.00 |"):format(
  f3(floor.exit), f3(floor.port), floor.left))
print(("| reload's keeper (core.spawn, stop) | %s | %s | %s | %d | %s | %s | %s |"):format(
  f3(keeper.empty), f3(keeper.exit), f3(keeper.port), keeper.left,
  ratio(keeper.exit, floor.exit, 50), ratio(keeper.exit, floor.exit, 90),
  ratio(keeper.port, floor.port, 50)))
print("")
local r = pct(keeper.exit, 50) / pct(floor.exit, 50)
print(("| target | |\n|---|---|\n| teardown ≤ 1.3× the minimal subreaper, stop → exit p50 "
  .. "(%.2f×) | %s |"):format(r, r <= 1.3 and "met" or "**not met**"))
