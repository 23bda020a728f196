--- The engine: one watcher, the services, and what connects them.
---
--- Theory of operation. Data flows one way: the core's watcher delivers a batch of changed
--- paths → the engine routes each path to the services whose `watch` globs match and whose
--- `ignore` does not (a change to the Reloadfile or a module it required reloads the config
--- instead) → each service's debouncer collects its paths and, once quiet, asks the service to
--- rebuild → the service builds and restarts its process tree. Services with `after` start only
--- once every service they name is up (ready, or done for a one-shot task).
---
--- A config reload loads the file again; on error the old config keeps running and the error
--- is shown. On success, services whose definition changed (by fingerprint) are stopped and
--- started again, removed ones stopped, new ones started; the rest keep running untouched.
---
--- Quit (q, SIGINT, SIGTERM, SIGHUP) stops every service tree in parallel, each with its
--- grace period, and finishes once every tree is gone. A second SIGINT kills them at once.
local M = {}
M.__index = M

local debounce = require("reload.debounce")
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
    services = {},
    by_name = {},
    quitting = false,
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

--- Compiled matchers of a service config: the watch globs (one list: a later "!glob" excludes
--- again) and the ignore patterns. The schema compiled both with the core already, so neither
--- can raise here.
function M:matchers(cfg)
  local watch = self.core.glob(cfg.watch)
  local ignore = nil
  if #cfg.ignore > 0 then
    ignore = self.core.ignore({ root = self.config.root, patterns = cfg.ignore, defaults = false,
      gitignore = false })
  end
  return watch, ignore
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
  if count > 1 then
    output = log.prefixer(cfg.name, index, width)
  end
  local svc = service.new({
    cfg = cfg,
    root = self.config.root,
    core = self.core,
    clock = self.clock,
    env = self.env,
    output = output,
    on_change = function(s)
      self:service_changed(s)
    end,
  })
  svc.flags = self.config.flags
  svc.notify = self.notify
  svc.watch, svc.ignore = self:matchers(cfg)
  svc.debouncer = debounce.new({
    delay = cfg.debounce,
    clock = self.clock,
    on_fire = function(paths, overflow)
      self:fire(svc, paths, overflow)
    end,
  })
  return svc
end

function M:build_services()
  local chosen = selected(self.config, self.only)
  local width = 0
  for _, cfg in ipairs(chosen) do
    width = math.max(width, #cfg.name)
  end
  local list, by_name = {}, {}
  for i, cfg in ipairs(chosen) do
    local existing = self.by_name[cfg.name]
    if existing and existing.cfg.fingerprint == cfg.fingerprint then
      existing.cfg = cfg
      existing.watch, existing.ignore = self:matchers(cfg)
      list[#list + 1] = existing
    else
      list[#list + 1] = self:add_service(cfg, i, #chosen, width)
    end
    by_name[cfg.name] = list[#list]
  end
  return list, by_name
end

--- Starts every service whose dependencies are up and that has not started yet.
function M:start_ready_services()
  if self.quitting then
    return
  end
  for _, svc in ipairs(self.services) do
    if svc.state == "idle" and not svc.started_once then
      local waiting = false
      for _, dep in ipairs(svc.cfg.after) do
        local d = self.by_name[dep]
        if d and not d.up then
          waiting = true
        end
      end
      if not waiting then
        svc.started_once = true
        svc:rebuild({})
      elseif not svc.said_waiting then
        svc.said_waiting = true
        log.info("%s: waiting for %s", svc.name, table.concat(svc.cfg.after, ", "))
      end
    end
  end
end

function M:service_changed(svc)
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

--- Does this path concern the service?
local function concerns(svc, path)
  if svc.ignore and svc.ignore:ignored(path) then
    return false
  end
  return svc.watch:match(path)
end
M.concerns = concerns

--- A batch from the watcher.
function M:on_batch(batch)
  if self.quitting then
    return
  end
  local overflow, config_changed = false, false
  local paths, dirs = {}, {}
  for _, ev in ipairs(batch) do
    if ev.kind == "overflow" then
      overflow = true
    elseif not ev.dir then
      if self.watched_files[ev.path] or (ev.from and self.watched_files[ev.from]) then
        -- The config reload decides which services restart (by fingerprint); routing the
        -- file to services too would restart every one whose globs match it ("**").
        config_changed = true
      else
        paths[#paths + 1] = ev.path
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
  if config_changed then
    self:reload_config()
  end
  if overflow then
    log.warn("the kernel's event queue overflowed: rebuilding everything")
  end
  for _, svc in ipairs(self.services) do
    local mine = {}
    for _, p in ipairs(paths) do
      if concerns(svc, p) then
        mine[#mine + 1] = p
      end
    end
    for _, d in ipairs(dirs) do
      if not (svc.ignore and svc.ignore:ignored(d, true)) then
        mine[#mine + 1] = d .. "/"
      end
    end
    if (#mine > 0 or overflow) and svc.started_once then
      svc.debouncer:push(mine, overflow)
      svc:changes_coming()
    end
  end
end

function M:fire(svc, paths, overflow)
  if self.quitting then
    return
  end
  if self.clear then
    io.stdout:write("\27[H\27[2J\27[3J")
    io.stdout:flush()
  end
  if overflow then
    log.info("%s: rebuilding (events were lost)", svc.name)
  else
    log.info("%s: %s changed", svc.name, log.paths(paths))
  end
  svc:rebuild(paths)
end

--- Rebuilds and restarts every service (the `r` key).
function M:rebuild_all()
  for _, svc in ipairs(self.services) do
    if svc.started_once then
      svc.debouncer:cancel()
      svc:rebuild({})
    end
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
  local list, by_name = self:build_services()
  local changed = {}
  for name, svc in pairs(old) do
    if by_name[name] ~= svc then
      changed[#changed + 1] = name
      svc:shutdown(function() end)
    end
  end
  for name in pairs(by_name) do
    if not old[name] then
      changed[#changed + 1] = name
    end
  end
  table.sort(changed)
  self.services, self.by_name = list, by_name
  if #changed == 0 then
    log.info("Reloadfile reloaded: no service changed")
  else
    log.info("Reloadfile reloaded: restarting %s", table.concat(changed, ", "))
  end
  -- New or changed services start once the old trees are gone (their ports free): each new
  -- service waits on its own ready port; others start right away.
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
    svc.debouncer:cancel()
    svc:shutdown(one, force)
  end
  one()
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
    lines[#lines + 1] = ("  stop     SIG%s, grace %s s"):format(svc.stop.signal,
      tostring(svc.stop.grace))
    if svc.ready then
      local r = svc.ready
      local how = {}
      if r.port then
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
