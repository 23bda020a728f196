--- One generation: one run of a service's command, from its spawn to the moment its whole tree
--- is gone, and the keeper that stands ready for the next one.
---
--- Theory of operation. The core reports a run as a sequence of events: "started" (exec
--- succeeded), "main-exit" (the main command ended; its descendants may live on), "tree-empty"
--- (every process of the tree is reaped: its ports are free) and "exit" (the keeper and reload's
--- own handles are closed too); "gave-up" in place of "tree-empty" when the keeper could not
--- end some processes (a setuid program reload has no right to signal): those `survivors` keep
--- running outside any tree, and nothing more will go. A generation folds them into what the
--- service acts on:
---
---   started(gen)          the command runs (pid known)
---   ready(gen)            its port accepts connections, or its output matched `ready`
---   main_exit(gen, info)  the main command ended on its own while descendants still run
---   gone(gen, info)       no process of it is left that reload can end: at "tree-empty" or
---                         "gave-up" (info.survivors), or at "exit" when the command never
---                         started or the keeper died; exactly once
---   closed(gen)           reload's handles are closed too (quit waits for this)
---
--- Readiness (port probe, output pattern) belongs to the generation it watches, so a probe of an
--- old generation can never mark a new one up. A spare is a keeper spawned held, without a
--- command; `launch` hands it the command so a restart need not wait for a keeper's exec.
---
--- Every keeper has a gate (keeper_proto.h) that it opens once its tree is gone, and a spare is
--- spawned `after` the generation that runs at the time, on that one's gate. Launched primed,
--- a spare starts the command as soon as that gate opens, before reload has even read the old
--- tree's end; the service adopts the generation once it has (`adopt`), and until then the
--- generation holds back what it would report.
local M = {}
M.__index = M

local log = require("reload.log")
local ports = require("reload.ports")
local uv = require("luv")

---@class reload.Generation
---@field n integer its number within the service (1, 2, ...)
---@field proc any the core Process
---@field pid integer|nil the main command's pid, once started
---@field argv string[]
---@field t_spawn number clock time of the spawn (or of go() on a spare)
---@field t_started number|nil
---@field t_stop number|nil clock time of the stop request
---@field main_exit table|nil the main command's exit, once seen
---@field is_gone boolean
---@field is_ready boolean
---@field stopping boolean
---@field foreground boolean|nil its group was given reload's terminal (`stdin = true`)

--- Spawns a held keeper without a command: the next generation's, ready before it is needed.
---@param ctx table name, core, spawn_opts(argv?, env?, holder) -> core options
---@param after reload.Generation|nil the generation that runs now: its gate is the spare's
---@return table|nil spare { proc, after, gen?, dead?, on_gone? }
function M.spare(ctx, after)
  local spare = {}
  spare.on_event = function(ev)
    if spare.gen then
      spare.gen:on_core_event(ev)
    elseif ev.type == "exit" then
      spare.dead = true
      if spare.on_gone then
        spare.on_gone()
      end
    end
  end
  local opts = ctx.spawn_opts(nil, nil, spare)
  opts.hold = true
  opts.gate = true
  opts.after = after and not after.closed and after.proc or nil
  spare.after = opts.after and after or nil
  -- The keeper stays in the directory it was started in: if that directory is deleted and made
  -- again (a checkout, a script), the spare must not be used (see M.usable).
  spare.cwd_id = M.dir_id(opts.cwd)
  if not spare.cwd_id then
    return nil -- no such directory: the launch says so
  end
  local proc, err = ctx.core.spawn(opts)
  if not proc then
    -- A directory deleted in between (the project root going away) fails the spawn's chdir,
    -- which libuv reports as ENOENT for the program: not the keeper's fault, and the launch
    -- says what is missing.
    if M.dir_id(opts.cwd) then
      log.error("%s: cannot start a keeper: %s", ctx.name, tostring(err))
    end
    return nil
  end
  spare.proc = proc
  return spare
end

