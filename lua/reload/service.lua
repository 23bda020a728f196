--- One service: its build pipeline, its running process tree, readiness and restart policy.
---
--- Theory of operation. A service is a small state machine:
---
---   idle --start--> building --ok--> starting --started--> running --ready--> ready
---                      |  \--fail--> (old process keeps running; state "failed" if none)
---   a change while building cancels the build (its whole tree is killed) and builds again;
---   a successful build while a process runs stops that tree first, then starts the new one.
---   A process that exits on its own goes through the restart policy (never / on-failure /
---   always) with exponential backoff, reset once a run has been up for `stable_ms`.
---
--- The process trees come from the core (core.spawn); this module never signals a pid itself.
--- Build steps run in a coroutine so that a Lua step can call ctx.sh(...) and wait for the
--- command without blocking the loop; cancelling a build abandons its coroutine. Every user
--- function runs under xpcall: an error is reported and the service stays in a known state.
local M = {}
M.__index = M

local changes = require("reload.changes")
local log = require("reload.log")
local ports = require("reload.ports")

M.backoff_base_ms = 250
M.backoff_max_ms = 10000
M.stable_ms = 10000
M.spare_delay_ms = 50 -- after a start, before the next run's keeper is spawned

---@class reload.Service
---@field cfg reload.ServiceConfig
---@field state string
---@field proc any the running process (core Process) or nil
---@field up boolean counts as up for services that come `after` it

--- Creates a service.
---@param opts table cfg, root, core, clock, env (K=V), output (fun(chunk)|nil), on_change
---@return reload.Service
function M.new(opts)
  local self = setmetatable({
    cfg = opts.cfg,
    name = opts.cfg.name,
    root = opts.root,
    core = opts.core,
    clock = opts.clock,
    base_env = opts.env,
    output = opts.output, -- nil: inherit the terminal
    on_change = opts.on_change or function() end,
    state = "idle",
    up = false,
    proc = nil,
    build_gen = 0,
    build_proc = nil,
    crashes = 0,
    restart_timer = nil,
    ready_timer = nil,
    stopping_for = nil,
    generation = 0,
    quitting = false,
    exit_waiters = setmetatable({}, { __mode = "k" }),
  }, M)
  return self
end

function M:set_state(state)
  if self.state ~= state then
    self.state = state
    self.on_change(self)
  end
end

function M:set_up(up)
  if self.up ~= up then
    self.up = up
    self.on_change(self)
  end
end

-- Environment -------------------------------------------------------------------------------

