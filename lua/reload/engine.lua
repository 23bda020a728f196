--- The engine: one watcher, the services, and what connects them.
---
--- Theory of operation. Data flows one way: the core's watcher delivers a batch of changed
--- paths → the engine routes each path to the services it concerns (each service compiles its
--- own `watch` and `ignore` globs); a change to the Reloadfile or a module it required reloads
--- the config instead → each service's debouncer collects its paths and, once the burst is over,
--- the service's lifecycle (service.lua) prepares and starts its next generation. Services with
--- `after` start only once every service they name is up (ready, or done for a one-shot task);
--- a task that runs again restarts the services that come after it.
---
--- The project root itself can be deleted or moved away (a script that recreates the checkout):
--- the watcher reports "root-gone", and until "root-back" nothing is started (the commands would
--- run in a directory that is no more); the running generations are left alone. When a directory
--- is at the root's path again, the Reloadfile is loaded again and every service restarts once,
--- from the new directory, as after an overflow.
---
--- A config reload loads the file again; on error the old config keeps running and the error
--- is shown. On success, a service whose definition changed (by fingerprint) gets the new one
--- through its own lifecycle, as a change (the old generation serves until the new one can
--- start), removed ones stop, new ones start once the removed ones are gone; the rest keep
--- running untouched.
---
--- Quit (q, SIGINT, SIGTERM, SIGHUP) stops every service tree in parallel, each with its
--- grace period, and finishes once every tree is gone. A second SIGINT kills them at once.
local M = {}
M.__index = M

local log = require("reload.log")
local service = require("reload.service")

---@class reload.Engine
---@field config reload.Config
---@field services reload.Service[]

---@class reload.EngineOptions
---@field config reload.Config
---@field core table reload.core or a fake
---@field clock table reload.clock or a fake
---@field env table<string,string> reload's environment
---@field only? string[] services named on the command line
---@field loader? fun(): reload.Config|nil, string|nil loads the Reloadfile again
---@field notify? fun(title: string, body: string)
---@field clear? boolean
---@field prefix_always? boolean prefix (and pipe) the output of a single service too

---@param opts reload.EngineOptions
---@return reload.Engine
function M.new(opts)
  local self = setmetatable({
    core = opts.core,
    clock = opts.clock,
    env = opts.env,
    only = opts.only,
    loader = opts.loader,
    notify = opts.notify,
    clear = opts.clear,
    prefix_always = opts.prefix_always,
    services = {},
    by_name = {},
    quitting = false,
    listeners = {},
  }, M)
  self:apply_config(opts.config)
  return self
end