--- "dev:inode" of a directory, or nil when there is none.
---@param path string
---@return string|nil
function M.dir_id(path)
  local st = uv.fs_stat(path)
  if not st or st.type ~= "directory" then
    return nil
  end
  return ("%d:%d"):format(st.dev, st.ino)
end

--- Can this spare run the next command in `cwd`? Not once it died, nor when cwd is not the
--- directory the keeper was started in any more.
---@param spare table|nil
---@param cwd string
---@return boolean
function M.usable(spare, cwd)
  return spare ~= nil and not spare.dead and spare.cwd_id == M.dir_id(cwd)
end

--- Starts generation n running argv with env: in the spare keeper if one is given, else in a
--- new one. Returns the generation, or nil and an error message.
---@param ctx table name, core, clock, cfg, spawn_opts(argv, env, holder) -> core options
---@param n integer
---@param argv string[]
---@param env string[]
---@param spare table|nil
---@param on table handlers: started, ready, main_exit, gone, closed (each fn(gen, info))
---@param opts? { prime?: boolean } prime: in the spare (required), started once the gate of
--- the generation it comes after opens; `on` is called from `adopt` on
---@return reload.Generation|nil, string|nil
function M.launch(ctx, n, argv, env, spare, on, opts)
  local prime = opts and opts.prime
  local self = setmetatable({
    n = n, ctx = ctx, argv = argv, on = on, is_gone = false, is_ready = false,
    stopping = false, seen = "", timers = {},
  }, M)
  self.t_spawn = ctx.clock.now()
  if opts and opts.after then
    return self:queue_after(opts.after, env)
  end
  if prime then
    if not spare or spare.dead then
      return nil, "no spare keeper"
    end
    self.primed = true
    self.on = M.held(on, self)
  end
  if spare and not spare.dead then
    spare.gen = self
    self.holder, self.cwd_id = spare, spare.cwd_id
    self.foreground = spare.foreground
    self.proc = spare.proc
    self.proc:go({ cmd = argv, env = env, prime = prime or nil })
    return self
  end
  local holder = { gen = self } -- gen: the one whose events come (next runs of its keeper)
  holder.on_event = function(ev)
    holder.gen:on_core_event(ev)
  end
  local spawn_opts = ctx.spawn_opts(argv, env, holder)
  self.holder, self.cwd_id = holder, M.dir_id(spawn_opts.cwd)
  spawn_opts.gate = true -- for the spare of the generation after it
  local proc, err = ctx.core.spawn(spawn_opts)
  if not proc then
    return nil, tostring(err)
  end
  self.proc = proc
  self.foreground = holder.foreground
  return self
end

--- Primed as the next run of `after`'s keeper (core's p:next): the keeper starts it itself
--- the moment after's tree is empty, with no other process to wake; until adopted it is held
--- like any primed generation. after's events are this one's from after's end on.
---@param after reload.Generation
---@param env string[]
function M:queue_after(after, env)
  local ok, err = after.proc:next({ cmd = self.argv, env = env })
  if not ok then
    return nil, err
  end
  self.primed, self.reused = true, true
  self.on = M.held(self.on, self)
  self.proc, self.holder, self.cwd_id = after.proc, after.holder, after.cwd_id
  self.foreground = after.foreground
  after.successor = self
  return self
end

--- Can the next run be queued in this generation's keeper (queue_after)? While its tree has
--- not been reported gone, in the directory the keeper runs in, by a core that can.
---@param cwd string
---@return boolean
function M:takes_next(cwd)
  return self.proc.next ~= nil and not self.is_gone and not self.closed and
    not self.successor and self.cwd_id ~= nil and self.cwd_id == M.dir_id(cwd)
end

