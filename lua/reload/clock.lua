--- Time for the engine: a monotonic clock and one-shot timers on luv's loop. Unit specs pass a
--- fake with the same two functions.
local M = {}

local uv = require("luv")

---@class reload.Timer
---@field stop fun(self: reload.Timer)

--- Milliseconds on a monotonic clock.
---@return number
function M.now()
  return uv.hrtime() / 1e6
end

--- Calls fn once after ms milliseconds, unless stopped first.
---@param ms number
---@param fn fun()
---@return reload.Timer
function M.after(ms, fn)
  local t = uv.new_timer()
  local timer = {}
  function timer.stop()
    if not t:is_closing() then
      t:stop()
      t:close()
    end
  end
  -- libuv counts a timer from the loop's cached time, taken when the loop last woke: after a
  -- long callback (a spawn, a /proc read, a loaded machine) it would fire early by that much.
  uv.update_time()
  t:start(math.max(0, math.floor(ms + 0.5)), 0, function()
    timer.stop()
    fn()
  end)
  return timer
end

return M