--- The services chosen on the command line (and what they need through `after`).
local function selected(config, only)
  if not only or #only == 0 then
    return config.services
  end
  local want = {}
  local function add(name)
    if want[name] then
      return
    end
    want[name] = true
    for _, dep in ipairs(config.by_name[name].after) do
      add(dep)
    end
  end
  for _, name in ipairs(only) do
    add(name)
  end
  local out = {}
  for _, svc in ipairs(config.services) do
    if want[svc.name] then
      out[#out + 1] = svc
    end
  end
  return out
end

function M:apply_config(config)
  self.config = config
  self.watched_files = {}
  if config.file then
    self.watched_files[self:relative(config.file)] = true
  end
  for _, m in ipairs(config.modules) do
    local rel = self:relative(m)
    if rel then
      self.watched_files[rel] = true
    end
  end
end

function M:relative(path)
  local root = self.config.root
  if path:sub(1, #root + 1) == root .. "/" then
    return path:sub(#root + 2)
  end
  return nil
end

--- Creates the runtime object of one service config.
function M:add_service(cfg, index, count, width)
  local output = nil
  if count > 1 or self.prefix_always then
    output = log.prefixer(cfg.name, index, width)
  end
  return service.new({
    cfg = cfg,
    root = self.config.root,
    core = self.core,
    clock = self.clock,
    env = self.env,
    output = output,
    flags = self.config.flags,
    notify = self.notify,
    clear = self.clear,
    emit = function(ev)
      for _, fn in ipairs(self.listeners) do
        fn(ev)
      end
    end,
    on_change = function(s)
      self:service_changed(s)
    end,
    deps_up = function(s)
      return self:deps_up(s)
    end,
    on_ran_again = function(s)
      self:task_ran_again(s)
    end,
  })
end

--- Calls fn(ev) for every lifecycle event of every service (see service.lua's M:emit): the
--- JSON log and the dev proxy listen here. Also, once per watcher batch, { type = "files",
--- paths = { ... } } (no service): every changed file that is not the Reloadfile.
---@param fn fun(ev: table)
function M:listen(fn)
  self.listeners[#self.listeners + 1] = fn
end

--- A task ran again: what it produced is the input of the services that come after it.
function M:task_ran_again(task)
  for _, other in ipairs(self.services) do
    for _, dep in ipairs(other.cfg.after) do
      if dep == task.name and other.state.name ~= "idle" then
        other:restart(task.name .. " ran again")
      end
    end
  end
end

--- Are the services that svc comes `after` up?
function M:deps_up(svc)
  for _, dep in ipairs(svc.cfg.after) do
    local d = self.by_name[dep]
    if d and not d.up then
      return false
    end
  end
  return true
end

--- The runtime services of the current config: a service whose definition is unchanged keeps
--- its object as is; a changed one keeps its object and gets the new definition
--- (`reconfigure`: its next generation runs with it, through the usual transitions).
function M:build_services()
  local chosen = selected(self.config, self.only)
  local width = 0
  for _, cfg in ipairs(chosen) do
    width = math.max(width, #cfg.name)
  end
  local list, by_name, changed = {}, {}, {}
  for i, cfg in ipairs(chosen) do
    local existing = self.by_name[cfg.name]
    if existing and existing.cfg.fingerprint == cfg.fingerprint and not existing.next_cfg then
      list[#list + 1] = existing
    elseif existing then
      changed[#changed + 1] = { svc = existing, cfg = cfg }
      list[#list + 1] = existing
    else
      list[#list + 1] = self:add_service(cfg, i, #chosen, width)
    end
    by_name[cfg.name] = list[#list]
  end
  return list, by_name, changed
end

--- Starts every service that has not started yet and whose dependencies are up.
function M:start_ready_services()
  if self.quitting or self.removing then
    return
  end
  for _, svc in ipairs(self.services) do
    if svc.state.name == "idle" then
      if self:deps_up(svc) then
        svc:start()
      else
        svc:waiting_for_deps()
      end
    end
  end
end

--- A service's state or readiness changed: start what waited for it.
function M:service_changed(svc)
  if self.quitting then
    return
  end
  for _, other in ipairs(self.services) do
    if other ~= svc then
      other:deps_changed()
    end
  end
  if svc.up then
    self:start_ready_services()
  end
end

--- Starts everything: services, then the watcher.
function M:start()
  self.services, self.by_name = self:build_services()
  local w, err = self.core.watch({
    root = self.config.root,
    ignore = self.config.ignore,
    on_events = function(batch)
      self:on_batch(batch)
    end,
    on_error = function(msg)
      log.warn("%s", msg)
    end,
  })
  if not w then
    return nil, "cannot watch " .. self.config.root .. ": " .. tostring(err)
  end
  self.watcher = w
  local stats = w:stats()
  log.info("watching %s (%d directories) for %d service%s", self.config.root, stats.dirs or 0,
    #self.services, #self.services == 1 and "" or "s")
  self:start_ready_services()
  return true
end

--- A batch from the watcher: each event goes to the services it concerns.
function M:on_batch(batch)
  if self.quitting then
    return
  end
  local overflow, config_changed = false, false
  local files, dirs = {}, {}
  for _, ev in ipairs(batch) do
    if ev.kind == "root-gone" or ev.kind == "root-back" then
      self:on_root(ev.kind)
    end
  end
  if self.root_missing then
    return -- whatever else the batch holds went with the root
  end
  for _, ev in ipairs(batch) do
    if ev.kind == "root-gone" or ev.kind == "root-back" then -- luacheck: ignore 542
      -- handled above
    elseif ev.kind == "overflow" then
      overflow = true
    elseif not ev.dir then
      if self.watched_files[ev.path] or (ev.from and self.watched_files[ev.from]) then
        -- The config reload decides which services restart (by fingerprint); routing the
        -- file to services too would restart every one whose globs match it ("**").
        if ev.kind ~= "close" then
          config_changed = true
        end
      else
        files[#files + 1] = ev
      end
    elseif ev.kind == "remove" or ev.kind == "rename" then
      -- A directory moved or deleted stands for its whole subtree (the watcher reports the
      -- directory alone): it concerns every service that watches anything under it.
      dirs[#dirs + 1] = ev.path
      if ev.from then
        dirs[#dirs + 1] = ev.from
      end
    end
  end
  if #files > 0 then
    -- Every changed file, for listeners that react to files themselves (the dev proxy's
    -- stylesheet swap).
    local paths = {}
    for _, ev in ipairs(files) do
      paths[#paths + 1] = ev.path
    end
    local ev = { type = "files", paths = paths, time = self.clock.now() }
    for _, fn in ipairs(self.listeners) do
      fn(ev)
    end
  end
  if config_changed then
    self:reload_config()
  end
  if overflow and self.root_back then
    overflow = "the project root came back"
  elseif overflow then
    log.warn("the kernel's event queue overflowed: rebuilding everything")
  end
  self.root_back = nil
  for _, svc in ipairs(self.services) do
    local mine = {}
    for _, ev in ipairs(files) do
      if svc:concerns(ev.path) then
        mine[#mine + 1] = ev
      elseif ev.from and svc:concerns(ev.from) then
        mine[#mine + 1] = { path = ev.from, kind = "remove", settled = true }
      end
    end
    for _, d in ipairs(dirs) do
      if svc:concerns_dir(d) then
        mine[#mine + 1] = { path = d .. "/", kind = "remove", settled = true, dir = true }
      end
    end
    if #mine > 0 or overflow then
      svc:changes(mine, overflow)
    end
  end
end

--- The project root went ("root-gone") or a directory is at its path again ("root-back").
---@param kind "root-gone"|"root-back"
function M:on_root(kind)
  if kind == "root-gone" then
    if not self.root_missing then
      self.root_missing = true
      log.warn("project root removed; waiting for it to come back (%s)",
        log.escape(self.config.root))
      for _, svc in ipairs(self.services) do
        svc:hold()
      end
    end
  elseif self.root_missing then
    self.root_missing = false
    self.root_back = true
    log.info("project root is back: loading the Reloadfile again and restarting everything")
    self:reload_config()
  end
end

--- Rebuilds and restarts every service (the `r` key).
function M:rebuild_all()
  for _, svc in ipairs(self.services) do
    svc:restart("restart requested")
  end
  self:start_ready_services()
end

--- Loads the Reloadfile again; applies it only if it loads cleanly.
function M:reload_config()
  if not self.loader then
    return
  end
  local config, err = self.loader()
  if not config then
    log.error("%s", err)
    log.error("the Reloadfile has an error: the previous configuration keeps running")
    return
  end
  for _, name in ipairs(self.only or {}) do
    if not config.by_name[name] then
      log.error("the Reloadfile no longer defines service \"%s\": keeping the previous " ..
        "configuration", name)
      return
    end
  end
  local old = self.by_name
  self:apply_config(config)
  local list, by_name, reconfigured = self:build_services()
  local removed, added, restarting = {}, {}, {}
  local removing = 0
  for name, svc in pairs(old) do
    if by_name[name] ~= svc then
      removed[#removed + 1] = name
      removing = removing + 1
      -- New services start once the removed ones are gone: one may take over the other's port.
      svc:shutdown(function()
        removing = removing - 1
        if removing == 0 then
          self.removing = false
          self:start_ready_services()
        end
      end)
    end
  end
  self.removing = removing > 0
  for name in pairs(by_name) do
    if not old[name] then
      added[#added + 1] = name
    end
  end
  for _, r in ipairs(reconfigured) do
    restarting[#restarting + 1] = r.svc.name
  end
  local parts = {}
  for _, part in ipairs({ { "restarting", restarting }, { "starting", added },
    { "stopping", removed } }) do
    if #part[2] > 0 then
      table.sort(part[2])
      parts[#parts + 1] = part[1] .. " " .. table.concat(part[2], ", ")
    end
  end
  self.services, self.by_name = list, by_name
  if #parts == 0 then
    log.info("Reloadfile reloaded: no service changed")
  else
    log.info("Reloadfile reloaded: %s", table.concat(parts, "; "))
  end
  -- A changed service gets its new definition through its own transitions: the old generation
  -- is stopped only once the new one is ready to start, and the new one starts only once the
  -- old tree is gone.
  for _, r in ipairs(reconfigured) do
    r.svc:reconfigure(r.cfg)
  end
  self:start_ready_services()
end

--- Stops everything and calls fn() once every tree is gone.
---@param fn fun()
---@param force? boolean
function M:quit(fn, force)
  if self.quitting then
    if force then
      log.warn("killing every process tree now")
      for _, svc in ipairs(self.services) do
        svc:force()
      end
    end
    return
  end
  self.quitting = true
  if self.watcher then
    self.watcher:close()
    self.watcher = nil
  end
  local pending = #self.services + 1
  local function one()
    pending = pending - 1
    if pending == 0 then
      fn()
    end
  end
  for _, svc in ipairs(self.services) do
    svc:shutdown(one, force)
  end
  one()
end

--- The processes that reload could not stop (service.lua `left_running`) and that still run.
---@return reload.Survivor[]
function M:survivors()
  local out = {}
  for _, svc in ipairs(self.services) do
    for _, sv in ipairs(svc.survivors or {}) do
      -- Alive: in /proc and not a zombie (init may not have reaped one that was killed since).
      local f = io.open(("/proc/%d/stat"):format(sv.pid), "r")
      local stat = f and f:read("a") or ""
      if f then
        f:close()
      end
      local comm, state = stat:match("^%d+ %((.*)%) (%a)")
      if state and state ~= "Z" and state ~= "X" and (not sv.comm or comm == sv.comm) then
        out[#out + 1] = sv
      end
    end
  end
  return out
end

--- The plan, for `reload check`: one line per fact.
---@param config reload.Config
---@return string[]
function M.plan(config)
  local lines = {}
  local function label(step)
    return step and step.label or "-"
  end
  for _, svc in ipairs(config.services) do
    lines[#lines + 1] = ("service %s"):format(svc.name)
    lines[#lines + 1] = ("  watch    %s"):format(table.concat(svc.watch, " "))
    if #svc.ignore > 0 then
      lines[#lines + 1] = ("  ignore   %s"):format(table.concat(svc.ignore, " "))
    end
    for i, step in ipairs(svc.build) do
      lines[#lines + 1] = ("  build %d  %s"):format(i, label(step))
    end
    lines[#lines + 1] = ("  run      %s%s"):format(label(svc.run),
      #svc.wrap > 0 and (" (wrapped by %d function%s)"):format(#svc.wrap,
        #svc.wrap == 1 and "" or "s") or "")
    local env = {}
    for k, v in pairs(svc.env) do
      env[#env + 1] = k .. "=" .. v
    end
    if #env > 0 then
      table.sort(env)
      lines[#lines + 1] = ("  env      %s"):format(table.concat(env, " "))
    end
    lines[#lines + 1] = ("  stop     SIG%s%s, grace %s s"):format(svc.stop.signal,
      svc.stop.to == "main" and " to the main process" or "", tostring(svc.stop.grace))
    if svc.proxy then
      local p = svc.proxy
      lines[#lines + 1] = ("  proxy    %s:%d -> %s:%d%s%s"):format(p.listen.host, p.listen.port,
        p.to.host, p.to.port, p.live and ", live reload" or "",
        #p.css > 0 and (", css " .. table.concat(p.css, " ")) or "")
    end
    if svc.listen then
      local socks = {}
      for i, e in ipairs(svc.listen) do
        socks[i] = ("%s:%d as fd %d (%s)"):format(e.host, e.port, i + 2, e.name)
      end
      lines[#lines + 1] = ("  listen   %s"):format(table.concat(socks, ", "))
    end
    if svc.ready then
      local r = svc.ready
      local how = {}
      if r.port and require("reload.schema").handed_off(svc.listen, r.port) then
        how[#how + 1] = "an answer on port " .. r.port -- reload holds it: it always accepts
      elseif r.port then
        how[#how + 1] = "port " .. r.port
      end
      if r.pattern then
        how[#how + 1] = (r.plain and "output containing '%s'" or "output matching the Lua " ..
          "pattern '%s'"):format(r.pattern)
      end
      lines[#lines + 1] = ("  ready    %s, timeout %s s"):format(table.concat(how, " or "),
        tostring(r.timeout))
    end
    lines[#lines + 1] = ("  restart  %s"):format(svc.restart)
    if #svc.after > 0 then
      lines[#lines + 1] = ("  after    %s"):format(table.concat(svc.after, ", "))
    end
  end
  return lines
end


return M
