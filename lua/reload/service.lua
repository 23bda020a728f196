--- One service: the lifecycle of its generations, as one explicit state machine.
---
--- Theory of operation. A service runs one generation of its command at a time (see
--- generation.lua: a generation is gone once every process of its tree is). Every way into a
--- restart is an event into the same transitions table, never a side path: a file change (after
--- the debouncer), a Reloadfile edit (`reconfigure`), the crash policy, the `r` key, a task it
--- comes `after` running again. The states, each holding its own data:
---
---   idle                       before the first start
---   preparing{job, changes}    the pipeline builds and evaluates the next command; the current
---                              generation (if any) keeps serving
---   stopping{next, quit}       the current generation is being stopped; `next` is what follows
---                              once it is gone: a plan to launch, changes to prepare, or
---                              nothing yet (an early stop while a burst of changes settles)
---   settling                   the old generation is gone, the burst is not over yet
---   waiting{plan}              a plan waits for the services it comes `after` to be up
---   starting{plan, gen}        the new generation is spawned (or waits for its port to be free)
---   running / ready            it runs; ready once its port or output says so (`up`)
---   backoff{timer}             it crashed; the restart policy waits before the next start
---   exited / crashed / failed / done   at rest until a change (done: a task that exited 0)
---   stopped                    quit
---
--- Two rules hold on every path, and are checked in one place each: a generation is spawned
--- only when no process of the previous one is alive (`spawn`), and the current generation is
--- stopped only once the next command is known to be runnable: its build passed and its `run`
--- and `wrap` functions were evaluated (`preparing` → `prepared`). A failed preparation leaves
--- the current generation serving and says why.
---
--- One exception to the first rule, said out loud: a process that reload has no right to stop
--- (a setuid program or sudo that the command started; kill() answers EPERM) outlives every
--- SIGKILL. The keeper gives up on it once its stop is over, and the generation counts as gone
--- with `survivors`: each is named (`left_running`), and the next generation starts anyway,
--- its restart line saying how many of the previous one still run. Waiting would keep the
--- service down for good over a process that no restart can end.
---
--- Events are handled to completion, one at a time: an event raised while another is handled
--- (a pipeline that finishes at once) is queued behind it.
local M = {}
M.__index = M

local buildview = require("reload.buildview")
local changesets = require("reload.changes")
local command = require("reload.command")
local debounce = require("reload.debounce")
local generation = require("reload.generation")
local log = require("reload.log")
local loopguard = require("reload.loopguard")
local pipeline = require("reload.pipeline")
local ports = require("reload.ports")
local schema = require("reload.schema")
local sockets = require("reload.sockets")
local vcs = require("reload.vcs")

M.backoff_base_ms = 250
M.backoff_max_ms = 10000
M.stable_ms = 10000
M.spare_delay_ms = 50 -- after a start, before the next run's keeper is spawned
M.port_poll_ms = 50

---@class reload.Service
---@field cfg reload.ServiceConfig the definition the current generation runs with
---@field next_cfg reload.ServiceConfig|nil a new definition, applied at the next launch
---@field name string
---@field state table { name = "...", ... } (see the theory of operation)
---@field up boolean counts as up for the services that come `after` it
---@field gen reload.Generation|nil the current generation, while any process of it lives
---@field generations integer how many were launched
---@field debouncer reload.Debouncer

---@class reload.ServiceOptions
---@field cfg reload.ServiceConfig
---@field root string
---@field core table
---@field clock table
---@field env table<string, string> reload's environment
---@field output fun(chunk: string|nil)|nil nil: the terminal
---@field flags table|nil
---@field notify fun(title: string, body: string)|nil
---@field clear boolean|nil clear the screen before each rebuild
---@field on_change fun(svc: reload.Service)|nil called when state or up changes
---@field emit fun(ev: table)|nil lifecycle events for tools (the JSON log, the dev proxy): see
--- M:emit
---@field deps_up fun(svc: reload.Service): boolean|nil are the services it comes after up?
---@field vcs_busy fun(): boolean|nil is a git operation under way (default: vcs.busy(root))
---@field on_ran_again fun(svc: reload.Service)|nil a task that was done ran again and is done

---@param opts reload.ServiceOptions
---@return reload.Service
function M.new(opts)
  local self = setmetatable({
    cfg = opts.cfg,
    name = opts.cfg.name,
    root = opts.root,
    core = opts.core,
    clock = opts.clock,
    base_env = opts.env,
    output = opts.output,
    flags = opts.flags,
    notify = opts.notify,
    clear = opts.clear,
    on_change = opts.on_change or function() end,
    emit_fn = opts.emit,
    deps_up = opts.deps_up or function() return true end,
    on_ran_again = opts.on_ran_again or function() end,
    said_waiting = false,
    tasks_done = 0, -- how many times a task (`task = true`) reached done
    state = { name = "idle" },
    up = false,
    gen = nil,
    generations = 0,
    crashes = 0,
    queue = {},
    open = {}, -- generations whose handles are not closed yet (quit waits for them)
    survivors = {}, -- processes of its generations that could not be stopped (left_running)
    loopguard = loopguard.new(),
  }, M)
  self:compile(self.cfg)
  self.debouncer = debounce.new({
    delay = self.cfg.debounce,
    clock = self.clock,
    held = opts.vcs_busy or function()
      return vcs.busy(self.root)
    end,
    on_fire = function(paths, overflow, t0)
      self:burst(paths, overflow, t0)
    end,
  })
  return self
end

-- What concerns it -------------------------------------------------------------------------

