--- Small helpers shared by the benchmarks: clock, waiting on the loop, /proc, ports, figures.
local uv = require("luv")

local root = debug.getinfo(1, "S").source:sub(2):match("^(.*)/bench/[^/]*$") or "."
package.path = root .. "/?.lua;" .. package.path
local pids = require("spec.support.pids")

local M = {}

---@return number milliseconds on CLOCK_MONOTONIC (the clock of the fixture's stamps)
function M.now_ms()
  return uv.hrtime() / 1e6
end

--- Runs the loop until cond() is true or max_ms passed; returns whether cond() became true.
---@param max_ms number
---@param cond? fun(): boolean
---@param poll_ms? integer
function M.wait(max_ms, cond, poll_ms)
  uv.update_time()
  local deadline = M.now_ms() + max_ms
  local t = uv.new_timer()
  t:start(poll_ms or 1, poll_ms or 1, function() end)
  local ok = false
  while M.now_ms() < deadline do
    if cond and cond() then ok = true break end
    uv.run("once")
  end
  t:close()
  uv.run("nowait")
  return ok or (cond ~= nil and cond() or false)
end

--- Like wait, but wakes when `path` changes (inotify) rather than every millisecond, with a
--- 20 ms poll as a safety net: a bench that polls every millisecond while a restart runs takes
--- the CPU from it (the trace shows reload preempted by the bench's poll on a 2-core machine).
--- `path` must exist.
---@param path string
---@param max_ms number
---@param cond fun(): boolean
function M.wait_file(path, max_ms, cond)
  local ev = uv.new_fs_event()
  ev:start(path, {}, function() end)
  local ok = M.wait(max_ms, cond, 20)
  ev:close()
  uv.run("nowait")
  return ok
end

---@param name string
---@return string|nil the command's path, if it is installed
function M.which(name)
  local p = io.popen("command -v " .. name .. " 2>/dev/null")
  local s = p and p:read("l")
  if p then p:close() end
  return s and s ~= "" and s or nil
end

--- This process's environment ("K=V" list) without BENCH_GEN, after `marker`.
---@param marker string
function M.env_with(marker)
  local env = { marker }
  for k, v in pairs(uv.os_environ()) do
    if k ~= "BENCH_GEN" then env[#env + 1] = k .. "=" .. v end
  end
  return env
end

---@param path string
---@return string|nil
function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

---@param path string
---@param s string
function M.write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

--- Live (not zombie) processes whose environment holds `marker`: { pid, comm, env }.
---@param marker string
function M.marked(marker)
  local out, listed = {}, {}
  local function check(pid)
    local env = M.read("/proc/" .. pid .. "/environ")
    if env and env:find(marker, 1, true) and not listed[pid] then
      local stat = M.read("/proc/" .. pid .. "/stat") or ""
      local comm, state, ppid = stat:match("%((.*)%) (%S) (%-?%d+)")
      if state and state ~= "Z" and state ~= "X" then
        listed[pid] = true
        out[#out + 1] = { pid = pid, comm = comm, ppid = tonumber(ppid), env = env }
      end
    end
  end
  -- Not one scan: a fork-and-exit loop would slip between (spec/support/pids.lua).
  pids.each(check)
  return out
end

--- Field (kB) of /proc/PID/status.
function M.status_kb(pid, field)
  local s = M.read("/proc/" .. pid .. "/status")
  return s and tonumber(s:match(field .. ":%s+(%d+)"))
end

--- Sum of utime+stime (clock ticks) and of context switches of /proc/PID.
function M.cost(pid)
  local s = M.read("/proc/" .. pid .. "/stat")
  if not s then return 0, 0 end
  local fields = {}
  for x in s:match("%) (.*)$"):gmatch("%S+") do fields[#fields + 1] = x end
  local cs = (M.status_kb(pid, "voluntary_ctxt_switches") or 0)
    + (M.status_kb(pid, "nonvoluntary_ctxt_switches") or 0)
  return tonumber(fields[12]) + tonumber(fields[13]), cs
end

--- inotify watches held by /proc/PID (lines "inotify wd:" in the fdinfo of its fds).
function M.inotify_watches(pid)
  local n = 0
  local req = uv.fs_scandir("/proc/" .. pid .. "/fdinfo")
  while req do
    local fd = uv.fs_scandir_next(req)
    if not fd then break end
    local s = M.read("/proc/" .. pid .. "/fdinfo/" .. fd) or ""
    for _ in s:gmatch("inotify wd:") do n = n + 1 end
  end
  return n
end

local function bindable(port)
  local tcp = uv.new_tcp()
  local ok = tcp:bind("127.0.0.1", port) and tcp:listen(1, function() end)
  tcp:close()
  uv.run("nowait")
  return ok and true or false
end

--- True when 127.0.0.1:port can be bound (nobody listens there).
M.port_free = bindable

local next_port = 32000 + math.floor(uv.os_getpid() * 37) % 8000 -- an integer: luv 1.44 gives
-- the pid as a float, and a port of "34423.0" reached the servers' argv
---@return integer a port of 127.0.0.1 nobody listens on now
function M.free_port()
  repeat
    next_port = next_port >= 39999 and 32000 or next_port + 1
  until bindable(next_port)
  return next_port
end

--- Percentile p (0..100) of xs, nearest rank.
function M.pct(xs, p)
  if #xs == 0 then return nil end
  local s = { table.unpack(xs) }
  table.sort(s)
  local i = math.max(1, math.min(#s, math.ceil(p / 100 * #s)))
  return s[i]
end

--- "median (p10–p90)" of xs in ms, or "-".
function M.fig(xs, unit)
  if #xs == 0 then return "-" end
  unit = unit or "ms"
  return ("%.1f %s (%.1f–%.1f)"):format(M.pct(xs, 50), unit, M.pct(xs, 10), M.pct(xs, 90))
end

function M.q(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

function M.yes(b)
  return b and "met" or "**not met**"
end

return M
