--- Every process, for the survivor checks of the suite (spec/helpers.lua) and of the bench
--- (bench/lib.lua). One scan of /proc is not enough: a process that forks and exits in a loop
--- (a "hopper") reads as a zombie now and then, its child made after the scan passed its pid.
--- Every process made since a scan began has a pid after the last one given out then
--- (/proc/sys/kernel/ns_last_pid; pids are given out in order, wrapping at pid_max): each of
--- those is visited too, until none was given out during a round. As reload's fallback sweep
--- does (src/proc.c), written apart from it: a check must not share the code it checks.
local uv = require("luv")

local M = {}

local function read_number(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local s = f:read("a")
  f:close()
  return tonumber((s or ""):match("%d+") or "")
end

local pid_max = read_number("/proc/sys/kernel/pid_max")

--- Every pid in /proc (one scan).
---@return integer[]
function M.list()
  local out = {}
  local req = uv.fs_scandir("/proc")
  while req do
    local name = uv.fs_scandir_next(req)
    if not name then
      break
    end
    local pid = math.tointeger(tonumber(name))
    if pid then
      out[#out + 1] = pid
    end
  end
  return out
end

local function scan(visit)
  for _, pid in ipairs(M.list()) do
    visit(pid)
  end
end

--- Calls visit(pid) for each pid in /proc, then for each pid given out since the scan began
--- (which may not be a process, or not any more). A pid may be visited twice.
---@param visit fun(pid: integer)
function M.each(visit)
  local since = read_number("/proc/sys/kernel/ns_last_pid")
  scan(visit)
  for _ = 1, 1000 do
    local last = read_number("/proc/sys/kernel/ns_last_pid")
    if not (since and last and pid_max) or last == since then
      return
    end
    if (last - since) % pid_max > 4096 then
      scan(visit)
    else
      local pid = since
      while pid ~= last do
        pid = pid + 1 < pid_max and pid + 1 or 1
        visit(pid)
      end
    end
    since = last
  end
end

return M