--- The environment of this service's commands: reload's own, the service's env, and
--- RELOAD_SERVICE / RELOAD_CHANGED / RELOAD_CHANGED_FILE (reload.changes).
function M:environment(changed)
  local env = {}
  for k, v in pairs(self.base_env) do
    env[k] = v
  end
  for k, v in pairs(self.cfg.env) do
    env[k] = v
  end
  env.RELOAD_SERVICE = self.name
  self:write_changed(changed or {}):export(env)
  local list = {}
  for k, v in pairs(env) do
    list[#list + 1] = k .. "=" .. v
  end
  table.sort(list)
  return list
end

--- The change set of `changed` (reload.changes): the last one if it is of the same list, else
--- a new one, which the service holds instead of the last.
function M:write_changed(changed)
  if not self.changes or self.changes.paths ~= changed then
    if self.changes then
      self.changes:release()
    end
    self.changes = changes.default():write(self.name, changed)
  end
  return self.changes
end

function M:cwd()
  local cwd = self.cfg.cwd
  if not cwd then
    return self.root
  end
  if cwd:sub(1, 1) == "/" then
    return cwd
  end
  return self.root .. "/" .. cwd
end

-- Commands ----------------------------------------------------------------------------------

--- A step's command as argv: a shell string becomes /bin/sh -c STRING.
local function to_argv(cmd)
  if type(cmd) == "string" then
    return { "/bin/sh", "-c", cmd }
  end
  return cmd
end

--- Runs fn(...) under xpcall; on error reports it with its traceback and returns nil, err.
local function protect(what, fn, ...)
  local res = table.pack(xpcall(fn, debug.traceback, ...))
  if not res[1] then
    log.error("%s raised an error:\n%s", what, tostring(res[2]))
    return nil, tostring(res[2])
  end
  return table.unpack(res, 2, res.n)
end

--- Spawns one command to completion, capturing its output; calls done(ok, status, output).
--- Returns the process (so that a cancel can kill it).
function M:spawn_captured(argv, env, done)
  local chunks = {}
  local function collect(chunk)
    if chunk then
      chunks[#chunks + 1] = chunk
      if log.level >= 2 then
        log.raw(chunk)
      end
    end
  end
  local proc, err = self.core.spawn({
    cmd = argv,
    cwd = self:cwd(),
    env = env,
    stdin = "null",
    stdout = "pipe",
    stderr = "pipe",
    on_stdout = collect,
    on_stderr = collect,
    grace_ms = 0,
    on_main_exit = "kill-tree",
    on_event = function(ev)
      if ev.type == "exit" then
        local output = table.concat(chunks)
        if ev.spawn_error then
          output = output .. ("%s: %s\n"):format(argv[1], ev.spawn_error)
        end
        done(ev.status == 0, ev.status, output, ev)
      end
    end,
  })
  if not proc then
    -- Report on the next loop turn: the caller may not be ready for its own callback yet.
    self.clock.after(0, function()
      done(false, 127, ("%s: %s\n"):format(argv[1], err))
    end)
  end
  return proc
end

-- Build -------------------------------------------------------------------------------------

--- Builds (all steps in order), then restarts the process on success.
---@param changed string[] paths that triggered it
function M:rebuild(changed)
  if self.quitting then
    return
  end
  self:cancel_restart()
  if self.build_proc then
    log.info("%s: change during the build: cancelling it", self.name)
    self.build_proc:kill()
    self.build_proc = nil
  end
  self.build_gen = self.build_gen + 1
  local gen = self.build_gen
  changed = changed or {}
  self:write_changed(changed)
  if #self.cfg.build == 0 then
    self:after_build(changed)
    return
  end
  if self.state ~= "building" then
    self.state_before_build = self.state
  end
  self:set_state("building")
  local started = self.clock.now()
  local ctx = self:context(changed, gen)
  local co = coroutine.create(function()
    for i, step in ipairs(self.cfg.build) do
      local ok, status, output = self:run_step(step, ctx)
      if not ok then
        return false, i, step, status, output
      end
    end
    return true
  end)
  self.build_co = co
  self.build_finish = function(ok, i, step, status, output)
    local ms = self.clock.now() - started
    if ok then
      log.ok("%s: build ok in %s", self.name, log.duration(ms))
      self:after_build(changed)
    else
      self:build_failed(i, step, status, output, ms)
    end
  end
  self:resume(co, gen)
end

--- Resumes the build coroutine with the given values; when it finishes, hands its results to
--- the build's finish. A resume for an older generation (a cancelled build) is dropped.
function M:resume(co, gen, ...)
  if gen ~= self.build_gen or co ~= self.build_co then
    return
  end
  local res = table.pack(coroutine.resume(co, ...))
  if not res[1] then
    self.build_co = nil
    self.build_finish(false, 0, { label = "build" }, nil, debug.traceback(co, tostring(res[2])))
    return
  end
  if coroutine.status(co) == "dead" then
    self.build_co = nil
    self.build_finish(table.unpack(res, 2, res.n))
  end
end

--- The context handed to Lua steps and run functions.
function M:context(changed, gen)
  local svc = self
  local ctx = { changed = changed, service = self.name, root = self.root, flags = self.flags }
  --- ctx.sh(cmd): runs a command (string: shell; table: argv) and waits for it, inside a build
  --- step. Returns ok, status, output.
  function ctx.sh(cmd)
    local co, main = coroutine.running()
    if main or co ~= svc.build_co then
      error("ctx.sh can only be called from a build step", 2)
    end
    local argv = to_argv(cmd)
    local proc
    proc = svc:spawn_captured(argv, svc:environment(changed), function(ok, st, out)
      if svc.build_proc == proc then
        svc.build_proc = nil
      end
      local waiter = svc.exit_waiters[proc or false]
      if waiter then
        svc.exit_waiters[proc] = nil
        waiter()
      end
      svc:resume(co, gen, ok, st, out)
    end)
    if proc and proc:status() ~= "exited" then
      svc.build_proc = proc
    end
    return coroutine.yield()
  end
  return ctx
end

--- Runs one build step inside the build coroutine; returns ok, status, output.
function M:run_step(step, ctx)
  if step.kind == "lua" then
    local ok, res, msg = xpcall(step.cmd, debug.traceback, ctx)
    if not ok then
      return false, nil, tostring(res) .. "\n"
    end
    if res == false then
      return false, nil, (msg and tostring(msg) or "the step returned false") .. "\n"
    end
    return true
  end
  log.verbose("%s: $ %s", self.name, step.label)
  return ctx.sh(step.kind == "shell" and step.cmd or step.cmd)
end

function M:build_failed(i, step, status, output, ms)
  local how = status and ("exit status " .. tostring(status)) or "error"
  local keep = self.proc and "; the previous version keeps running" or ""
  log.error("%s: build failed in %s (step %d: %s, %s)%s", self.name, log.duration(ms), i or 0,
    step and step.label or "?", how, keep)
  if output and output ~= "" then
    log.raw(output:sub(-1) == "\n" and output or output .. "\n")
  end
  if not self.proc then
    self:set_state("failed")
  else
    self:set_state(self.state_before_build or "running")
  end
  if self.notify then
    self.notify(("%s: build failed"):format(self.name), output or "")
  end
end

-- Process -----------------------------------------------------------------------------------

--- After a successful build: start, or stop the old tree and start the new one (in the spare
--- keeper, ready since the last start, so that once the old tree is gone only the command's
--- own fork + exec remain).
function M:after_build(changed)
  if not self.cfg.run then
    self:set_state("idle")
    self:set_up(true)
    return
  end
  if not self.proc then
    self:start_process(changed)
    return
  end
  local t0 = self.clock.now()
  self:stop_process(function()
    self.restart_started = t0
    self:start_process(changed)
  end, false, true)
  self:arm_spare() -- after the stop request: the teardown must not wait for this fork
end

--- The first changes of a burst, while the debouncer waits for the rest. A service without
--- build steps restarts whatever else comes, so its tree is stopped now: the quiet period and
--- the teardown overlap instead of adding up.
function M:changes_coming()
  if self.quitting or #self.cfg.build > 0 or not self.cfg.run or not self.proc
    or self.stopping_for then
    return
  end
  self:stop_process(function() end, false, true)
  self:arm_spare()
end

--- The command to run: the run step (a function may compute it) with every wrapper applied.
function M:command(changed)
  local step = self.cfg.run
  local cmd = step.cmd
  if step.kind == "lua" then
    local res = protect(self.name .. ": run function", cmd, self:context(changed, self.build_gen))
    if res == nil then
      return nil
    end
    cmd = res
  end
  cmd = to_argv(cmd)
  for _, wrap in ipairs(self.cfg.wrap) do
    local res = protect(self.name .. ": wrap function", wrap, cmd)
    if res == nil then
      return nil
    end
    cmd = to_argv(res)
  end
  if type(cmd) ~= "table" or type(cmd[1]) ~= "string" then
    log.error("%s: the command must be a string or an argv table, got %s", self.name,
      type(cmd))
    return nil
  end
  return cmd
end

--- Starts the process, once the ready port (if any) is free.
function M:start_process(changed)
  if self.quitting then
    return
  end
  local argv = self:command(changed)
  if not argv then
    self:set_state("failed")
    return
  end
  local port = self.cfg.ready and self.cfg.ready.port
  if port and not ports.bindable(port) then
    self:set_state("starting")
    self:wait_port_free(port, function()
      self:spawn_process(argv, changed)
    end)
    return
  end
  self:spawn_process(argv, changed)
end

--- Waits until the port can be bound, saying once who holds it.
function M:wait_port_free(port, then_fn)
  local said = false
  local deadline = self.clock.now() + (self.cfg.ready.timeout or 30) * 1000
  local function poll()
    self.ready_timer = nil
    if self.quitting then
      return
    end
    if ports.bindable(port) then
      then_fn()
      return
    end
    if not said then
      said = true
      local holder = ports.holder(port)
      log.warn("%s: port %d is in use by %s; waiting for it to be free", self.name, port,
        holder and ("pid %d (%s)"):format(holder.pid, holder.comm) or "another process")
    end
    if self.clock.now() > deadline then
      log.error("%s: port %d is still in use; starting anyway", self.name, port)
      then_fn()
      return
    end
    self.ready_timer = self.clock.after(50, poll)
  end
  poll()
end

--- Starts argv: in the spare keeper if there is one, else in a new one.
function M:spawn_process(argv, changed)
  local env = self:environment(changed)
  local run = self.spare
  self.spare = nil
  if run then
    self:begin_run(run)
    run.proc:go({ cmd = argv, env = env })
  else
    run = self:new_run(argv, env)
    if not run then
      self:set_state("failed")
      return
    end
    self:begin_run(run)
  end
  run.changes = self.changes:hold() -- its file stays while this generation lives
  self:arm_spare(M.spare_delay_ms)
end

--- Makes sure a keeper is ready for the next start (after delay_ms, if given: not while the
--- command that just started is still loading). Spawned held and without a command, which
--- go() brings; it sits blocked in poll() until then, and goes when the service stops.
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
  if not self.spare and not self.quitting and self.cfg.run then
    self.spare = self:new_run(nil, nil)
  end
end

--- Spawns a process tree for argv; with argv nil, a spare: only its keeper, until go() brings
--- the command. Its events reach process_event once the run has begun (has a generation).
function M:new_run(argv, env)
  local run = {}
  local ready = self.cfg.ready
  local watch_output = ready and ready.pattern
  local out = self.output
  local seen = ""
  local function on_output(chunk)
    if out then
      out(chunk)
    elseif chunk then
      io.stdout:write(chunk)
      io.stdout:flush()
    end
    local generation = run.generation
    if watch_output and chunk and not self.up and generation == self.generation then
      seen = (seen .. chunk):sub(-4096)
      if seen:find(ready.pattern) then
        self:became_ready(generation)
      end
    end
  end
  local pipe = (out ~= nil or watch_output) and "pipe" or "inherit"
  local proc, err = self.core.spawn({
    cmd = argv,
    cwd = self:cwd(),
    env = env,
    stdin = self.cfg.stdin and "inherit" or "null",
    stdout = pipe,
    stderr = pipe,
    on_stdout = pipe == "pipe" and on_output or nil,
    on_stderr = pipe == "pipe" and on_output or nil,
    stop_signal = self.cfg.stop.signal,
    grace_ms = math.floor(self.cfg.stop.grace * 1000 + 0.5),
    hold = argv == nil or nil,
    on_event = function(ev)
      if ev.type == "exit" and run.changes then
        run.changes:release()
        run.changes = nil
      end
      if run.generation then
        self:process_event(ev, run.generation, run.t0)
      elseif ev.type == "exit" then
        -- A spare that never began (stopped, or its keeper died).
        if self.spare == run then
          self.spare = nil
        end
        if run.on_gone then
          run.on_gone()
        end
      end
    end,
  })
  if not proc then
    log.error("%s: cannot start %s: %s", self.name, argv and argv[1] or "a keeper",
      tostring(err))
    return nil
  end
  run.proc = proc
  return run
end

--- The run becomes the service's current process (the next generation).
function M:begin_run(run)
  self.generation = self.generation + 1
  run.generation = self.generation
  run.t0 = self.clock.now()
  self:set_up(false)
  self:set_state("starting")
  self.proc = run.proc
  self.proc_started = run.t0
end

function M:process_event(ev, generation, t0)
  if ev.type == "started" then
    local since = self.restart_started
    self.restart_started = nil
    if since then
      log.ok("%s: restarted in %s (pid %d)", self.name, log.duration(self.clock.now() - since),
        ev.pid)
    else
      log.ok("%s: started (pid %d)", self.name, ev.pid)
    end
    self:set_state("running")
    if self.cfg.task then
      return
    end
    if not self.cfg.ready then
      self:set_up(true)
    elseif self.cfg.ready.port then
      self:probe_ready(generation)
    end
    if self.cfg.ready then
      self:arm_ready_timeout(generation)
    end
  elseif ev.type == "tree-empty" then
    -- The whole tree is reaped, its ports free: a restart need not wait for "exit".
    local waiter = self.stopping_for
    if waiter and waiter.generation == generation and waiter.on_empty then
      self.finished_generation = generation
      self:process_exited(ev, generation, t0)
    end
  elseif ev.type == "exit" then
    if self.finished_generation == generation then
      return -- already handled at "tree-empty"
    end
    if self.proc and generation == self.generation then
      self.proc = nil
    end
    self:process_exited(ev, generation, t0)
  end
end

--- Polls the ready port until it accepts a connection.
function M:probe_ready(generation)
  local port = self.cfg.ready.port
  local function poll()
    self.ready_timer = nil
    if generation ~= self.generation or not self.proc or self.up then
      return
    end
    ports.connectable(port, function(ok)
      if generation ~= self.generation or not self.proc or self.up then
        return
      end
      if ok then
        self:became_ready(generation)
      else
        self.ready_timer = self.clock.after(20, poll)
      end
    end)
  end
  poll()
end

function M:arm_ready_timeout(generation)
  local timeout = self.cfg.ready.timeout
  self.ready_deadline = self.clock.after(timeout * 1000, function()
    self.ready_deadline = nil
    if generation == self.generation and self.proc and not self.up then
      log.warn("%s: not ready after %s (%s)", self.name, log.duration(timeout * 1000),
        self.cfg.ready.port and ("port " .. self.cfg.ready.port) or
        ("output matching '" .. self.cfg.ready.pattern .. "'"))
    end
  end)
end

function M:became_ready(generation)
  if generation ~= self.generation or self.up then
    return
  end
  log.verbose("%s: ready after %s", self.name, log.duration(self.clock.now() - self.proc_started))
  self:set_state("ready")
  self:set_up(true)
end

function M:process_exited(ev, generation, t0)
  local waiter = self.stopping_for
  if waiter and waiter.generation == generation then
    self.stopping_for = nil
    if ev.forced then
      log.warn("%s: stopped with SIGKILL after the %s grace period", self.name,
        log.duration(self.cfg.stop.grace * 1000))
    end
    waiter.fn(ev)
    return
  end
  if generation ~= self.generation then
    return
  end
  -- It ended on its own.
  self:set_up(false)
  if ev.spawn_error then
    log.error("%s: cannot run the command: %s", self.name, ev.spawn_error)
    self:set_state("failed")
    return
  end
  local how = ev.signal and require("reload.signals").describe(ev.signal) or
    ("status " .. tostring(ev.code))
  if self.cfg.task and ev.status == 0 then
    log.ok("%s: done (%s)", self.name, how)
    self:set_state("done")
    self:set_up(true)
    return
  end
  local policy = self.cfg.restart
  local restart = policy == "always" or (policy == "on-failure" and ev.status ~= 0)
  if not restart or self.quitting then
    local level = ev.status == 0 and log.info or log.error
    level("%s: exited with %s; waiting for a change", self.name, how)
    self:set_state(ev.status == 0 and "exited" or "crashed")
    return
  end
  local ran = self.clock.now() - t0
  if ran >= M.stable_ms then
    self.crashes = 0
  end
  self.crashes = self.crashes + 1
  local delay = math.min(M.backoff_base_ms * 2 ^ (self.crashes - 1), M.backoff_max_ms)
  log.warn("%s: exited with %s; restarting in %s", self.name, how, log.duration(delay))
  self:set_state("backoff")
  self.restart_timer = self.clock.after(delay, function()
    self.restart_timer = nil
    self:start_process({})
  end)
end

function M:cancel_restart()
  if self.restart_timer then
    self.restart_timer:stop()
    self.restart_timer = nil
  end
end

--- Stops the running tree (whole tree, with the configured signal and grace); calls fn once
--- it is gone: at "exit", or with on_empty at "tree-empty" (every process reaped, before
--- reload's own handles are closed). With force, skips the grace period.
function M:stop_process(fn, force, on_empty)
  local proc = self.proc
  if not proc then
    fn()
    return
  end
  self:set_state("stopping")
  self:set_up(false)
  self:cancel_readiness()
  -- One stop at a time, and only the newest continuation runs once the tree is gone: two
  -- changes during one stop must start one new process, not two racing for the port.
  local in_flight = self.stopping_for ~= nil
  self.stopping_for = { generation = self.generation, on_empty = on_empty, fn = function(ev)
    self.proc = nil
    fn(ev)
  end }
  if force then
    proc:kill()
  elseif not in_flight then
    proc:stop()
  end
end

--- Stops the readiness probe and its deadline (the process they watch is going away).
function M:cancel_readiness()
  for _, key in ipairs({ "ready_timer", "ready_deadline" }) do
    if self[key] then
      self[key]:stop()
      self[key] = nil
    end
  end
end

--- Stops everything of this service (build and process) for quit; fn() once all is gone.
function M:shutdown(fn, force)
  self.quitting = true
  self:cancel_restart()
  self:cancel_readiness()
  self.build_gen = self.build_gen + 1 -- abandon any build coroutine
  local pending = 1
  local function one()
    pending = pending - 1
    if pending == 0 then
      self:set_state("stopped")
      if self.changes then
        self.changes:release()
        self.changes = nil
      end
      fn()
    end
  end
  if self.build_proc then
    pending = pending + 1
    local bp = self.build_proc
    self.build_proc = nil
    self.exit_waiters[bp] = one
    bp:kill()
  end
  if self.proc then
    pending = pending + 1
    self:stop_process(one, force)
  end
  if self.spare_timer then
    self.spare_timer:stop()
    self.spare_timer = nil
  end
  local spare = self.spare
  if spare then
    self.spare = nil
    pending = pending + 1
    spare.on_gone = one
    spare.proc:stop()
  end
  one()
end

--- The process is asked to die at once (second Ctrl-C).
function M:force()
  if self.proc then
    self.proc:kill()
  end
  if self.build_proc then
    self.build_proc:kill()
  end
end

return M
