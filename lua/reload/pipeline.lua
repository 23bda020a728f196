--- The pipeline: prepares the next generation of a service. It runs the build steps in order,
--- then evaluates the command (a `run` function, the `wrap` functions). Its result is a plan,
--- { argv, changed, cfg }: a command known to be runnable, or the reason there is none.
---
--- Theory of operation. A job runs its steps in a coroutine, so that a Lua step can call
--- ctx.sh(...) and wait for a command without blocking the loop. Each command step is a whole
--- process tree under a keeper (grace 0: a cancelled build ends at once). Cancelling a job kills
--- the running step's tree and abandons the coroutine; a result of a cancelled job is never
--- delivered. Every user function runs under xpcall and an instruction budget (budget.lua): an
--- error or an endless loop becomes a failed job, with its traceback, never an error (or a
--- freeze) of reload.
local M = {}

local budget = require("reload.budget")
local log = require("reload.log")
local schema = require("reload.schema")

--- A step's command as argv: a shell string becomes /bin/sh -c STRING.
---@param cmd string|string[]
---@return string[]
local function to_argv(cmd)
  if type(cmd) == "string" then
    return { "/bin/sh", "-c", cmd }
  end
  return cmd
end
M.to_argv = to_argv

local SHELL_WORDS = { ["if"] = true, ["for"] = true, ["while"] = true, ["until"] = true,
  ["case"] = true, ["exec"] = true, ["{"] = true, ["!"] = true }