--- `on` for a primed generation: each call waits in a queue until `adopt` (or `cancel`).
function M.held(on, gen)
  gen.queue = {}
  local held = {}
  for name, fn in pairs(on) do
    held[name] = function(...)
      if gen.queue then
        gen.queue[#gen.queue + 1] = table.pack(fn, ...)
      else
        fn(...)
      end
    end
  end
  return held
end

--- The service takes a primed generation as its current one: its command is released (if the
--- gate did not start it already: reload has now seen the old tree gone itself), then what it
--- held back is reported, in order.
function M:adopt()
  if self.primed then
    self.primed = false
    if not self.reused then -- a next run started itself
      self.proc:go()
    end
  end
  local queue = self.queue
  self.queue = nil
  for _, call in ipairs(queue or {}) do
    call[1](table.unpack(call, 2, call.n))
  end
end

--- A primed generation that will not be adopted (quit): stopped, whether or not the gate
--- started it, and reported from now on like any other.
---@param force? boolean
function M:cancel(force)
  self:stop(force)
  self.primed = false
  self:adopt()
end

--- The keeper will not run it (a next run dropped): gone, cancelled; closed too unless the
--- keeper's later events are its own.
function M:dropped()
  self:finish({ cancelled = true })
  if self.holder.gen ~= self and not self.closed then
    self.closed = true
    self.on.closed(self, {})
  end
end

--- Output of the command: to the service's writer (or the terminal) and, while a `ready`
--- pattern waits, into the pattern matcher.
function M:on_output(chunk)
  local ready = self.ctx.cfg.ready
  if ready and ready.pattern and chunk and not self.is_ready and not self.is_gone then
    self.seen = (self.seen .. chunk):sub(-4096)
    if self.seen:find(ready.pattern, 1, ready.plain) then
      self:became_ready()
    end
  end
end

function M:on_core_event(ev)
  if ev.type == "dropped" then
    local next_ = self.successor
    self.successor = nil
    if next_ then
      next_:dropped()
    elseif self.reused then
      self:dropped()
    end
    return
  end
  if ev.type == "started" then
    self.pid = ev.pid
    self.t_started = self.ctx.clock.now()
    self.on.started(self)
    self:watch_readiness()
  elseif ev.type == "main-exit" then
    self.main_exit = ev
    if self.mixed and not self.is_gone then
      self:stop_rest()
    end
    if not self.is_gone then
      self.on.main_exit(self, ev)
    end
  elseif ev.type == "tree-empty" or ev.type == "gave-up" then
    self:finish(ev)
  elseif ev.type == "exit" then
    local next_ = self.successor
    self:finish(ev)
    if next_ and not next_.pid then -- its keeper ended before starting it
      next_:on_core_event({ type = "exit", cancelled = true, status = ev.status })
    end
    if not self.closed then
      self.closed = true
      self.on.closed(self, ev)
    end
  end
end

--- The tree is gone: stop watching it and report once, with the main command's status.
function M:finish(ev)
  if self.is_gone then
    return
  end
  self.is_gone = true
  self:cancel_timers()
  local info = {
    forced = ev.forced,
    spawn_error = ev.spawn_error,
    fallback = ev.fallback,
    cancelled = ev.cancelled,
    stopped = self.stopping,
    survivors = ev.survivors,
    survivors_total = ev.survivors_total,
  }
  local main = self.main_exit or ev
  info.code, info.signal = main.code, main.signal
  if ev.status then
    info.status = ev.status
  elseif main.signal then
    info.status = 128 + main.signal
  else
    info.status = main.code
  end
  if self.t_stop then
    info.stop_ms = self.ctx.clock.now() - self.t_stop
  end
  self.on.gone(self, info)
  local next_ = self.successor
  if next_ and self.holder.gen == self then
    -- Its keeper runs the next one now: what it reports is the next one's, and the handles
    -- are no longer this one's to wait for.
    self.holder.gen = next_
    self.closed = true
    self.on.closed(self, ev)
  end
end

-- Readiness ---------------------------------------------------------------------------------

function M:after(ms, fn)
  local t
  t = self.ctx.clock.after(ms, function()
    self.timers[t] = nil
    fn()
  end)
  self.timers[t] = true
  return t
end

function M:cancel_timers()
  for t in pairs(self.timers) do
    t:stop()
  end
  self.timers = {}
end

function M:watch_readiness()
  local ready = self.ctx.cfg.ready
  if self.ctx.cfg.task then
    return -- a task counts as up once it exited 0
  end
  if not ready then
    self:became_ready()
    return
  end
  if ready.port then
    local handed = require("reload.schema").handed_off(self.ctx.cfg.listen, ready.port,
      ready.host)
    if handed then
      self:probe_request(handed)
    else
      self:probe_port(ready.port, ready.host)
    end
  end
  self:after(ready.timeout * 1000, function()
    if not self.is_ready and not self.is_gone then
      log.warn("%s: not ready after %s (%s)", self.ctx.name, log.duration(ready.timeout * 1000),
        ready.port and ("port " .. ready.port) or ("output matching '" .. ready.pattern .. "'"))
    end
  end)
end

function M:probe_port(port, host)
  local function poll()
    if self.is_ready or self.is_gone or self.stopping then
      return
    end
    ports.connectable(port, function(ok)
      if self.is_ready or self.is_gone or self.stopping then
        return
      end
      if ok then
        self:became_ready()
      else
        self:after(20, poll)
      end
    end, host)
  end
  poll()
end

--- Readiness of a port reload holds (`listen`): the connection waits in the backlog until this
--- generation accepts it, so ready means it answered a request (ports.answers). One probe: it
--- waits for as long as the generation runs, and the timeout only warns, as for a port.
function M:probe_request(entry)
  local probe
  probe = ports.answers(entry.host, entry.port, function()
    self.timers[probe] = nil
    self:became_ready()
  end)
  self.timers[probe] = true -- stopped with the timers: when ready, stopping or gone
end

function M:became_ready()
  if self.is_ready or self.is_gone or self.stopping then
    return
  end
  self.is_ready = true
  self.t_ready = self.ctx.clock.now()
  self:cancel_timers()
  self.on.ready(self)
end

-- Control -----------------------------------------------------------------------------------

--- Stops the whole tree: the configured signal, then SIGKILL after the grace (force: at once).
--- With `stop.to = "main"` the signal goes to the main process alone (systemd's KillMode=mixed):
--- a pre-forking master such as gunicorn's stops its own workers gracefully, where a signal to
--- each of them would have it fork new ones first. Once it exits, what is left of the tree gets
--- the usual teardown in the grace that remains; at the grace's end, SIGKILL for all.
---@param force? boolean
---@param linger? boolean a next generation may be queued in its keeper (core's stop{ linger })
function M:stop(force, linger)
  if self.closed then
    return
  end
  self.linger = self.linger or linger or nil
  if self.reused and not self.pid then
    -- Queued in its keeper, not reported started: "dropped" follows, or the keeper stops it if
    -- it has just started it. A stop of the handle now would be the run before's.
    self.stopping = true
    self.proc:drop_next()
    return
  end
  if not self.stopping then
    self.stopping = true
    self.t_stop = self.ctx.clock.now()
    self:cancel_timers()
  end
  if force then
    self.proc:kill()
  elseif not self.is_gone then
    local stop = self.ctx.cfg.stop
    if stop.to == "main" and self.pid and not self.main_exit and not self.mixed then
      self.mixed = true
      self.proc:signal(stop.signal, "main")
      self:after(stop.grace * 1000, function()
        if not self.is_gone then
          self.proc:kill()
        end
      end)
    elseif not self.mixed then
      self.proc:stop(self.linger and { linger = true } or nil)
    end
  end
end

--- The main command of a tree stopped with `stop.to = "main"` exited: the rest of the tree (if
--- any is left) gets the configured signal, then SIGKILL once the grace is over.
function M:stop_rest()
  local stop = self.ctx.cfg.stop
  local left = stop.grace * 1000 - (self.ctx.clock.now() - self.t_stop)
  self:cancel_timers()
  self.proc:stop({ signal = stop.signal, grace_ms = math.max(0, math.floor(left)),
    linger = self.linger })
end

--- True while any process of this generation may still be alive.
function M:alive()
  return not self.is_gone
end

return M
