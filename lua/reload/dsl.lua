--- The Reloadfile DSL: loads a Reloadfile.lua into a plain, validated configuration.
---
--- Theory of operation. The file runs in an environment of its own that offers `service`,
--- `ignore`, `flag`, `steps`, `watch_also` and the standard library, and a `require` that looks
--- in the project's `.reload/` folder, the user's config folder, LuaRocks trees and the
--- built-in recipes (reload.recipes.*), in that order. Each DSL call records the line it was
--- made on, so that validation can name `Reloadfile.lua:LINE` for a bad key. Validation and
--- defaults live in one place (`normalize_service`); nothing else in the engine checks types.
local M = {}

local proxy = require("reload.proxy")
local signals = require("reload.signals")

---@class reload.Step
---@field kind "shell"|"argv"|"lua"
---@field cmd string|string[]|function
---@field label string

---@class reload.ServiceConfig
---@field name string
---@field line integer line of the service call in the Reloadfile
---@field watch string[]
---@field ignore string[]
---@field build reload.Step[]
---@field run reload.Step|nil
---@field wrap function[]
---@field env table<string,string>
---@field cwd string|nil
---@field stop { signal: string, grace: number }
---@field ready { port: integer|nil, pattern: string|nil, timeout: number }|nil
---@field restart "never"|"on-failure"|"always"
---@field after string[]
---@field debounce number|nil milliseconds of quiet after a complete save (nil: none for one
--- file, a short one for a storm)
---@field task boolean one-shot: up once it exited 0
---@field stdin boolean the service reads the terminal
---@field proxy table|nil the dev proxy in front of it (proxy.lua's validate)
---@field fingerprint string

---@class reload.Config
---@field file string absolute path of the Reloadfile
---@field root string its directory, the project root
---@field services reload.ServiceConfig[]
---@field by_name table<string, reload.ServiceConfig>
---@field ignore string[]
---@field modules string[] project files the Reloadfile required (watched too)
---@field flags table<string, string|boolean>

-- Every key a service accepts, with its check. A check returns the normalized value or raises
-- a message (without location: the caller adds it).
local SERVICE_KEYS = {
  "watch", "ignore", "build", "run", "wrap", "env", "cwd", "stop", "ready", "restart", "after",
  "debounce", "task", "stdin", "proxy",
}

local RESTART = { never = true, ["on-failure"] = true, always = true }

local function fail(msg)
  error({ dsl = msg }, 0)
end

local function type_name(v)
  return math.type(v) or type(v)
end

--- A list of strings, or one string.
local function string_list(key, v)
  if type(v) == "string" then
    return { v }
  end
  if type(v) ~= "table" then
    fail(("'%s' must be a string or a list of strings, not %s"):format(key, type_name(v)))
  end
  local out = {}
  for i, s in ipairs(v) do
    if type(s) ~= "string" then
      fail(("'%s'[%d] must be a string, not %s"):format(key, i, type_name(s)))
    end
    out[#out + 1] = s
  end
  for k in pairs(v) do
    if math.type(k) ~= "integer" then
      fail(("'%s' must be a list; it has the key '%s'"):format(key, tostring(k)))
    end
  end
  return out
end

local STEPS_MARK = setmetatable({}, { __mode = "k" })

--- One step: a shell string, an argv table (strings only), or a Lua function.
local function step(key, v)
  if type(v) == "string" then
    if v:match("^%s*$") then
      fail(("'%s' is an empty command"):format(key))
    end
    return { kind = "shell", cmd = v, label = v }
  elseif type(v) == "function" then
    local info = debug.getinfo(v, "S")
    return { kind = "lua", cmd = v, label = ("function at line %d"):format(info.linedefined) }
  elseif type(v) == "table" then
    local argv = string_list(key, v)
    if #argv == 0 then
      fail(("'%s' is an empty argv table"):format(key))
    end
    if argv[1]:find("%s") then
      fail(("'%s': the program name '%s' contains a space; an argv table is one command " ..
        "without a shell. For several shell commands in order write steps { ... }"):format(key,
        argv[1]))
    end
    return { kind = "argv", cmd = argv, label = table.concat(argv, " ") }
  end
  fail(("'%s' must be a command (string, argv table or function), not %s"):format(key,
    type_name(v)))
end

--- A list of steps: one step, or a table marked by steps{...}, or a table holding tables or
--- functions (a table of strings only is an argv).
local function step_list(key, v)
  if type(v) == "table" and not STEPS_MARK[v] then
    local nested = false
    for _, x in ipairs(v) do
      if type(x) ~= "string" then
        nested = true
      end
    end
    if not nested then
      return { step(key, v) }
    end
  elseif type(v) ~= "table" then
    return { step(key, v) }
  end
  local out = {}
  for i, x in ipairs(v) do
    out[#out + 1] = step(("%s[%d]"):format(key, i), x)
  end
  return out
end

local function number_key(key, v, min)
  if type(v) ~= "number" or v < min then
    fail(("'%s' must be a number >= %s, not %s"):format(key, tostring(min), tostring(v)))
  end
  return v
end

local function check_table_keys(key, v, allowed)
  for k in pairs(v) do
    if not allowed[k] then
      local names = {}
      for name in pairs(allowed) do
        names[#names + 1] = name
      end
      table.sort(names)
      fail(("'%s' has an unknown key '%s' (known: %s)"):format(key, tostring(k),
        table.concat(names, ", ")))
    end
  end
end

local CHECKS = {}

CHECKS.watch = string_list
CHECKS.ignore = string_list
CHECKS.after = string_list
CHECKS.build = step_list

function CHECKS.run(key, v)
  return step(key, v)
end

function CHECKS.wrap(key, v)
  if type(v) == "function" then
    return { v }
  end
  if type(v) ~= "table" then
    fail(("'%s' must be a function (command -> command) or a list of them"):format(key))
  end
  for i, f in ipairs(v) do
    if type(f) ~= "function" then
      fail(("'%s'[%d] must be a function, not %s"):format(key, i, type_name(f)))
    end
  end
  return v
end

function CHECKS.env(key, v)
  if type(v) ~= "table" then
    fail(("'%s' must be a table of NAME = value"):format(key))
  end
  local out = {}
  for k, x in pairs(v) do
    if type(k) ~= "string" or not k:match("^[%a_][%w_]*$") then
      fail(("'%s' has an invalid variable name '%s'"):format(key, tostring(k)))
    end
    if type(x) == "number" or type(x) == "boolean" then
      x = tostring(x)
    end
    if type(x) ~= "string" then
      fail(("'%s.%s' must be a string, not %s"):format(key, k, type_name(x)))
    end
    out[k] = x
  end
  return out
end

function CHECKS.cwd(key, v)
  if type(v) ~= "string" then
    fail(("'%s' must be a string"):format(key))
  end
  return v
end

function CHECKS.stop(key, v)
  if type(v) == "string" then
    v = { signal = v }
  end
  if type(v) ~= "table" then
    fail(("'%s' must be a table { signal = \"TERM\", grace = seconds }"):format(key))
  end
  check_table_keys(key, v, { signal = true, grace = true })
  local out = { signal = "TERM", grace = 3 }
  if v.signal ~= nil then
    local name = signals.normalize(v.signal)
    if not name then
      fail(("'%s.signal': unknown signal '%s'"):format(key, tostring(v.signal)))
    end
    out.signal = name
  end
  if v.grace ~= nil then
    out.grace = number_key(key .. ".grace", v.grace, 0)
  end
  return out
end

function CHECKS.ready(key, v)
  if math.type(v) == "integer" then
    v = { port = v }
  elseif type(v) == "string" then
    v = { pattern = v }
  end
  if type(v) ~= "table" then
    fail(("'%s' must be a port number, an output pattern, or { port =, pattern =, timeout = }")
      :format(key))
  end
  check_table_keys(key, v, { port = true, pattern = true, timeout = true })
  if v.port == nil and v.pattern == nil then
    fail(("'%s' needs a port or a pattern"):format(key))
  end
  if v.port ~= nil and (math.type(v.port) ~= "integer" or v.port < 1 or v.port > 65535) then
    fail(("'%s.port' must be a port number (1-65535), not %s"):format(key, tostring(v.port)))
  end
  if v.pattern ~= nil then
    if type(v.pattern) ~= "string" then
      fail(("'%s.pattern' must be a string"):format(key))
    end
    local ok, err = pcall(string.find, "", v.pattern)
    if not ok then
      fail(("'%s.pattern' is not a valid Lua pattern: %s"):format(key, err))
    end
  end
  return {
    port = v.port,
    pattern = v.pattern,
    timeout = v.timeout and number_key(key .. ".timeout", v.timeout, 0) or 30,
  }
end

function CHECKS.restart(key, v)
  if not RESTART[v] then
    fail(("'%s' must be \"never\", \"on-failure\" or \"always\", not %s"):format(key,
      type(v) == "string" and ('"' .. v .. '"') or tostring(v)))
  end
  return v
end

function CHECKS.debounce(key, v)
  return number_key(key, v, 0)
end

function CHECKS.task(key, v)
  if type(v) ~= "boolean" then
    fail(("'%s' must be true or false"):format(key))
  end
  return v
end
CHECKS.stdin = CHECKS.task
CHECKS.proxy = proxy.validate

--- A stable text for a service definition, so that a config reload restarts only services
--- whose definition changed. Functions count by their bytecode and upvalues.
local function fingerprint(v, seen)
  seen = seen or {}
  local t = type(v)
  if t == "table" then
    if seen[v] then
      return "<cycle>"
    end
    seen[v] = true
    local keys = {}
    for k in pairs(v) do
      keys[#keys + 1] = k
    end
    table.sort(keys, function(a, b)
      return tostring(a) < tostring(b)
    end)
    local parts = {}
    for _, k in ipairs(keys) do
      if k ~= "line" then
        parts[#parts + 1] = tostring(k) .. "=" .. fingerprint(v[k], seen)
      end
    end
    seen[v] = nil
    return "{" .. table.concat(parts, ",") .. "}"
  elseif t == "function" then
    local ok, code = pcall(string.dump, v, true)
    local parts = { ok and code or tostring(v) }
    for i = 1, 255 do
      local name, value = debug.getupvalue(v, i)
      if not name then
        break
      end
      if name ~= "_ENV" then
        parts[#parts + 1] = name .. "=" .. fingerprint(value, seen)
      end
    end
    return "fn(" .. table.concat(parts, ";") .. ")"
  elseif t == "string" then
    return ("%q"):format(v)
  end
  return tostring(v)
end
M.fingerprint = fingerprint

--- Edit distance, for "did you mean" suggestions.
local function distance(a, b)
  local prev = {}
  for j = 0, #b do
    prev[j] = j
  end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

local function suggest(word, candidates)
  local best, best_d
  for _, c in ipairs(candidates) do
    local d = distance(word, c)
    if d <= 2 and (not best_d or d < best_d) then
      best, best_d = c, d
    end
  end
  return best and (" (did you mean '%s'?)"):format(best) or ""
end

--- The line where `key =` is written, searching from the service's own line. Lua does not
--- record where a table constructor's keys are, so the source text is the only witness.
local function key_line(lines, from, key)
  for i = math.max(from, 1), #lines do
    if lines[i]:find("%f[%w_]" .. key:gsub("%p", "%%%0") .. "%s*=") then
      return i
    end
  end
  return from
end

local function normalize_service(raw, name, line, lines)
  local out = {
    name = name,
    line = line,
    watch = {},
    ignore = {},
    build = {},
    wrap = {},
    env = {},
    stop = { signal = "TERM", grace = 3 },
    restart = "never",
    after = {},
    debounce = nil, -- the save model decides (debounce.lua)
    task = false,
    stdin = false,
  }
  local known = {}
  for _, k in ipairs(SERVICE_KEYS) do
    known[k] = true
  end
  -- Report keys in source order so that the first problem in the file comes first.
  local keys = {}
  for k in pairs(raw) do
    keys[#keys + 1] = k
  end
  table.sort(keys, function(a, b)
    return key_line(lines, line, tostring(a)) < key_line(lines, line, tostring(b))
  end)
  for _, k in ipairs(keys) do
    local at = key_line(lines, line, tostring(k))
    if type(k) ~= "string" or not known[k] then
      error({ dsl = ("service \"%s\": unknown key '%s'%s"):format(name, tostring(k),
        type(k) == "string" and suggest(k, SERVICE_KEYS) or ""), line = at }, 0)
    end
    local ok, res = pcall(CHECKS[k], k, raw[k])
    if not ok then
      if type(res) == "table" and res.dsl then
        error({ dsl = ("service \"%s\": %s"):format(name, res.dsl), line = at }, 0)
      end
      error(res, 0)
    end
    out[k] = res
  end
  if #out.watch == 0 then
    out.watch = { "**" }
  end
  if out.proxy and not out.ready then
    out.ready = proxy.implied_ready(out.proxy)
  end
  if not out.run and #out.build == 0 then
    error({ dsl = ("service \"%s\" has neither 'run' nor 'build': nothing to do"):format(name),
      line = line }, 0)
  end
  out.fingerprint = fingerprint(raw)
  return out
end

local function read_lines(path)
  local lines = {}
  local f = io.open(path, "r")
  if f then
    for l in f:lines() do
      lines[#lines + 1] = l
    end
    f:close()
  end
  return lines
end

-- The folder holding reload's own Lua modules (the built-in recipes among them).
M.builtin_dir = debug.getinfo(1, "S").source:match("^@(.*)/reload/dsl%.lua$") or "."

--- The path templates searched by `require` in a Reloadfile, in order: the project's
--- .reload/ folder, the user's $XDG_CONFIG_HOME/reload/ (default ~/.config/reload/), the
--- LuaRocks trees on package.path, then reload's built-in modules and recipes.
---@param root string
---@return string[] path templates
function M.search_path(root)
  local home = os.getenv("HOME") or ""
  local xdg = os.getenv("XDG_CONFIG_HOME")
  if not xdg or xdg == "" then
    xdg = home .. "/.config"
  end
  local list = {
    root .. "/.reload/?.lua",
    root .. "/.reload/?/init.lua",
    xdg .. "/reload/?.lua",
    xdg .. "/reload/?/init.lua",
  }
  local builtin = {}
  for template in package.path:gmatch("[^;]+") do
    if template:sub(1, #M.builtin_dir + 1) == M.builtin_dir .. "/" then
      builtin[#builtin + 1] = template
    elseif not template:match("^%./") then
      list[#list + 1] = template
    end
  end
  for _, template in ipairs(builtin) do
    list[#list + 1] = template
  end
  return list
end

--- The line of the Reloadfile that the error at `level` points to.
local function caller_line(file, level)
  for l = level, level + 20 do
    local info = debug.getinfo(l, "Sl")
    if not info then
      break
    end
    if info.source == "@" .. file and info.currentline > 0 then
      return info.currentline
    end
  end
  return 0
end

--- Loads and validates a Reloadfile.
---@param file string absolute path
---@param flags? table<string, string|boolean> from the command line (-D key=value, --debug)
---@return reload.Config|nil config
---@return string|nil error "FILE:LINE: message"
function M.load(file, flags)
  flags = flags or {}
  local root = file:match("^(.*)/[^/]*$") or "."
  local config = {
    file = file,
    root = root,
    services = {},
    by_name = {},
    ignore = {},
    modules = {},
    flags = flags,
  }
  local lines = read_lines(file)
  local short = file:match("[^/]*$")
  local env = setmetatable({}, { __index = _G })

  local function located(msg, line)
    return ("%s:%d: %s"):format(short, line, msg)
  end

  function env.service(name)
    local line = caller_line(file, 2)
    if type(name) == "table" then
      -- service { ... }: the one-service shorthand, named "main".
      return env.service("main")(name)
    end
    if type(name) ~= "string" or not name:match("^[%w_.-]+$") then
      error({ dsl = ("service name must be a word (letters, digits, _ . -), not %s")
        :format(tostring(name)), line = line }, 0)
    end
    return function(def)
      if type(def) ~= "table" then
        error({ dsl = ("service \"%s\" needs a table { ... }"):format(name), line = line }, 0)
      end
      if config.by_name[name] then
        error({ dsl = ("service \"%s\" is defined twice (first at line %d)"):format(name,
          config.by_name[name].line), line = line }, 0)
      end
      local svc = normalize_service(def, name, line, lines)
      config.services[#config.services + 1] = svc
      config.by_name[name] = svc
      return svc
    end
  end

  function env.ignore(list)
    local line = caller_line(file, 2)
    local ok, res = pcall(string_list, "ignore", list)
    if not ok then
      error({ dsl = type(res) == "table" and res.dsl or tostring(res), line = line }, 0)
    end
    for _, p in ipairs(res) do
      config.ignore[#config.ignore + 1] = p
    end
  end

  --- flag("debug") -> true/"value"/nil: flags from the command line.
  function env.flag(name, default)
    local v = flags[name]
    if v == nil then
      return default
    end
    return v
  end

  --- steps { a, b, c }: a list of build steps run in order (a plain table of strings would be
  --- one argv).
  function env.steps(list)
    STEPS_MARK[list] = true
    return list
  end

  -- require: project and user recipe folders first, then LuaRocks trees and built-ins.
  local search = table.concat(M.search_path(root), ";")
  local fresh = {}
  function env.require(modname)
    if fresh[modname] ~= nil then
      return fresh[modname]
    end
    local path = package.searchpath(modname, search)
    if not path or path:sub(1, #M.builtin_dir + 1) == M.builtin_dir .. "/" then
      -- reload's own modules and C modules: shared with the engine, loaded once.
      return require(modname)
    end
    config.modules[#config.modules + 1] = path
    local chunk, err = loadfile(path, "t", env)
    if not chunk then
      error(err, 2)
    end
    -- Loaded fresh on every load of the Reloadfile: an edit of the module must be seen.
    local res = chunk(modname, path)
    if res == nil then
      res = true
    end
    fresh[modname] = res
    return res
  end

  local chunk, err = loadfile(file, "t", env)
  if not chunk then
    -- "Reloadfile.lua:3: '}' expected near 'x'" already has file:line; keep the short name.
    return nil, (err:gsub("^[^:]*/", ""))
  end
  local ok, res = xpcall(chunk, function(e)
    if type(e) == "table" and e.dsl then
      return e
    end
    return { lua = tostring(e), traceback = debug.traceback(tostring(e), 2),
      line = caller_line(file, 2) }
  end)
  if not ok then
    if res.dsl then
      return nil, located(res.dsl, res.line or 0)
    end
    local msg = res.lua
    if msg:find("^" .. short:gsub("%p", "%%%0") .. ":%d+:") or msg:find("^/") then
      return nil, (msg:gsub("^[^:]*/", ""))
    end
    return nil, located(msg, res.line)
  end

  -- Cross-service checks: `after` names known services, with no cycle.
  for _, svc in ipairs(config.services) do
    for _, dep in ipairs(svc.after) do
      if not config.by_name[dep] then
        local names = {}
        for _, s in ipairs(config.services) do
          names[#names + 1] = s.name
        end
        return nil, located(("service \"%s\": 'after' names an unknown service \"%s\"%s")
          :format(svc.name, dep, suggest(dep, names)), key_line(lines, svc.line, "after"))
      end
    end
  end
  local state = {}
  local function visit(svc, path)
    if state[svc.name] == "done" then
      return nil
    end
    if state[svc.name] == "active" then
      return path
    end
    state[svc.name] = "active"
    for _, dep in ipairs(svc.after) do
      local cycle = visit(config.by_name[dep], path .. " -> " .. dep)
      if cycle then
        return cycle
      end
    end
    state[svc.name] = "done"
  end
  for _, svc in ipairs(config.services) do
    local cycle = visit(svc, svc.name)
    if cycle then
      return nil, located("'after' forms a cycle: " .. cycle, key_line(lines, svc.line, "after"))
    end
  end
  if #config.services == 0 then
    return nil, located("no service defined: add service \"name\" { run = ... }", 1)
  end
  return config
end

--- A configuration built from `reload run` options instead of a file.
---@param root string
---@param svc table raw service definition
---@param ignore string[]
---@return reload.Config|nil, string|nil
function M.from_table(root, svc, ignore)
  local ok, res = pcall(normalize_service, svc, "main", 0, {})
  if not ok then
    return nil, type(res) == "table" and res.dsl or tostring(res)
  end
  return {
    file = nil,
    root = root,
    services = { res },
    by_name = { main = res },
    ignore = ignore or {},
    modules = {},
    flags = {},
  }
end

--- Finds Reloadfile.lua in dir or the nearest parent.
---@param dir string absolute
---@return string|nil
function M.find(dir)
  while true do
    local candidate = dir .. "/Reloadfile.lua"
    local f = io.open(candidate, "r")
    if f then
      f:close()
      return candidate
    end
    local parent = dir:match("^(.*)/[^/]+$")
    if not parent or parent == dir then
      return nil
    end
    dir = parent == "" and "/" or parent
    if dir == "/" then
      f = io.open("/Reloadfile.lua", "r")
      if f then
        f:close()
        return "/Reloadfile.lua"
      end
      return nil
    end
  end
end

return M
