--- Loop guard: tells a service whose own start keeps restarting it.
---
--- Theory of operation. A tool that writes a file with a generated name into the watched tree
--- at every start (Vite 5's vite.config.js.timestamp-<ms>-<hash>.mjs) restarts its service, whose
--- start writes the next one, and so on. A burst looks self-made when it begins within `window`
--- ms of the latest start and names a new file of the same shape as the burst before did (runs
--- of digits and hex hashes made `*`). At `after` such bursts in a row it is a loop: the guard
--- says so once (with the glob to ignore) and delays each further restart, doubling from
--- `backoff_ms` to `backoff_max_ms`. Any other burst resets it. The same file rewritten at every
--- start cannot be told from a user or a script saving it as fast as the service restarts, so
--- it is not taken for a loop: such files belong in the recipes' ignores.
local M = {}
M.__index = M

M.window_ms = 2000
M.after = 3
M.backoff_ms = 2000
M.backoff_max_ms = 30000

--- The shape of a generated name: runs of hex hashes and of digits made `*`
--- (vite.config.js.timestamp-1732981234567-9b1e5a.mjs -> vite.config.js.timestamp-*-*.mjs).
---@param path string
---@return string
function M.shape(path)
  return (path:gsub("%x%x%x%x%x%x+", "*"):gsub("%d+", "*"))
end

---@return table
function M.new()
  return setmetatable({ record = nil }, M)
end

--- A burst is over: returns nil (restart now), or the delay in ms before the restart and, the
--- first time of a loop, the glob that would stop it.
---@param paths string[]
---@param t0 number when the burst began
---@param started number|nil when the latest generation started
---@param overflow? boolean
---@return number|nil delay, string|nil glob
function M:burst(paths, t0, started, overflow)
  local soon = not overflow and started ~= nil and t0 ~= nil and t0 >= started and
    t0 - started < M.window_ms
  if not soon then
    self.record = nil
    return nil
  end
  local rec = self.record
  local shapes, names, again = {}, {}, false
  for _, p in ipairs(paths) do
    local sh = M.shape(p)
    shapes[sh], names[p] = true, true
    if rec and rec.shapes[sh] and not rec.names[p] then
      again = true
    end
  end
  if again then
    rec.count, rec.shapes, rec.names = rec.count + 1, shapes, names
  else
    rec = { count = 1, shapes = shapes, names = names }
    self.record = rec
  end
  if rec.count < M.after then
    return nil
  end
  rec.delay = rec.delay and math.min(rec.delay * 2, M.backoff_max_ms) or M.backoff_ms
  local glob = nil
  if not rec.said then
    rec.said = true
    glob = M.shape(paths[1])
  end
  return rec.delay, glob
end

--- True when the next self-made burst may be held back (a restart should not be begun early).
function M:suspicious()
  return self.record ~= nil and self.record.count >= M.after - 1
end

--- How many self-made bursts in a row so far.
function M:count()
  return self.record and self.record.count or 0
end

return M
