--- An instruction budget for the user's functions that reload calls while it runs (`run` and
--- `wrap` functions, Lua build steps): an endless loop in one of them is an error, not a frozen
--- reload that ignores Ctrl-C. The Reloadfile itself gets its own budget while it loads (dsl.lua).
---
--- A count hook on the thread that runs the function counts instructions; past `limit` it
--- raises, and keeps raising at every instruction, so that a pcall in the user's code cannot
--- swallow it. Each call (or each resume of a build step's coroutine) starts a fresh count.
local M = {}

M.limit = 100000000 -- about a second of Lua; a real run function needs a few thousand
local EVERY = 10000

local counts = setmetatable({}, { __mode = "k" })

local function message()
  return ("ran more than %d Lua instructions without returning (an endless loop?) and was " ..
    "stopped"):format(M.limit)
end

local SELF = debug.getinfo(1, "S").source

local function hook()
  local thread = coroutine.running()
  local n = counts[thread]
  if not n then
    return
  end
  if n > M.limit then
    -- Spent: raise at every instruction of the user's code (not of this file's, which is on
    -- its way out of the call).
    local info = debug.getinfo(2, "S")
    if info and info.source ~= SELF then
      error(message(), 2)
    end
    return
  end
  n = n + EVERY
  counts[thread] = n
  if n > M.limit then
    debug.sethook(thread, hook, "", 1)
    error(message(), 2)
  end
end

--- Puts a thread (the running one when nil) on the budget, with a fresh count.
---@param thread? thread
function M.arm(thread)
  thread = thread or coroutine.running()
  counts[thread] = 0
  debug.sethook(thread, hook, "", EVERY)
end

--- Takes a thread off the budget.
---@param thread? thread
function M.disarm(thread)
  thread = thread or coroutine.running()
  counts[thread] = nil
  debug.sethook(thread)
end

--- Calls fn(...) on the budget, under xpcall with a traceback: true and its results, or false
--- and the error.
---@param fn function
---@return boolean ok, any ...
function M.call(fn, ...)
  local thread = coroutine.running()
  local old = table.pack(debug.gethook(thread))
  M.arm(thread)
  local res = table.pack(xpcall(fn, debug.traceback, ...))
  counts[thread] = nil
  if old[1] then
    debug.sethook(thread, old[1], old[2], old[3])
  else
    debug.sethook(thread)
  end
  return table.unpack(res, 1, res.n)
end

return M