--- Compiles its watch globs and ignore patterns with the core.
---@param cfg reload.ServiceConfig
function M:compile(cfg)
  -- One list: a later "!glob" excludes again. The schema compiled it with the core already, so
  -- it cannot raise here.
  local watch = self.core.glob(cfg.watch)
  local patterns = cfg.ignore
  if cfg.proxy and #cfg.proxy.css > 0 then
    -- Stylesheets the dev proxy swaps in the browser: no restart for them.
    patterns = table.move(cfg.proxy.css, 1, #cfg.proxy.css, #cfg.ignore + 1,
      table.move(cfg.ignore, 1, #cfg.ignore, 1, {}))
  end
  local ignore = nil
  if #patterns > 0 then
    ignore = self.core.ignore({ root = self.root, patterns = patterns, defaults = false,
      gitignore = false })
  end
  self.watch, self.ignore, self.watch_globs = watch, ignore, cfg.watch
end

--- Could a watch glob match a path below dir? A glob without a slash (but a trailing one)
--- matches at any depth; one with a slash is anchored at the root, so its literal leading
--- directories must agree with dir's ("src/**" never matches below "run/").
---@param glob string
---@param dir string relative to the root, no trailing slash
---@return boolean
local function may_match_below(glob, dir)
  if glob:sub(1, 1) == "!" then
    return false
  end
  local body = glob:gsub("^/", "")
  if not body:sub(1, -2):find("/", 1, true) then
    return true
  end
  local literal = body:match("^[^*?%[{\\]*")
  local prefix = literal:match("^(.*/)") or ""
  local below = dir .. "/"
  return below:sub(1, #prefix) == prefix or prefix:sub(1, #below) == below
end

--- Does a changed file concern this service?
---@param path string relative to the root
---@return boolean
function M:concerns(path)
  if self.ignore and self.ignore:ignored(path) then
    return false
  end
  return self.watch:match(path)
end

--- Does a removed or moved directory (standing for its subtree) concern it?
---@param path string
---@return boolean
function M:concerns_dir(path)
  if self.ignore and self.ignore:ignored(path, true) then
    return false
  end
  for _, glob in ipairs(self.watch_globs or { "**" }) do
    if may_match_below(glob, path) then
      return true
    end
  end
  return false
end

-- Inputs -------------------------------------------------------------------------------------

--- Starts it (the engine calls this once the services it comes after are up).
function M:start()
  self:dispatch({ type = "start" })
end

--- A batch of changes that concern it: the debouncer collects them and fires once the burst
--- is over. The first batch of a burst may stop the old tree at once (`settling`).
---@param events reload.ChangeEvent[]
---@param overflow? boolean
function M:changes(events, overflow)
  if self.state.name == "idle" or self.state.name == "stopped" then
    return
  end
  -- The early stop first: the old tree's teardown starts before the burst is judged.
  self:dispatch({ type = "settling" })
  self.debouncer:push(events, overflow)
end

--- The project root is gone: the changes collected so far went with it, and no restart may
--- start a command there (the engine holds the next batches until it is back).
function M:hold()
  self.debouncer:cancel()
  if self.loop_timer then
    self.loop_timer:stop()
    self.loop_timer = nil
  end
end

--- A burst of changes is over: restart, unless the loop guard holds it back (its own start
--- keeps writing a watched file: see loopguard.lua). overflow: anything may have changed (true,
--- events were lost; or a string saying why).
function M:burst(paths, overflow, t0)
  local cause = type(overflow) == "string" and overflow or overflow and "events were lost" or
    (log.paths(paths) .. " changed")
  if self.loop_timer then
    self.loop_timer:stop()
    self.loop_timer = nil
  end
  local ev = { type = "change", changed = paths, cause = cause }
  local delay, glob = self.loopguard:burst(paths, t0, self.last_started, overflow)
  if not delay then
    self:dispatch(ev)
    return
  end
  if glob then
    log.warn("%s: restarted %d times in a row because of %s, which its own start wrote: add " ..
      "ignore = { %q } to the service (or to the Reloadfile's ignore)", self.name,
      self.loopguard:count(), log.escape(paths[1]), glob)
    self:emit("loop", { paths = paths, ignore = glob })
  end
  log.warn("%s: %s changed right after the start again; restarting in %s", self.name,
    log.paths(paths), log.duration(delay))
  self.loop_timer = self.clock.after(delay, function()
    self.loop_timer = nil
    self:dispatch(ev)
  end)
end

--- Restarts it now (the `r` key, a task it comes after that ran again).
---@param cause string
function M:restart(cause)
  if self.state.name == "idle" or self.state.name == "stopped" then
    return
  end
  self.debouncer:cancel()
  self:dispatch({ type = "change", changed = {}, cause = cause })
end

--- A new definition from the Reloadfile: the next generation runs with it, through the same
--- transitions as a file change (the current one keeps serving until the new one is ready to
--- start, and is stopped with the signal and grace it was started with).
---@param cfg reload.ServiceConfig
function M:reconfigure(cfg)
  self.next_cfg = cfg
  self:compile(cfg)
  self.debouncer.delay = cfg.debounce
  self:drop_spare() -- it was spawned with the old definition's options
  if self.state.name == "idle" then
    self.cfg, self.next_cfg = cfg, nil
    return
  end
  self.debouncer:cancel()
  self:dispatch({ type = "change", changed = {}, cause = "its definition changed" })
end

--- Stops everything of this service (build, generation, spare keeper); fn() once all is gone.
---@param fn fun()
---@param force? boolean skip the grace periods
function M:shutdown(fn, force)
  self.on_stopped = fn
  self.debouncer:cancel()
  if self.loop_timer then
    self.loop_timer:stop()
    self.loop_timer = nil
  end
  self:dispatch({ type = "quit", force = force })
end

--- Kills what runs at once (a second Ctrl-C during a quit).
function M:force()
  self:dispatch({ type = "quit", force = true })
end

--- Says once that it waits for the services it comes after (before its first start).
function M:waiting_for_deps()
  if not self.said_waiting then
    self.said_waiting = true
    log.info("%s: waiting for %s", self.name, table.concat(self.cfg.after, ", "))
  end
end

--- The services it comes after are up now (the engine tells every service on any change).
function M:deps_changed()
  if self.state.name == "waiting" and self.deps_up(self) then
    self:dispatch({ type = "deps_up" })
  end
end

-- The state machine --------------------------------------------------------------------------

local T = {} -- T[state][event] = function(self, state, ev) -> next state or nil (stay)

--- Handles an event to completion (queued behind the one being handled, if any).
---@param ev table { type = "...", ... }
function M:dispatch(ev)
  self.queue[#self.queue + 1] = ev
  if self.dispatching then
    return
  end
  self.dispatching = true
  local ok, err = pcall(function()
    while #self.queue > 0 do
      local e = table.remove(self.queue, 1)
      local handlers = T[self.state.name]
      local h = handlers and handlers[e.type] or T.any[e.type]
      if h then
        local nxt = h(self, self.state, e)
        if nxt and nxt ~= self.state then
          self:enter(nxt)
        end
      end
    end
  end)
  self.dispatching = false
  if not ok then
    self.queue = {}
    error(err, 0)
  end
end

function M:enter(state)
  local before = self.state.name
  self.state = state
  if state.name == "done" and before ~= "done" and self.cfg.task then
    self.tasks_done = self.tasks_done + 1
    if self.tasks_done > 1 then
      self.on_ran_again(self)
    end
  end
  if before ~= state.name then
    self:emit("state", { from = before, to = state.name })
  end
  self:refresh(before ~= state.name)
  if state.name == "stopped" and self.on_stopped then
    self:finish_shutdown()
  end
end

--- Recomputes `up` (its current generation is ready, or it is a task that is done) and tells
--- the engine when that or the state changed.
---@param changed? boolean the state changed
function M:refresh(changed)
  local g = self.gen
  local up = self.state.name == "done" or
    (g ~= nil and g.is_ready and not g.stopping and not g.is_gone)
  if up ~= self.up or changed then
    self.up = up
    self.on_change(self)
  end
end

--- Tells listeners what happens, as plain data: { type =, service =, ... } with type one of
--- "state" (from, to), "changed" (paths, cause), "build" (cause), "build_ok" (ms),
--- "build_failed" (step, status, output, ms), "command_failed" (output), "generation_started"
--- (generation, pid, ms), "generation_ready" (generation), "generation_gone" (generation,
--- status, signal, forced, stop_ms).
---@param type string
---@param fields? table
function M:emit(type, fields)
  if not self.emit_fn then
    return
  end
  local ev = fields or {}
  ev.type, ev.service, ev.time = type, self.name, self.clock.now()
  self.emit_fn(ev)
end

--- Merges two lists of paths, first-seen order, no duplicates.
local function merge(a, b)
  local out, seen = {}, {}
  for _, list in ipairs({ a or {}, b or {} }) do
    for _, p in ipairs(list) do
      if not seen[p] then
        seen[p] = true
        out[#out + 1] = p
      end
    end
  end
  return out
end

-- idle: before the first start.
T.idle = {
  start = function(self)
    return self:prepare({}, "start", self.clock.now(), { first = true })
  end,
  quit = function()
    return { name = "stopped" }
  end,
}

-- preparing{job, changes, cause, t}: the pipeline works on the next generation.
T.preparing = {
  change = function(self, st, ev)
    local opts = { first = st.opts.first, quiet = st.job:building() }
    if opts.quiet then
      log.info("%s: %s during the build: cancelling it, building again", self.name, ev.cause)
    end
    st.job:cancel()
    return self:prepare(merge(st.changes, ev.changed), ev.cause, st.t, opts)
  end,
  prepared = function(self, st, ev)
    if ev.token ~= st.token then
      return nil
    end
    if not ev.ok then
      return self:preparation_failed(ev.res)
    end
    local plan = ev.res
    plan.cause, plan.t, plan.first = st.cause, st.t, st.opts.first
    if plan.build_ms then
      if not plan.streamed then
        buildview.output(self.name, plan.output, true)
      end
      log.ok("%s: build ok in %s (%s)", self.name, log.duration(plan.build_ms),
        buildview.step_times(plan.steps))
      self:emit("build_ok", { ms = plan.build_ms })
    end
    if not plan.argv then -- a build-only service
      self:apply_cfg(plan.cfg)
      return { name = "done" }
    end
    if self.gen then
      return self:stop_generation({ next = { plan = plan, t = plan.t } })
    end
    return self:launch(plan)
  end,
  quit = function(self, st, ev)
    self.job_stopping = true
    st.job:cancel(function()
      self.job_stopping = nil
      self:maybe_finish_shutdown()
    end)
    return self:quit(ev.force)
  end,
}

-- stopping{next, quit, crash, cancelled}: the current generation is being stopped. A primed
-- next generation (prime) that a change or a quit makes stale is cancelled: its command may
-- have started, so the state waits for its tree too (`cancelled`) before anything follows.
T.stopping = {
  change = function(self, st, ev)
    if st.quit then
      return nil
    end
    local prev = st.next or {}
    self:unprime(st)
    if not st.next and not st.crash then
      -- The burst after an early stop: a command without a build is known now.
      local plan = self:plan_now(ev.changed, ev.cause, st.t0)
      if plan then
        st.next = { plan = plan, t = plan.t }
        self:prime(st)
        return nil
      end
    end
    -- Whatever was planned was prepared from older sources: prepare again once it is gone.
    st.next = { changes = merge(prev.changes or (prev.plan and prev.plan.changed), ev.changed),
      cause = ev.cause, t = prev.t or st.t0, opts = { first = false } }
    return nil
  end,
  gone = function(self, st, ev)
    if st.cancelled and st.cancelled[ev.gen] then
      st.cancelled[ev.gen] = nil
      return self.gen == nil and self:stopped_all(st) or nil
    end
    if ev.gen ~= self.gen then
      return nil
    end
    self.gen = nil
    self.last_stop_ms = ev.info.stop_ms
    if ev.info.forced and not st.quit_forced and not ev.info.survivors then
      log.warn("%s: stopped with SIGKILL after the %s grace period", self.name,
        log.duration(ev.gen.ctx.cfg.stop.grace * 1000))
    end
    st.gone_gen = ev.gen
    return self:stopped_all(st)
  end,
  quit = function(self, st, ev)
    if ev.force then -- those cancelled before: killed now
      for gen in pairs(st.cancelled or {}) do
        gen:stop(true)
      end
    end
    self:unprime(st, ev.force)
    st.quit, st.next, st.crash = true, nil, nil
    st.quit_forced = ev.force
    self:drop_spare()
    if not self.gen then
      return { name = "stopped" } -- quit waits for the cancelled ones' handles (self.open)
    end
    self.gen:stop(ev.force)
    return nil
  end,
}

--- stopping: the generation that was stopped is gone; what follows, once no cancelled primed
--- generation is left either.
function M:stopped_all(st)
  if next(st.cancelled or {}) then
    return nil
  end
  if st.quit then
    return { name = "stopped" }
  end
  if st.crash then
    return self:after_exit(st.crash, st.gone_gen)
  end
  local next_ = st.next
  if not next_ then
    return { name = "settling", since = st.t0 }
  end
  if next_.plan then
    return self:launch(next_.plan)
  end
  return self:prepare(next_.changes, next_.cause, next_.t, next_.opts)
end

-- settling: stopped early for a burst of changes that is not over yet.
T.settling = {
  change = function(self, st, ev)
    return self:prepare(ev.changed, ev.cause, st.since, { first = false })
  end,
  quit = function()
    return { name = "stopped" }
  end,
}

-- waiting{plan}: for the services it comes after.
T.waiting = {
  deps_up = function(self, st)
    return self:launch(st.plan)
  end,
  change = function(self, st, ev)
    return self:prepare(merge(st.plan.changed, ev.changed), ev.cause, st.plan.t,
      { first = st.plan.first })
  end,
  quit = function()
    return { name = "stopped" }
  end,
}

-- starting{plan, gen?}: spawned, or waiting for the port to be free.
T.starting = {
  port_free = function(self, st)
    return self:spawn(st.plan)
  end,
  started = function(self, _, ev)
    if ev.gen ~= self.gen then
      return nil
    end
    self:started(ev.gen)
    return { name = ev.gen.is_ready and "ready" or "running" }
  end,
  change = function(self, st, ev)
    if not self.gen then -- still waiting for the port: plan again with every change
      self:stop_timer(st)
      return self:prepare(merge(st.plan.changed, ev.changed), ev.cause, st.plan.t,
        { first = st.plan.first })
    end
    return self:prepare(ev.changed, ev.cause, self.clock.now(), { first = false })
  end,
  gone = function(self, _, ev)
    if ev.gen ~= self.gen then
      return nil
    end
    self.gen = nil
    return self:after_exit(ev.info, ev.gen)
  end,
  quit = function(self, st, ev)
    self:stop_timer(st)
    return self:quit(ev.force)
  end,
}

--- running and ready: the current generation runs.
local function live_state()
  return {
    ready = function(self, _, ev)
      if ev.gen == self.gen then
        log.verbose("%s: ready after %s", self.name,
          log.duration(ev.gen.t_ready - ev.gen.t_spawn))
        return { name = "ready" }
      end
    end,
    change = function(self, _, ev)
      return self:prepare(ev.changed, ev.cause, self.clock.now(), { first = false })
    end,
    settling = function(self)
      if self:can_stop_early() then
        return self:stop_generation({ next = nil })
      end
    end,
    main_exit = function(self, _, ev)
      if ev.gen ~= self.gen then
        return nil
      end
      local status = ev.info.signal and 128 + ev.info.signal or ev.info.code
      if status == 0 then
        log.verbose("%s: its main process exited 0; following the processes it left running",
          self.name)
        return nil
      end
      -- It crashed and left helpers behind: they belong to a generation that is over.
      local left = #ev.gen.proc:descendants()
      if left == 0 then
        return nil -- the tree is empty: "gone" follows, then the policy
      end
      log.warn("%s: exited with %s; stopping the %d process%s it left running", self.name,
        self:describe_status(ev.info), left, left == 1 and "" or "es")
      return self:stop_generation({ crash = { status = status, code = ev.info.code,
        signal = ev.info.signal } })
    end,
    gone = function(self, _, ev)
      if ev.gen ~= self.gen then
        return nil
      end
      self.gen = nil
      return self:after_exit(ev.info, ev.gen)
    end,
    quit = function(self, _, ev)
      return self:quit(ev.force)
    end,
  }
end
T.running = live_state()
T.ready = live_state()

-- backoff{timer}: the crash policy waits.
T.backoff = {
  retry = function(self, st)
    return self:prepare({}, st.cause, self.clock.now(), { first = false, skip_build = true })
  end,
  change = function(self, st, ev)
    st.timer:stop()
    return self:prepare(ev.changed, ev.cause, self.clock.now(), { first = false })
  end,
  quit = function(_, st)
    st.timer:stop()
    return { name = "stopped" }
  end,
}

-- At rest until a change.
local resting = {
  change = function(self, _, ev)
    return self:prepare(ev.changed, ev.cause, self.clock.now(), { first = false })
  end,
  quit = function()
    return { name = "stopped" }
  end,
}
T.exited, T.crashed, T.failed, T.done = resting, resting, resting, resting

T.stopped = {}

-- In any state: a generation's events that the state did not handle.
T.any = {
  started = function(self, _, ev)
    if ev.gen == self.gen then
      self:started(ev.gen)
    end
  end,
  ready = function(self)
    self:refresh()
  end,
  gone = function(self, _, ev)
    -- A generation that ended while a new one is being prepared (it crashed during a build).
    if ev.gen == self.gen then
      self.gen = nil
      local how = self:describe_status(ev.info)
      log.warn("%s: exited with %s during the build", self.name, how)
    end
  end,
  main_exit = function(self, _, ev)
    if ev.gen == self.gen then
      local status = ev.info.signal and 128 + ev.info.signal or ev.info.code
      if status ~= 0 then
        ev.gen:stop()
      end
    end
  end,
  quit = function(self)
    return self:quit(false)
  end,
}

-- Transitions' helpers --------------------------------------------------------------------

--- preparing{...}: starts the pipeline on the changes (for the next definition, if any).
function M:prepare(changes, cause, t, opts)
  opts = opts or {}
  local cfg = self.next_cfg or self.cfg
  local building = #cfg.build > 0 and not opts.skip_build
  if cause ~= "start" and not opts.skip_build and not opts.quiet then
    self:say_change(cause, building)
  elseif cause == "start" and building then
    log.info("%s: building (%d step%s)", self.name, #cfg.build, #cfg.build == 1 and "" or "s")
  end
  if cause ~= "start" then
    self:emit("changed", { paths = changes, cause = cause })
  end
  local token = {}
  local st = { name = "preparing", token = token, changes = changes, cause = cause, t = t,
    opts = opts }
  if building then
    self:emit("build", { cause = cause })
  end
  st.job = pipeline.start(self, changes, function(ok, res)
    if self.build_view then
      self.build_view:finish()
      self.build_view = nil
    end
    self:dispatch({ type = "prepared", token = token, ok = ok, res = res })
  end, { skip_build = opts.skip_build })
  if self.build_view then
    self.build_view:finish()
    self.build_view = nil
  end
  if st.job:building() then
    self.build_view = buildview.watch(self.name, st.job, self.clock)
  end
  return st
end

--- The line that says why it restarts (after clearing the screen, with --clear).
function M:say_change(cause, building)
  if self.clear then
    io.stdout:write("\27[H\27[2J\27[3J")
    io.stdout:flush()
  end
  log.info("%s: %s%s", self.name, cause, building and ": building" or "")
end

--- The plan for a command that needs no build, now: the pipeline finishes at once for it (the
--- condition of an early stop). nil when there is a build, a `run` function, or when the
--- command cannot be computed (the preparation once the old generation is gone says why).
function M:plan_now(changes, cause, t)
  local cfg = self.next_cfg or self.cfg
  if #cfg.build > 0 or not cfg.run or cfg.run.kind == "lua" then
    return nil
  end
  local plan
  pipeline.start(self, changes, function(ok, res)
    plan = ok and res or nil
  end)
  if not plan or not plan.argv then
    return nil
  end
  self:say_change(cause, false)
  self:emit("changed", { paths = changes, cause = cause })
  plan.cause, plan.t, plan.first = cause, t, false
  return plan
end

function M:preparation_failed(res)
  local keep = self.gen and "; the previous version keeps running" or ""
  local output = res.output
  if res.why == "build" then
    local how = res.status and ("exit status " .. tostring(res.status)) or "an error"
    if not res.streamed then
      buildview.output(self.name, output, false)
    end
    log.error("%s: build failed in %s at step %d/%d %s (%s)%s", self.name,
      log.duration(res.build_ms or 0), res.step_index or 0, res.step_count or 0,
      log.paint("bold", "'" .. tostring(res.step_label) .. "'"), how, keep)
  else
    log.error("%s: cannot start%s: %s", self.name, keep, tostring(output):match("^[^\n]*"))
    local rest = tostring(output):match("^[^\n]*\n(.*)$")
    if rest and rest ~= "" then
      log.raw(rest:sub(-1) == "\n" and rest or rest .. "\n")
    end
  end
  if res.why == "build" then
    self:emit("build_failed", { step = res.step_label, status = res.status, output = output,
      ms = res.build_ms })
  else
    self:emit("command_failed", { output = output })
  end
  if self.notify then
    self.notify(("%s: build failed"):format(self.name), output or "")
  end
  if self.gen then
    return { name = self.gen.is_ready and "ready" or "running" }
  end
  return { name = "failed", why = res.why }
end

--- stopping{...}: stops the current generation (its whole tree).
---@param st table the stopping state's data: next, crash
function M:stop_generation(st)
  st.name = "stopping"
  st.t0 = self.clock.now()
  self.gen:stop(false, not st.crash) -- a restart: the next generation may run in its keeper
  self:arm_spare() -- after the stop request: the teardown must not wait for this fork
  self:prime(st)
  return st
end

--- The static command can be computed now, without a build: the old tree may be stopped at the
--- first change of a burst, so the quiet period and the teardown overlap.
function M:can_stop_early()
  local cfg = self.next_cfg or self.cfg
  if #cfg.build > 0 or not cfg.run or cfg.run.kind == "lua" or not self.gen then
    return false
  end
  if self.loopguard:suspicious() then
    return false -- it may be looping: the restart may be held back
  end
  local argv = pipeline.command(cfg, { changed = {}, service = self.name, root = self.root,
    flags = self.flags })
  return argv ~= nil
end

--- A plan is ready: launch it once the services it comes after are up and its port is free.
function M:launch(plan)
  self:apply_cfg(plan.cfg)
  if plan.primed and plan.primed.is_gone then -- dropped by its keeper (it gave up on survivors)
    plan.primed:cancel()
    plan.primed = nil
  end
  if plan.primed then
    return self:spawn(plan) -- prime() judged its dependencies and port already
  end
  if not self.deps_up(self) then
    log.info("%s: waiting for %s", self.name, table.concat(self.cfg.after, ", "))
    return { name = "waiting", plan = plan }
  end
  local port = self.cfg.ready and self.cfg.ready.port
  -- A port reload passes on is held by reload itself: never free, and never needs to be.
  local host = self.cfg.ready and self.cfg.ready.host
  if port and not schema.handed_off(self.cfg.listen, port, host) and
    not ports.bindable(port, host) then
    return self:wait_port(plan, port)
  end
  return self:spawn(plan)
end

function M:apply_cfg(cfg)
  if cfg and cfg ~= self.cfg then
    self.cfg = cfg
  end
  if self.next_cfg == cfg then
    self.next_cfg = nil
  end
end

--- starting{plan}: polls until the port can be bound, saying once who holds it.
function M:wait_port(plan, port)
  local st = { name = "starting", plan = plan }
  local holder = ports.holder(port)
  log.warn("%s: port %d is in use by %s; waiting for it to be free", self.name, port,
    holder and ("pid %d (%s)"):format(holder.pid, holder.comm) or "another process")
  local deadline = self.clock.now() + self.cfg.ready.timeout * 1000
  local function poll()
    st.timer = nil
    if self.state ~= st then
      return
    end
    if ports.bindable(port, self.cfg.ready.host) then
      self:dispatch({ type = "port_free" })
    elseif self.clock.now() > deadline then
      log.error("%s: port %d is still in use; starting anyway", self.name, port)
      self:dispatch({ type = "port_free" })
    else
      st.timer = self.clock.after(M.port_poll_ms, poll)
    end
  end
  st.timer = self.clock.after(M.port_poll_ms, poll)
  return st
end

function M.stop_timer(_, st)
  if st.timer then
    st.timer:stop()
    st.timer = nil
  end
end

--- The one place a generation is spawned. Invariant: no process of the previous generation is
--- alive (the core reports a generation gone only once its whole tree is reaped).
function M:spawn(plan)
  for gen in pairs(self.open) do -- the current one, and any cancelled primed one
    if gen:alive() and gen ~= plan.primed then
      error(("%s: generation %d must not start while generation %d is alive"):format(self.name,
        plan.primed and plan.primed.n or self.generations + 1, gen.n), 0)
    end
  end
  if plan.primed then
    return self:adopt(plan)
  end
  local cwd = self:cwd()
  if not generation.dir_id(cwd) then
    log.error("%s: cannot start: its working directory %s does not exist%s; waiting for a " ..
      "change", self.name, log.escape(cwd), cwd == self.root and " (the project root was " ..
      "deleted?)" or "")
    self:drop_spare()
    return { name = "failed", why = "cwd" }
  end
  local fds, lerr
  if self.cfg.listen then
    fds, lerr = sockets.fds(self.core, self.name, self.cfg.listen)
    if not fds then
      log.error("%s: cannot start: %s; waiting for a change", self.name, lerr)
      self:drop_spare()
      return { name = "failed", why = "listen" }
    end
  end
  self.generations = self.generations + 1
  local n = self.generations
  local spare = self.spare
  self.spare = nil
  if spare and spare.listen_key ~= sockets.key(self.cfg.listen) then
    self:drop_one(spare) -- its keeper holds other sockets than this definition's
    spare = nil
  end
  if spare and not generation.usable(spare, cwd) then
    self:drop_one(spare) -- started in a directory that is gone
    spare = nil
  end
  local gen, err = generation.launch(self:gen_ctx(), n, plan.argv,
    self:environment(plan.changed), spare, self:gen_handlers())
  if not gen then
    log.error("%s: cannot start: %s", self.name, self:explain(plan.argv, err))
    return { name = "failed", why = "spawn" }
  end
  self:hold_gen(gen, plan)
  self.gen = gen
  return { name = "starting", plan = plan, gen = gen }
end

--- A launched (or primed) generation: its plan, the changed-paths file that stays while it
--- lives, and its handles, which quit waits for.
function M:hold_gen(gen, plan)
  gen.plan = plan
  gen.changeset = self.changeset and self.changeset:hold()
  self.open[gen] = true
end

--- The next plan is known while the current generation stops: its spare keeper gets the
--- command now, primed, and starts it the moment the old keeper's tree is empty (the keeper's
--- gate, keeper_proto.h), without a round trip through reload. reload still decides: the
--- generation is only adopted (spawn) once reload has seen the old one gone, and its events
--- wait until then. Only when launch() could decide nothing else at that point: no services to
--- come after, no port to wait for but the one the stopping generation held, the same
--- definition and directory as the spare's, and no terminal to hand over.
---@param st table the stopping state
function M:prime(st)
  local plan, spare, cfg, old = st.next and st.next.plan, self.spare, self.cfg, self.gen
  if not plan or plan.primed or st.quit or st.crash or not old or plan.cfg ~= cfg or
    cfg.stdin or #cfg.after > 0 then
    return
  end
  local port = cfg.ready and cfg.ready.port
  if port and not old.is_ready and not schema.handed_off(cfg.listen, port, cfg.ready.host) then
    return -- the port may be someone else's: launch() waits for it to be free
  end
  local cwd = self:cwd()
  -- Best, the old generation's own keeper runs the next one: it starts it the moment its tree
  -- is empty. Its keeper was spawned for this definition (stop signal, sockets, output).
  local after = old.ctx.cfg == cfg and old:takes_next(cwd) and old or nil
  if not after and (not spare or spare.after ~= old or
    spare.listen_key ~= sockets.key(cfg.listen) or not generation.usable(spare, cwd)) then
    return
  end
  self.generations = self.generations + 1
  local gen, err = generation.launch(self:gen_ctx(), self.generations, plan.argv,
    self:environment(plan.changed), not after and spare or nil, self:gen_handlers(),
    { prime = true, after = after })
  if not gen then -- a keeper gone: launch() spawns one, as without a spare
    self.generations = self.generations - 1
    log.verbose("%s: generation %d could not be primed: %s", self.name,
      self.generations + 1, tostring(err))
    return
  end
  if not after then
    self.spare = nil
  end
  self:hold_gen(gen, plan)
  plan.primed = gen
  log.verbose("%s: generation %d waits in %s keeper for the end of generation %d", self.name,
    gen.n, after and "the same" or "its", old.n)
end

--- stopping: a primed generation whose plan is stale (a change, a quit) is cancelled, and the
--- state waits for it to be gone.
---@param st table the stopping state
---@param force? boolean
function M.unprime(_, st, force)
  local gen = st.next and st.next.plan and st.next.plan.primed
  if gen then
    st.next.plan.primed = nil
    st.cancelled = st.cancelled or {}
    st.cancelled[gen] = true
    gen:cancel(force)
  end
end

--- starting{plan, gen}: the primed generation becomes the current one (see prime).
function M:adopt(plan)
  local gen = plan.primed
  plan.primed = nil
  self.gen = gen
  gen:adopt() -- releases its command (if the gate did not already), then its held events
  return { name = "starting", plan = plan, gen = gen }
end

--- What a generation's events do to the service (generation.launch's `on`).
function M:gen_handlers()
  return {
    started = function(gen) self:dispatch({ type = "started", gen = gen }) end,
    ready = function(gen)
      self:emit("generation_ready", { generation = gen.n })
      self:dispatch({ type = "ready", gen = gen })
    end,
    main_exit = function(gen, info)
      self:dispatch({ type = "main_exit", gen = gen, info = info })
    end,
    gone = function(gen, info)
      if gen.foreground then
        self.core.tty_reclaim() -- its group had the terminal
      end
      if info.survivors then
        self:left_running(info)
      end
      self:emit("generation_gone", { generation = gen.n, status = info.status,
        signal = info.signal, forced = info.forced, stop_ms = info.stop_ms,
        survivors = info.survivors })
      self:dispatch({ type = "gone", gen = gen, info = info })
    end,
    closed = function(gen)
      self.open[gen] = nil
      if gen.changeset then
        gen.changeset:release()
        gen.changeset = nil
      end
      self:maybe_finish_shutdown()
    end,
  }
end

--- Set once a command was given reload's terminal (`stdin = true`): reload takes it back when
--- that command's tree is gone, and when it exits.
M.terminal_given = false

--- How a run's output reaches reload: "pty" (the default: a pseudo-terminal per run, so that
--- programs line-buffer and keep their colours), "terminal" (`stdin = true`: reload's own
--- terminal, which the command reads in the foreground) or "pipe" (`tty = false`).
---@param cfg reload.ServiceConfig
---@return string
function M.output_mode(cfg)
  if cfg.stdin then
    return "terminal"
  end
  return cfg.tty == false and "pipe" or "pty"
end

--- The terminal was resized: so is the pty of its current run, and of its spare keeper.
---@param cols integer
---@param rows integer
function M:resize(cols, rows)
  for _, holder in ipairs({ self.gen or false, self.spare or false }) do
    if holder and holder.proc and holder.proc.resize then
      holder.proc:resize(cols, rows) -- nil, err without a pty (tty = false, or it ended)
    end
  end
end

--- The context a generation (and a spare) needs from its service.
function M:gen_ctx()
  local ctx = { name = self.name, core = self.core, clock = self.clock, cfg = self.cfg }
  local cfg = self.cfg
  local out = self.output
  function ctx.spawn_opts(argv, env, holder)
    local mode = M.output_mode(cfg)
    local opts = {
      cmd = argv,
      cwd = self:cwd(cfg),
      env = env,
      stdin = "null",
      stop_signal = cfg.stop.signal,
      grace_ms = math.floor(cfg.stop.grace * 1000 + 0.5),
      on_event = function(ev) holder.on_event(ev) end,
      -- Bound by spawn() before any keeper that gets them is spawned: this only looks them up.
      listen = cfg.listen and sockets.fds(self.core, self.name, cfg.listen) or nil,
    }
    local write = out -- nil: reload's stdout as it is
    local shown, plain -- colour filters: of what is shown (nil: kept), of what `ready` reads
    if mode == "pty" then
      local cols, rows = log.term_size()
      opts.pty = { cols = cols, rows = rows }
      write = out or log.passthrough()
      shown = not log.service_colors() and log.sgr_stripper() or nil
      plain = log.sgr_stripper()
    end
    local function on_output(chunk)
      local text = shown and shown(chunk) or chunk
      if write then
        if chunk == nil and text ~= nil and text ~= "" then
          write(text) -- an unfinished sequence held by the filter
        end
        write(chunk ~= nil and text or nil)
      elseif chunk then
        io.stdout:write(chunk)
        io.stdout:flush()
      end
      if holder.gen then
        holder.gen:on_output(plain and chunk and plain(chunk) or chunk)
      end
    end
    if mode == "pty" then
      opts.on_stdout = on_output
      return opts
    end
    local pipe = (out ~= nil or (cfg.ready and cfg.ready.pattern)) and "pipe" or "inherit"
    if mode == "terminal" then
      -- The command has the terminal in the foreground, as a shell's job would: a prompt, line
      -- editing and Ctrl-C are its own, so its output is the terminal itself, not prefixed
      -- lines (a pipe only for a `ready` pattern).
      pipe = cfg.ready and cfg.ready.pattern and "pipe" or "inherit"
      opts.stdin = "inherit"
      if self.core.tty_foreground and (M.terminal_given or self.core.tty_foreground()) then
        M.terminal_given = true
        opts.foreground = true
        holder.foreground = true
      end
    end
    opts.stdout, opts.stderr = pipe, pipe
    opts.on_stdout = pipe == "pipe" and on_output or nil
    opts.on_stderr = pipe == "pipe" and on_output or nil
    return opts
  end
  return ctx
end

--- The new generation runs: say so, and ready the next one's keeper after a moment.
function M:started(gen)
  if gen.announced then
    return
  end
  gen.announced = true
  self.last_started = gen.t_started
  self:announce(gen.plan, gen)
  self:emit("generation_started", { generation = gen.n, pid = gen.pid,
    ms = self.clock.now() - gen.plan.t })
  self:arm_spare(M.spare_delay_ms)
end

--- The restart line: cause, total, and each phase's duration.
function M:announce(plan, gen)
  local now = self.clock.now()
  local parts = {}
  if plan.build_ms then
    parts[#parts + 1] = "build " .. log.duration(plan.build_ms)
  end
  if not plan.first and self.last_stop_ms then
    parts[#parts + 1] = "stop " .. log.duration(self.last_stop_ms)
  end
  parts[#parts + 1] = "start " .. log.duration(now - gen.t_spawn)
  local phases = table.concat(parts, ", ")
  local left = self.last_left
  if left and not plan.first then
    -- The previous generation is not entirely gone: the line says so, and is not an "ok".
    log.warn("%s: restarted in %s (pid %d) after %s; %s; %d process%s of the previous run " ..
      "could not be stopped and still run%s", self.name, log.duration(now - plan.t), gen.pid,
      plan.cause, phases, left, left == 1 and "" or "es", left == 1 and "s" or "")
  elseif plan.first then
    log.ok("%s: started in %s (pid %d; %s)", self.name, log.duration(now - plan.t), gen.pid,
      phases)
  else
    log.ok("%s: restarted in %s (pid %d) after %s; %s", self.name, log.duration(now - plan.t),
      gen.pid, plan.cause, phases)
  end
  self.last_stop_ms = nil
  self.last_left = nil
end

--- Why a survivor outlived its SIGKILL, in words.
local function survivor_reason(sv)
  if sv.error == "EPERM" then
    return "not permitted"
  elseif sv.state == "D" then
    return "it stays in uninterruptible sleep (state D) after SIGKILL"
  end
  return ("it did not die of SIGKILL (state %s)"):format(sv.state or "unknown")
end

--- A generation is gone but for processes the keeper could not end (info.survivors): name each
--- and why, and remember them (the next restart line and quit say they still run).
---@param info table the generation's gone info
function M:left_running(info)
  local list = info.survivors
  for _, sv in ipairs(list) do
    log.warn("%s: cannot stop pid %d (uid %s, '%s'): %s; it keeps running", self.name, sv.pid,
      sv.uid and tostring(sv.uid) or "unknown", log.escape(sv.comm or "?"), survivor_reason(sv))
    if #self.survivors < 64 then
      self.survivors[#self.survivors + 1] = sv
    end
  end
  local total = info.survivors_total or #list
  if total > #list then
    log.warn("%s: and %d more processes it cannot stop", self.name, total - #list)
  end
  self.last_left = total
end

function M.describe_status(_, info)
  if info.signal then
    return require("reload.signals").describe(info.signal)
  end
  return "status " .. tostring(info.code or info.status)
end

--- A generation ended on its own (or crashed and was stopped): the restart policy decides.
function M:after_exit(info, gen)
  if info.spawn_error then
    log.error("%s: cannot run the command: %s", self.name, self:explain(gen.argv,
      info.spawn_error))
    return { name = "failed", why = "spawn" }
  end
  local how = self:describe_status(info)
  local status = info.status
  if self.cfg.task and status == 0 then
    log.ok("%s: done (%s)", self.name, how)
    return { name = "done" }
  end
  local policy = self.cfg.restart
  local restart = policy == "always" or (policy == "on-failure" and status ~= 0)
  if not restart then
    local level = status == 0 and log.info or log.error
    level("%s: exited with %s; waiting for a change", self.name, how)
    return { name = status == 0 and "exited" or "crashed", status = status }
  end
  if gen.t_started and self.clock.now() - gen.t_started >= M.stable_ms then
    self.crashes = 0
  end
  self.crashes = self.crashes + 1
  local delay = math.min(M.backoff_base_ms * 2 ^ (self.crashes - 1), M.backoff_max_ms)
  log.warn("%s: exited with %s; restarting in %s", self.name, how, log.duration(delay))
  local st = { name = "backoff", cause = "it exited with " .. how }
  st.timer = self.clock.after(delay, function()
    self:dispatch({ type = "retry" })
  end)
  return st
end

--- Quit from a state with (possibly) a generation: stop it, then `stopped`.
function M:quit(force)
  self:drop_spare()
  if self.gen then
    local st = { name = "stopping", quit = true, quit_forced = force }
    self.gen:stop(force)
    return st
  end
  return { name = "stopped" }
end

-- Shutdown bookkeeping: quit is done once the state is `stopped`, every generation's handles
-- are closed, the spare is gone and no build step runs.
function M:finish_shutdown()
  self.debouncer:cancel()
  self:drop_spare()
  self:maybe_finish_shutdown()
end

function M:maybe_finish_shutdown()
  if not self.on_stopped or self.state.name ~= "stopped" then
    return
  end
  if next(self.open) or self.spare_stopping or self.job_stopping then
    return
  end
  if self.changeset then
    self.changeset:release()
    self.changeset = nil
  end
  local fn = self.on_stopped
  self.on_stopped = nil
  fn()
end

-- Spare keepers ------------------------------------------------------------------------------

--- Makes sure a keeper is ready for the next start (after delay_ms, if given: not while the
--- command that just started is still loading). Spawned held and without a command, which the
--- next launch brings; it sits blocked in poll() until then, and goes when the service stops.
function M:arm_spare(delay_ms)
  if self.spare_timer then
    self.spare_timer:stop()
    self.spare_timer = nil
  end
  if delay_ms then
    self.spare_timer = self.clock.after(delay_ms, function()
      self.spare_timer = nil
      self:arm_spare()
    end)
    return
  end
  if not self.spare and self.state.name ~= "stopped" and not self.on_stopped and self.cfg.run and
    (not self.cfg.listen or sockets.held_all(self.name, self.cfg.listen)) then
    self.spare = generation.spare(self:gen_ctx(), self.gen)
    if self.spare then
      self.spare.listen_key = sockets.key(self.cfg.listen)
    end
  end
end

--- Stops the spare keeper (quit, or a new definition that spawns keepers differently).
function M:drop_spare()
  if self.spare_timer then
    self.spare_timer:stop()
    self.spare_timer = nil
  end
  local spare = self.spare
  self.spare = nil
  self:drop_one(spare)
end

--- Stops one spare keeper; quit waits for it.
function M:drop_one(spare)
  if not spare or spare.dead then
    return
  end
  self.spare_stopping = (self.spare_stopping or 0) + 1
  spare.on_gone = function()
    self.spare_stopping = self.spare_stopping - 1
    if self.spare_stopping == 0 then
      self.spare_stopping = nil
    end
    self:maybe_finish_shutdown()
  end
  spare.proc:stop()
end

-- Environment -------------------------------------------------------------------------------

--- The environment of this service's commands: reload's own, the service's env, and
--- RELOAD_SERVICE / RELOAD_CHANGED / RELOAD_CHANGED_FILE (changes.lua: the list of changed
--- paths, each list in a private file of its own). The part that does not change between
--- restarts is built once per definition: a restart is on its critical path.
---@param changed string[]|nil
---@param cfg? reload.ServiceConfig
---@return string[] "K=V" list
function M:environment(changed, cfg)
  cfg = cfg or self.cfg
  if self.env_cfg ~= cfg then
    local env = {}
    for k, v in pairs(self.base_env) do
      env[k] = v
    end
    for k, v in pairs(cfg.env) do
      env[k] = v
    end
    env.RELOAD_SERVICE = self.name
    env.RELOAD_CHANGED, env.RELOAD_CHANGED_FILE = nil, nil
    -- LISTEN_FDS and LISTEN_PID are the keeper's: only it knows the command's pid.
    env.LISTEN_FDS, env.LISTEN_PID = nil, nil
    env.LISTEN_FDNAMES = cfg.listen and sockets.names(cfg.listen) or nil
    local list = {}
    for k, v in pairs(env) do
      list[#list + 1] = k .. "=" .. v
    end
    table.sort(list)
    self.env_cfg, self.env_base = cfg, list
  end
  local extra = {}
  self:write_changed(changed or {}, cfg):export(extra)
  local list = table.move(self.env_base, 1, #self.env_base, 1, {})
  list[#list + 1] = "RELOAD_CHANGED=" .. extra.RELOAD_CHANGED
  if extra.RELOAD_CHANGED_FILE then
    list[#list + 1] = "RELOAD_CHANGED_FILE=" .. extra.RELOAD_CHANGED_FILE
  end
  return list
end

--- Are two lists of paths the same, in the same order?
local function same_paths(a, b)
  if a == b then
    return true
  end
  if #a ~= #b then
    return false
  end
  for i = 1, #a do
    if a[i] ~= b[i] then
      return false
    end
  end
  return true
end

--- The change set of `changed` (changes.lua) for definition cfg: the last one if it lists the
--- same paths under the same definition (the same file saved again: no file to write on the
--- restart's path), else a new one, which the service holds instead of the last. A generation
--- holds the set it started with until its handles are closed, so its file stays while it may
--- read it; a set's file never changes, so generations may share it.
---@param changed string[]
---@param cfg? reload.ServiceConfig
function M:write_changed(changed, cfg)
  cfg = cfg or self.cfg
  local last = self.changeset
  if not last or self.changeset_cfg ~= cfg or not same_paths(last.paths, changed) then
    if last then
      last:release()
    end
    self.changeset = changesets.default():write(self.name, changed)
    self.changeset_cfg = cfg
  end
  return self.changeset
end

--- Why argv could not start, in words (its program, its working directory).
---@param argv string[]|nil
---@param err string|nil the core's error
---@param cfg? reload.ServiceConfig
---@return string
function M:explain(argv, err, cfg)
  cfg = cfg or self.cfg
  return command.explain(argv, self:cwd(cfg), err, cfg.env.PATH or self.base_env.PATH)
end

--- The working directory of its commands.
---@param cfg? reload.ServiceConfig
function M:cwd(cfg)
  local cwd = (cfg or self.cfg).cwd
  if not cwd then
    return self.root
  end
  if cwd:sub(1, 1) == "/" then
    return cwd
  end
  return self.root .. "/" .. cwd
end

return M
