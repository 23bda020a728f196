--- Fakes for unit specs: a clock whose timers fire only when the spec advances it, and a core
--- whose processes change state only when the spec says so. Pure Lua, no loop, no sleeps.
local M = {}

--- A fake clock: now() and after(ms, fn); advance(ms) fires due timers in time order.
function M.clock()
  local clock = { t = 0, timers = {} }
  function clock.now()
    return clock.t
  end
  function clock.after(ms, fn)
    local timer = { due = clock.t + ms, fn = fn, active = true }
    function timer.stop()
      timer.active = false
    end
    clock.timers[#clock.timers + 1] = timer
    return timer
  end
  function clock.advance(ms)
    local target = clock.t + ms
    while true do
      local next_timer
      for _, t in ipairs(clock.timers) do
        if t.active and t.due <= target and (not next_timer or t.due < next_timer.due) then
          next_timer = t
        end
      end
      if not next_timer then
        break
      end
      next_timer.active = false
      clock.t = math.max(clock.t, next_timer.due)
      next_timer.fn()
    end
    clock.t = target
  end
  function clock.pending()
    local n = 0
    for _, t in ipairs(clock.timers) do
      if t.active then
        n = n + 1
      end
    end
    return n
  end
  return clock
end

local Proc = {}
Proc.__index = Proc

function Proc:status()
  return self.state
end

function Proc:stop(opts)
  self.stops = self.stops + 1
  self.stop_opts = opts
  -- As proc.c: a stop without linger, no run queued, says "bye" (no next run may follow).
  self.said_bye = self.said_bye or (not (opts and opts.linger) and not self.queued)
  if self.state ~= "exited" then
    self.state = "stopping"
  end
end

--- A held run (spawned with hold = true) starts its command; go{ cmd, env } brings it. With
--- prime = true it waits, as the real keeper does, for the gate of the run it was spawned
--- `after` (that run's tree gone: `opened`) or for a later go(). `gos` counts the starts.
function Proc:go(opts)
  if opts then
    self.opts.cmd, self.opts.env = opts.cmd, opts.env
  end
  if self.state == "held" and opts and opts.prime and not self.gate_open then
    self.state = "primed"
    self.primes = (self.primes or 0) + 1
  elseif self.state == "held" or self.state == "primed" then
    self.state = "starting"
    self.gos = self.gos + 1
  end
end

--- This run's tree is gone: the run spawned after it, on its gate, may start.
function Proc:opened()
  for _, p in ipairs(self.core.spawned) do
    if p.opts.after == self then
      p.gate_open = true
      if p.state == "primed" then
        p.state = "starting"
        p.gos = p.gos + 1
      end
    end
  end
end

--- A core made with fake.core{ next = true } has the real core's p:next{ cmd, env }: the keeper
--- queues the command and runs it the moment its tree is empty, before it says so (keeper_proto.h
--- "next N"); nil and the real core's reason when it cannot. `nexts` counts the runs queued.
local function next_run(self, opts)
  if self.emptied or self.state == "exited" or self.said_bye then
    return nil, "the keeper has finished"
  end
  if not self.pid_ then
    return nil, "the keeper runs nothing"
  end
  if self.queued then
    return nil, "a next run is queued already"
  end
  self.queued = { cmd = opts.cmd, env = opts.env }
  self.nexts = (self.nexts or 0) + 1
  return true
end

--- p:drop_next(): a queued run that has not started is dropped ("dropped").
local function drop_next(self)
  if self.queued then
    self.queued = nil
    self.opts.on_event({ type = "dropped" })
  end
end

--- The keeper starts its queued run: a new run of the same handle, with its own pid.
function Proc:run_next()
  local run = self.queued
  self.queued, self.emptied, self.main_status, self.pid_, self.said_bye = nil, nil, nil, nil, nil
  self.opts.cmd, self.opts.env = run.cmd, run.env
  self.runs = (self.runs or 1) + 1
  self:start(1000 + 100 * self.runs + self.id)
end

--- The spec makes the tree report "tree-empty" (every process reaped; "exit" comes later). A
--- queued next run has started by then (the real keeper starts it first, then reports both).
function Proc:empty(forced)
  if self.emptied then
    return
  end
  self.emptied = true
  self:opened()
  local queued = self.queued
  self.opts.on_event({ type = "tree-empty", forced = forced or false })
  if queued and self.queued == queued then
    self:run_next()
  end
end

--- The spec makes the main command exit while its descendants live on ("main-exit").
function Proc:main_exit(status)
  self.main_status = status
  self.state = "main-exited"
  self.opts.on_event({ type = "main-exit", code = status < 128 and status or nil,
    signal = status >= 128 and status - 128 or nil })
end

--- Descendants still alive (the spec sets proc.left to a number).
function Proc:descendants()
  local out = {}
  for i = 1, self.left or 0 do
    out[i] = { pid = 5000 + i, ppid = 1, pgid = 1, comm = "helper" }
  end
  return out
end

--- A signal to the main process, its group or the tree, with no teardown: recorded.
function Proc:signal(sig, scope)
  self.signals = self.signals or {}
  self.signals[#self.signals + 1] = { sig = sig, scope = scope or "group" }
end

function Proc:kill()
  self.kills = self.kills + 1
  if self.state ~= "exited" then
    self.state = "forcing"
  end
end

--- The spec makes the process report "started".
function Proc:start(pid)
  self.pid_ = pid or (1000 + self.id)
  self.state = "running"
  self.opts.on_event({ type = "started", pid = self.pid_, pgid = self.pid_ })
end

--- The spec makes the process tree end with a status, with the real core's sequence of
--- events: "main-exit" (unless already sent, or exec failed), "tree-empty" (unless the command
--- never ran), then "exit". spec/functional/contract_spec.lua holds both to the same traces.
function Proc:exit(status, extra)
  extra = extra or {}
  local ran = self.state ~= "held" and not extra.spawn_error and not extra.cancelled
  if self.opts.on_stdout and extra.output then
    self.opts.on_stdout(extra.output)
  end
  if ran and not self.pid_ then
    self:start() -- the real core reports "started" for every command that ran
  end
  if ran and not self.main_status then
    self:main_exit(status)
  end
  if ran then
    self:empty(extra.forced)
  else
    self:opened()
  end
  self.state = "exited"
  local ev = { type = "exit", status = status, forced = false }
  if ran or extra.spawn_error then -- the main command's code or signal (127/126: exec failed)
    ev.code = status < 128 and status or nil
    ev.signal = status >= 128 and status - 128 or nil
  end
  for k, v in pairs(extra) do
    if k ~= "output" then
      ev[k] = v
    end
  end
  self.opts.on_event(ev)
end

--- The spec makes the keeper give up on processes it could not stop, as the real core reports
--- it: "gave-up" in place of "tree-empty", then "exit", both with the survivors.
---@param survivors table[] { {pid=, uid=, comm=, error=}, ... }
function Proc:give_up(survivors)
  self.emptied = true
  self:opened()
  self.opts.on_event({ type = "gave-up", forced = true, survivors = survivors })
  self.state = "exited"
  self.opts.on_event({ type = "exit", status = 0, forced = true, survivors = survivors })
end

function Proc:pid()
  return self.pid_
end

--- A fake core: spawn records every call; glob matches with a small wildmatch subset. With
--- opts.next, its processes have next() and drop_next() (the keeper runs the next generation);
--- without, the engine takes the spare keepers' path.
---@param options? { next: boolean? }
function M.core(options)
  local core = { spawned = {} }
  local with_next = options and options.next
  function core.spawn(spawn_opts)
    local p = setmetatable({ opts = spawn_opts, id = #core.spawned + 1, core = core,
      state = spawn_opts.hold and "held" or "starting", stops = 0, kills = 0, gos = 0 }, Proc)
    if with_next then
      p.next, p.drop_next = next_run, drop_next
    end
    core.spawned[#core.spawned + 1] = p
    return p
  end
  --- The last process spawned whose argv contains `text` (a spare: once go() gave it one).
  function core.last(text)
    for i = #core.spawned, 1, -1 do
      local p = core.spawned[i]
      if p.opts.cmd and table.concat(p.opts.cmd, " "):find(text, 1, true) then
        return p
      end
    end
  end
  --- Spares: processes spawned held without a command that no go() has started.
  function core.spares()
    local out = {}
    for _, p in ipairs(core.spawned) do
      if p.opts.hold and not p.opts.cmd and p.state == "held" then
        out[#out + 1] = p
      end
    end
    return out
  end
  --- How many processes were spawned whose argv contains `text`.
  function core.count(text)
    local n = 0
    for _, p in ipairs(core.spawned) do
      if p.opts.cmd and table.concat(p.opts.cmd, " "):find(text, 1, true) then
        n = n + 1
      end
    end
    return n
  end
  local function to_pattern(glob)
    local p = glob:gsub("[%^%$%(%)%%%.%[%]%+%-]", "%%%0")
    p = p:gsub("%*%*/", "\1"):gsub("%*%*", "\2"):gsub("%*", "[^/]*"):gsub("%?", "[^/]")
    p = p:gsub("\1", ".-"):gsub("\2", ".*")
    return "^" .. p .. "$"
  end
  local function glob(pattern)
    local pat = to_pattern(pattern)
    local basename = not pattern:find("/")
    return {
      match = function(_, path)
        if basename then
          return path:match("[^/]*$"):find(pat) ~= nil or path:find(pat) ~= nil
        end
        return path:find(pat) ~= nil
      end,
    }
  end
  --- One glob, or a list where the last matching pattern decides and "!glob" excludes.
  function core.glob(pattern)
    if type(pattern) == "string" then
      return glob(pattern)
    end
    local list = {}
    for i, p in ipairs(pattern) do
      list[i] = { negate = p:sub(1, 1) == "!", g = glob((p:gsub("^!", ""))) }
    end
    return {
      match = function(_, path)
        local res = false
        for _, item in ipairs(list) do
          if item.g:match(path) then
            res = not item.negate
          end
        end
        return res
      end,
    }
  end
  function core.ignore(opts)
    local globs = {}
    for _, p in ipairs(opts.patterns) do
      globs[#globs + 1] = glob((p:gsub("/$", "/**")))
    end
    return {
      ignored = function(_, path)
        for _, g in ipairs(globs) do
          if g:match(path) then
            return true
          end
        end
        return false
      end,
    }
  end
  function core.watch(opts)
    core.watcher = { opts = opts, closed = false }
    function core.watcher.stats()
      return { dirs = 1, files = 0, backend = "fake" }
    end
    function core.watcher.close()
      core.watcher.closed = true
    end
    return core.watcher
  end
  --- The spec delivers a batch of changed paths.
  function core.change(...)
    local batch = {}
    for _, p in ipairs({ ... }) do
      batch[#batch + 1] = { path = p, kind = "modify" }
    end
    core.watcher.opts.on_events(batch)
  end
  return core
end

return M
