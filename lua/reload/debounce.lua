--- Debouncer: decides when a burst of changes is over, so that one save is one restart.
---
--- Theory of operation. The watcher says of every event whether a writer may still hold the
--- file (`settled`). Each path of a burst is in one of three states:
---
---   writing   created or modified by a writer that has not closed it yet
---   removed   gone; editors that rename the old file away and write a new one come back at
---             once, so a removal counts only after `removal_grace_ms` without the path
---   settled   closed, renamed into place, an attribute change, a removal that stayed
---
--- A temporary file renamed onto a path is the same change as that path (the temp is dropped).
--- So that a temporary file is not taken for a new source file, a file created in the burst
--- counts only `creation_grace_ms` after it was closed, unless it was renamed away by then.
--- The burst fires once every path is settled: at once when it is one path (a save), after
--- `storm_quiet_ms` without events when it is several (a checkout, a formatter over the tree),
--- or after `delay` ms when the user set one (the `debounce` key, `--debounce`). A path still
--- being written `write_cap_ms` after its last event counts as settled (a writer that never
--- closes), and a burst fires `max_ms` after it began whatever is pending (events that never
--- stop). While `held()` says so (a git operation holds .git/index.lock), it waits, up to
--- `hold_max_ms`: a checkout of 500 files is one change.
local M = {}
M.__index = M

M.storm_quiet_ms = 30
M.write_cap_ms = 1000
M.removal_grace_ms = 50
M.creation_grace_ms = 100
M.max_ms = 10000
M.hold_poll_ms = 10
M.hold_max_ms = 60000

---@class reload.Debouncer
---@field delay number|nil the user's quiet period (nil: the save model's own)
---@field clock table
---@field on_fire fun(paths: string[], overflow: boolean, t0: number) t0: the burst's first event

---@class reload.ChangeEvent
---@field path string
---@field kind "create"|"modify"|"close"|"remove"|"rename"
---@field settled? boolean false while a writer may still hold the file
---@field from? string "rename": the old path
---@field dir? boolean

---@param opts table delay? (ms), clock, on_fire(paths, overflow), held?() -> boolean
---@return reload.Debouncer
function M.new(opts)
  local self = setmetatable({
    delay = opts.delay,
    clock = opts.clock,
    on_fire = opts.on_fire,
    held = opts.held,
    timer = nil,
  }, M)
  self:reset()
  return self
end

function M:reset()
  self.order, self.paths = {}, {}
  self.overflow = false
  self.t0, self.t_last, self.t_hold = nil, nil, nil
end

--- Adds a batch of events (or an overflow: anything may have changed) and decides anew when
--- the burst is over. A plain path string counts as a settled change.
---@param events (reload.ChangeEvent|string)[]
---@param overflow? boolean
function M:push(events, overflow)
  local now = self.clock.now()
  self.t0 = self.t0 or now
  self.t_last = now
  for _, ev in ipairs(events) do
    if type(ev) == "string" then
      ev = { path = ev, kind = "modify", settled = true }
    end
    if ev.from and self.paths[ev.from] and self.paths[ev.from].created then
      self:drop(ev.from) -- a temporary file renamed into place: the same change
    end
    local rec = self.paths[ev.path]
    if not rec then
      rec = { created = ev.kind == "create" }
      self.paths[ev.path] = rec
      self.order[#self.order + 1] = ev.path
    end
    rec.t = now
    if ev.kind == "remove" then
      rec.state = "removed"
    elseif ev.kind == "create" or ev.kind == "modify" then
      rec.state = ev.settled == false and "writing" or "settled"
    else -- close, rename
      rec.state = "settled"
    end
  end
  self.overflow = self.overflow or overflow or false
  self:schedule()
end

function M:drop(path)
  self.paths[path] = nil
  for i, p in ipairs(self.order) do
    if p == path then
      table.remove(self.order, i)
      return
    end
  end
end

--- When the burst is over, as far as is known now.
function M:due()
  local last_unsettled = nil
  for _, p in ipairs(self.order) do
    local rec = self.paths[p]
    local until_ = rec.state == "writing" and rec.t + M.write_cap_ms or
      rec.state == "removed" and rec.t + M.removal_grace_ms or
      rec.created and rec.t + M.creation_grace_ms or nil
    if until_ and (not last_unsettled or until_ > last_unsettled) then
      last_unsettled = until_
    end
  end
  local due
  if last_unsettled then
    due = last_unsettled
  else
    local quiet = self.delay
    if not quiet then
      quiet = (#self.order <= 1 and not self.overflow) and 0 or M.storm_quiet_ms
    end
    due = self.t_last + quiet
  end
  return math.min(due, self.t0 + math.max(M.max_ms, self.delay or 0))
end

function M:schedule()
  if self.timer then
    self.timer:stop()
    self.timer = nil
  end
  if not self.t0 then
    return
  end
  local wait = self:due() - self.clock.now()
  if wait <= 0 then
    self:try_fire() -- a complete save: now, not a loop turn later
    return
  end
  self.timer = self.clock.after(wait, function()
    self.timer = nil
    self:try_fire()
  end)
end

--- Fires, unless a git operation is under way (then polls until it is over, or the cap).
function M:try_fire()
  if self.held and self.held() then
    local now = self.clock.now()
    self.t_hold = self.t_hold or now
    if now - self.t_hold < M.hold_max_ms then
      self.timer = self.clock.after(M.hold_poll_ms, function()
        self.timer = nil
        self:try_fire()
      end)
      return
    end
  end
  self:flush()
end

--- Fires now with what was collected (if anything).
function M:flush()
  if self.timer then
    self.timer:stop()
    self.timer = nil
  end
  local paths, overflow, t0 = self.order, self.overflow, self.t0
  self:reset()
  if #paths > 0 or overflow then
    self.on_fire(paths, overflow, t0)
  end
end

--- Drops what was collected without firing.
function M:cancel()
  if self.timer then
    self.timer:stop()
    self.timer = nil
  end
  self:reset()
end

--- True while changes wait for their burst to end.
function M:pending()
  return self.timer ~= nil
end

return M