--- A shell command string as `exec STRING` when it is one simple command, else nil. Debian's
--- /bin/sh (dash 0.5.12) forks even the only command of `sh -c`, so the program would not be
--- the process the keeper set LISTEN_PID to, and a consumer that checks it (sd_listen_fds, Go's
--- activation, gunicorn, Rust's listenfd) would ignore the sockets. Conservative: any ';',
--- '&' (but in >&), '|' or newline (a list, a pipeline, a job, even quoted), a leading
--- assignment, subshell or keyword leaves the string as it is.
---@param cmd string
---@return string|nil
function M.exec_form(cmd)
  if cmd:gsub("[<>]&", ""):find("[;&|\n]") then -- 2>&1 is a redirection, not a job
    return nil
  end
  local first = cmd:match("^%s*(%S+)")
  if not first or SHELL_WORDS[first] or first:find("[=(]") then
    return nil
  end
  return "exec " .. cmd
end

--- Runs fn(...) under xpcall; returns true and its results, or false and the error with its
--- traceback.
local function protect(fn, ...)
  local res = table.pack(budget.call(fn, ...))
  if not res[1] then
    return false, tostring(res[2])
  end
  return true, table.unpack(res, 2, res.n)
end

--- The command of the next generation: the run step (a function may compute it) with every
--- wrapper applied. Returns argv, or nil and why (a function's error with its traceback).
---@param cfg reload.ServiceConfig
---@param ctx table the context handed to user functions
---@return string[]|nil argv, string|nil why
function M.command(cfg, ctx)
  local step = cfg.run
  local cmd = step.cmd
  if step.kind == "lua" then
    local ok, res = protect(cmd, ctx)
    if not ok then
      return nil, "the run function raised an error:\n" .. res
    end
    local argv, why = schema.command(res)
    if not argv then
      return nil, ("the run function (%s) %s"):format(step.label, why)
    end
    cmd = argv
  end
  if cfg.listen and type(cmd) == "string" then
    cmd = M.exec_form(cmd) or cmd -- LISTEN_PID must name the program itself
  end
  cmd = to_argv(cmd)
  for i, wrap in ipairs(cfg.wrap) do
    local ok, res = protect(wrap, cmd)
    if not ok then
      return nil, ("wrap function %d raised an error:\n%s"):format(i, res)
    end
    local argv, why = schema.command(res)
    if not argv then
      return nil, ("wrap function %d %s"):format(i, why)
    end
    cmd = argv
  end
  return cmd
end

---@class reload.Job
---@field cancelled boolean
---@field steps table[] per step run so far: { label, ms, status, output }
local Job = {}
Job.__index = Job

--- Starts preparing a generation.
---@param svc table the service: name, cfg (of the next generation), core, clock, root, flags,
--- cwd(), environment(changed), emit()
---@param changed string[] paths that caused it
---@param on_done fun(ok: boolean, res: table) res: { argv, changed, build_ms } or
--- { why, output, step_index, step_label, build_ms }
---@param opts? { skip_build?: boolean } skip_build: only the command (a crash restart)
---@return reload.Job
function M.start(svc, changed, on_done, opts)
  local cfg = svc.next_cfg or svc.cfg
  local job = setmetatable({ svc = svc, cfg = cfg, changed = changed, on_done = on_done,
    cancelled = false, t0 = svc.clock.now(), steps = {}, buffered = {} }, Job)
  job.ctx = { changed = changed, service = svc.name, root = svc.root, flags = svc.flags }
  function job.ctx.sh(cmd)
    return job:sh(cmd)
  end
  if #cfg.build == 0 or (opts and opts.skip_build) then
    job:finish_build()
    return job
  end
  job.co = coroutine.create(function()
    for i, step in ipairs(cfg.build) do
      local ok, status, output = job:run_step(step, i)
      if not ok then
        return false, i, step, status, output
      end
    end
    return true
  end)
  job:resume()
  return job
end

--- True while its build steps run (a job without steps is done at once).
function Job:building()
  return self.co ~= nil and not self.done
end

--- The step under way: its index, how many there are, and its label.
function Job:progress()
  local i = #self.steps
  local step = self.cfg.build[i]
  return i, #self.cfg.build, step and step.label or ""
end

--- From now on, output goes to writer as it comes (a build that takes more than a moment, or
--- -v); what was collected so far goes first.
---@param writer fun(chunk: string)
function Job:go_live(writer)
  if self.live or self.done then
    return
  end
  self.live = true
  self.writer = writer
  for _, chunk in ipairs(self.buffered) do
    writer(chunk)
  end
  self.buffered = {}
end

function Job:on_output(chunk)
  local step = self.steps[#self.steps]
  if step then
    step.chunks[#step.chunks + 1] = chunk
  end
  if self.live then
    self.writer(chunk)
  else
    self.buffered[#self.buffered + 1] = chunk
  end
end

--- Everything the build steps wrote, in order.
function Job:output()
  local parts = {}
  for _, step in ipairs(self.steps) do
    parts[#parts + 1] = table.concat(step.chunks)
  end
  return table.concat(parts)
end

function Job:resume(...)
  if self.cancelled or self.done then
    return
  end
  local co = self.co
  local res = table.pack(coroutine.resume(co, ...))
  if not res[1] then
    self:fail(#self.steps, self.cfg.build[#self.steps], nil,
      debug.traceback(co, tostring(res[2])))
    return
  end
  if coroutine.status(co) ~= "dead" then
    return -- waiting in ctx.sh
  end
  if res[2] then
    self.build_ms = self.svc.clock.now() - self.t0
    self:finish_build()
  else
    self:fail(res[3], res[4], res[5], res[6])
  end
end

--- ctx.sh(cmd): runs a command (string: shell; table: argv) inside a build step and waits for
--- it. Returns ok, status, output.
function Job:sh(cmd)
  local co, main = coroutine.running()
  if main or co ~= self.co then
    error("ctx.sh can only be called from a build step", 2)
  end
  local argv = to_argv(cmd)
  log.verbose("%s: $ %s", self.svc.name, type(cmd) == "string" and cmd or table.concat(argv, " "))
  local chunks = {}
  local function collect(chunk)
    if chunk then
      chunks[#chunks + 1] = chunk
      self:on_output(chunk)
    end
  end
  local proc, err = self.svc.core.spawn({
    cmd = argv,
    cwd = self.svc:cwd(self.cfg),
    env = self.svc:environment(self.changed, self.cfg),
    stdin = "null",
    stdout = "pipe",
    stderr = "pipe",
    on_stdout = collect,
    on_stderr = collect,
    grace_ms = 0,
    on_main_exit = "kill-tree",
    on_event = function(ev)
      if ev.type ~= "exit" then
        return
      end
      self.proc = nil
      if ev.spawn_error then
        collect(self.svc:explain(argv, ev.spawn_error, self.cfg) .. "\n")
      end
      if self.on_step_exit then
        self.on_step_exit()
      end
      self:resume(ev.status == 0, ev.status, table.concat(chunks))
    end,
  })
  if not proc then
    local msg = self.svc:explain(argv, err, self.cfg) .. "\n"
    collect(msg)
    return false, 127, msg
  end
  self.proc = proc
  return coroutine.yield()
end

--- Runs one build step inside the coroutine; returns ok, status, output. Records its duration
--- and result, and tells listeners.
function Job:run_step(step, i)
  local record = { label = step.label, chunks = {}, t0 = self.svc.clock.now() }
  self.steps[i] = record
  local ok, status, output
  if step.kind == "lua" then
    local fine, res, msg = budget.call(step.cmd, self.ctx)
    if not fine then
      ok, output = false, tostring(res) .. "\n"
      self:on_output(output)
    elseif res == false then
      ok, output = false, (msg and tostring(msg) or "the step returned false") .. "\n"
      self:on_output(output)
    else
      ok = true
    end
  else
    ok, status, output = self:sh(step.cmd)
  end
  record.ms = self.svc.clock.now() - record.t0
  record.status, record.ok = status, ok
  if self.svc.emit then
    self.svc:emit("build_step", { index = i, label = step.label, ok = ok, status = status,
      ms = record.ms })
  end
  return ok, status, output
end

function Job:fail(i, step, status)
  self.done = true
  self.build_ms = self.svc.clock.now() - self.t0
  self.on_done(false, { why = "build", step_index = i, step_count = #self.cfg.build,
    step_label = step and step.label or "?", status = status, output = self:output(),
    streamed = self.live, build_ms = self.build_ms })
end

--- The build passed (or there was none): evaluate the command.
function Job:finish_build()
  if self.cancelled then
    return
  end
  self.done = true
  if not self.cfg.run then
    self.on_done(true, { argv = nil, changed = self.changed, cfg = self.cfg,
      build_ms = self.build_ms, steps = #self.steps > 0 and self.steps or nil,
      output = #self.steps > 0 and self:output() or nil, streamed = self.live })
    return
  end
  local argv, why = M.command(self.cfg, self.ctx)
  if not argv then
    self.on_done(false, { why = "command", output = why, build_ms = self.build_ms })
    return
  end
  self.on_done(true, { argv = argv, changed = self.changed, cfg = self.cfg,
    build_ms = self.build_ms, steps = #self.steps > 0 and self.steps or nil,
    output = #self.steps > 0 and self:output() or nil, streamed = self.live })
end

--- Abandons the job: its running step's whole tree is killed; on_done is never called. Calls
--- fn() once no process of the job is left (at once if none runs).
---@param fn? fun()
function Job:cancel(fn)
  self.cancelled = true
  local proc = self.proc
  self.proc = nil
  if proc then
    self.on_step_exit = fn
    proc:kill()
  elseif fn then
    fn()
  end
end

return M
