--- Debouncer: collects changed paths and fires once the changes have stopped.
---
--- Theory of operation. One timer, restarted by every batch. A single save (one batch) fires
--- after `delay` ms (default 5: a save is one burst of events microseconds apart). When a
--- second batch arrives while the timer is pending, the changes are a storm (a checkout, a
--- formatter over the tree, a build writing files) and the quiet period becomes `storm_delay`
--- (default 30 ms) until it fires, so 5,000 files written by `git checkout` give one rebuild.
--- Paths are kept in first-seen order without duplicates; an overflow marks the burst as
--- "anything may have changed".
local M = {}
M.__index = M

---@class reload.Debouncer
---@field delay number
---@field storm_delay number
---@field clock table
---@field on_fire fun(paths: string[], overflow: boolean)

---@param opts table delay?, storm_delay? (ms), clock, on_fire(paths, overflow)
---@return reload.Debouncer
function M.new(opts)
  local self = setmetatable({
    delay = opts.delay or 5,
    storm_delay = opts.storm_delay or math.max(30, opts.delay or 0),
    clock = opts.clock,
    on_fire = opts.on_fire,
    paths = {},
    seen = {},
    overflow = false,
    timer = nil,
    batches = 0,
  }, M)
  return self
end

--- Adds a batch of changed paths (and/or an overflow) and restarts the quiet period.
---@param paths string[]
---@param overflow? boolean
function M:push(paths, overflow)
  for _, p in ipairs(paths) do
    if not self.seen[p] then
      self.seen[p] = true
      self.paths[#self.paths + 1] = p
    end
  end
  self.overflow = self.overflow or overflow or false
  self.batches = self.batches + 1
  if self.timer then
    self.timer:stop()
  end
  local wait = self.batches > 1 and self.storm_delay or self.delay
  self.timer = self.clock.after(wait, function()
    self.timer = nil
    self:flush()
  end)
end

--- Fires now with what was collected (if anything).
function M:flush()
  if self.timer then
    self.timer:stop()
    self.timer = nil
  end
  local paths, overflow = self.paths, self.overflow
  self.paths, self.seen, self.overflow, self.batches = {}, {}, false, 0
  if #paths > 0 or overflow then
    self.on_fire(paths, overflow)
  end
end

--- Drops what was collected without firing.
function M:cancel()
  if self.timer then
    self.timer:stop()
    self.timer = nil
  end
  self.paths, self.seen, self.overflow, self.batches = {}, {}, false, 0
end

--- True while changes wait for their quiet period.
function M:pending()
  return self.timer ~= nil
end

return M
