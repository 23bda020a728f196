--- The Reloadfile DSL: loads a Reloadfile.lua into a plain, validated configuration.
---
--- Theory of operation. The file runs in an environment of its own that offers `service`,
--- `ignore`, `flag`, `steps`, `replace` and the standard library (without `os.exit`), and a
--- `require` that looks in the project's `.reload/` folder, the user's config folder, LuaRocks
--- trees and the built-in recipes (reload.recipes.*), in that order. Each DSL call records the
--- line it was made on, so that validation can name `Reloadfile.lua:LINE` for a bad key. Every
--- key is checked by the schema (`reload.schema`), nothing else in the engine checks types.
---
--- The Reloadfile and every module it requires from a file must pass `reload.trust` (owned
--- by you or root, not writable by all), and the whole evaluation runs under an instruction
--- budget (a count hook): an endless loop is an error, like a syntax error, not a freeze.
--- Every error is reported at the user's FILE:LINE (the Reloadfile or one of its modules,
--- named relative to the project root), never inside reload's own files.
local M = {}

local schema = require("reload.schema")
local trust = require("reload.trust")

--- Lua instructions a Reloadfile (with what it requires) may run while it loads: about a
--- second; a real one needs a few thousand.
M.budget = 100000000

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
---@field ready { port: integer|nil, pattern: string|nil, plain: boolean, timeout: number }|nil
---@field restart "never"|"on-failure"|"always"
---@field after string[]
---@field debounce number milliseconds
---@field task boolean one-shot: up once it exited 0
---@field stdin boolean the service reads the terminal
---@field tty boolean the command's output goes through a pty of its own (false: pipes)
---@field fingerprint string

---@class reload.Config
---@field file string absolute path of the Reloadfile
---@field root string its directory, the project root
---@field services reload.ServiceConfig[]
---@field by_name table<string, reload.ServiceConfig>
---@field ignore string[]
---@field modules string[] project files the Reloadfile required (watched too)
---@field flags table<string, string|boolean>

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

--- Checks and normalizes a service definition with the schema; raises { dsl =, line = }.
---@param raw table what the user wrote
---@param name string
---@param line integer where the service call is (0: not from a file)
---@param lines string[] the Reloadfile's text, to find the line of each key
---@param ctx reload.SchemaContext
local function normalize_service(raw, name, line, lines, ctx)
  local out = schema.defaults(name)
  out.line = line
  -- Report keys in source order so that the first problem in the file comes first.
  local keys = {}
  for k in pairs(raw) do
    keys[#keys + 1] = k
  end
  table.sort(keys, function(a, b)
    local la, lb = key_line(lines, line, tostring(a)), key_line(lines, line, tostring(b))
    if la ~= lb then
      return la < lb
    end
    return tostring(a) < tostring(b)
  end)
  for _, k in ipairs(keys) do
    local at = key_line(lines, line, tostring(k))
    if type(k) ~= "string" or not schema.by_name[k] then
      error({ dsl = ("service \"%s\": unknown key '%s'%s"):format(name, tostring(k),
        type(k) == "string" and suggest(k, schema.names) or ""), line = at }, 0)
    end
    local ok, res = pcall(schema.check, k, raw[k], ctx)
    if not ok then
      if type(res) == "table" and res.dsl then
        error({ dsl = ("service \"%s\": %s"):format(name, res.dsl), line = at }, 0)
      end
      error(res, 0)
    end
    out[k] = res
  end
  local ok, res = pcall(schema.finish, out)
  if not ok then
    error({ dsl = type(res) == "table" and res.dsl or tostring(res), line = line }, 0)
  end
  out.fingerprint = fingerprint(raw)
  return out
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local text = f:read("a")
  f:close()
  return text
end

local function split_lines(text)
  local lines = {}
  for l in (text or ""):gmatch("([^\n]*)\n?") do
    lines[#lines + 1] = l
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

--- How a user file is named in messages: relative to the project root, else with ~ for $HOME.
local function display_name(root, path)
  if path:sub(1, #root + 1) == root .. "/" then
    return path:sub(#root + 2)
  end
  local home = os.getenv("HOME")
  if home and home ~= "" and path:sub(1, #home + 1) == home .. "/" then
    return "~" .. path:sub(#home + 1)
  end
  return path
end

--- Loads and validates a Reloadfile.
---@param file string absolute path
---@param flags? table<string, string|boolean> from the command line (-D key=value, --debug)
---@return reload.Config|nil config
---@return string|nil error "FILE:LINE: message"
function M.load(file, flags)
  flags = flags or {}
  local root = file:match("^(.*)/[^/]*$") or "."
  if root == "" then
    root = "/"
  end
  local config = {
    file = file,
    root = root,
    services = {},
    by_name = {},
    -- What the project's toolchain writes while it builds (Cargo's target/), first: the
    -- Reloadfile's ignore { "!target/" } comes later and wins.
    ignore = require("reload.detect").ignores(root),
    modules = {},
    flags = flags,
  }
  local short = display_name(root, file)
  local ok_trust, why = trust.check(file)
  if not ok_trust then
    return nil, why
  end
  local text = read_file(file)
  if not text then
    return nil, ("%s: cannot read it"):format(file)
  end
  local lines = split_lines(text)
  local ctx = { root = root }

  -- Chunk names are the names shown to the user ("@Reloadfile.lua", "@.reload/team.lua"):
  -- Lua's own messages then carry them, never an abbreviated absolute path.
  local user_files = { ["@" .. short] = true }

  --- The innermost frame (from `level` up) that runs a user file: "name", line.
  local function user_frame(level)
    for l = level, 200 do
      local info = debug.getinfo(l, "Sl")
      if not info then
        break
      end
      if user_files[info.source] and info.currentline > 0 then
        return info.source:sub(2), info.currentline
      end
    end
    return short, 0
  end

  --- The line of the Reloadfile that a DSL call at `level` comes from.
  local function caller_line(level)
    for l = level, 200 do
      local info = debug.getinfo(l, "Sl")
      if not info then
        break
      end
      if info.source == "@" .. short and info.currentline > 0 then
        return info.currentline
      end
    end
    return 0
  end

  local env = {}
  -- The standard library, without what would end or outlive the load: os.exit would end the
  -- whole session (every service with it), debug.sethook would lift the instruction budget.
  env.os = setmetatable({
    exit = function()
      error("os.exit is not available in a Reloadfile (raise an error to reject a " ..
        "configuration: error(\"why\"))", 2)
    end,
  }, { __index = os })
  env.debug = setmetatable({
    sethook = function()
      error("debug.sethook is not available in a Reloadfile", 2)
    end,
  }, { __index = debug })
  env._G = env
  setmetatable(env, { __index = _G })

  local function located(msg, line)
    return ("%s:%d: %s"):format(short, line, msg)
  end

  function env.service(name)
    local line = caller_line(2)
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
      local svc = normalize_service(def, name, line, lines, ctx)
      config.services[#config.services + 1] = svc
      config.by_name[name] = svc
      return svc
    end
  end

  function env.ignore(list)
    local line = caller_line(2)
    local ok, res = pcall(schema.ignore_list, "ignore", list)
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
  env.steps = schema.steps
  --- replace { ... }: given to a recipe, replaces its value instead of merging with it.
  env.replace = schema.replace

  -- require: project and user recipe folders first, then LuaRocks trees and built-ins.
  local search = table.concat(M.search_path(root), ";")
  local fresh = {}
  function env.require(modname)
    if fresh[modname] ~= nil then
      return fresh[modname]
    end
    if type(modname) ~= "string" then
      error(("require: module name must be a string, not %s"):format(type(modname)), 2)
    end
    local path = package.searchpath(modname, search)
    if not path or path:sub(1, #M.builtin_dir + 1) == M.builtin_dir .. "/" then
      -- reload's own modules and C modules: shared with the engine, loaded once.
      local ok, res = pcall(require, modname)
      if not ok then
        error(type(res) == "table" and res or tostring(res):gsub("^[^\n]-%.lua:%d+: ", ""), 2)
      end
      return res
    end
    local allowed, refused = trust.check(path)
    if not allowed then
      error(refused, 2)
    end
    config.modules[#config.modules + 1] = path
    local name = display_name(root, path)
    user_files["@" .. name] = true
    local source = read_file(path)
    if not source then
      error(("cannot read %s"):format(name), 2)
    end
    local chunk, err = load(source:gsub("^#[^\n]*", "--"), "@" .. name, "t", env)
    if not chunk then
      error(err, 0)
    end
    -- Loaded fresh on every load of the Reloadfile: an edit of the module must be seen.
    local res = chunk(modname, path)
    if res == nil then
      res = true
    end
    fresh[modname] = res
    return res
  end

  local chunk, err = load(text:gsub("^#[^\n]*", "--"), "@" .. short, "t", env)
  if not chunk then
    -- "Reloadfile.lua:3: '}' expected near 'x'" already has file:line.
    return nil, err
  end

  -- The instruction budget: a count hook on this thread and on every coroutine the
  -- Reloadfile makes (the debug library keeps a hook per thread). Once spent, the hook runs at
  -- every instruction and raises whenever the user's code runs, so that a pcall in the
  -- Reloadfile cannot swallow it; reload's own code (the error handler) goes on. Once the load
  -- is over, the hook does nothing.
  local every = 10000
  local spent, over, loading = 0, false, true
  local old_hook = table.pack(debug.gethook())
  local function hook()
    if not loading then
      return
    end
    if over then
      local info = debug.getinfo(2, "S")
      if info and user_files[info.source] then
        error({ budget = true, at = { user_frame(2) } }, 0)
      end
      return
    end
    spent = spent + every
    if spent > M.budget then
      over = true
      debug.sethook(hook, "", 1)
      -- Where it ran (in this thread: a coroutine's own stack is gone once the error is out).
      error({ budget = true, at = { user_frame(2) } }, 0)
    end
  end
  debug.sethook(hook, "", every)
  local co = coroutine
  env.coroutine = setmetatable({
    create = function(f)
      local thread = co.create(f)
      debug.sethook(thread, hook, "", over and 1 or every)
      return thread
    end,
  }, { __index = co })
  env.coroutine.wrap = function(f)
    local thread = env.coroutine.create(f)
    return function(...)
      local res = table.pack(co.resume(thread, ...))
      if not res[1] then
        co.close(thread)
        error(res[2], 0)
      end
      return table.unpack(res, 2, res.n)
    end
  end

  local ok, res = xpcall(chunk, function(e)
    local out
    if type(e) == "table" and e.dsl then
      out = e
    elseif over then
      local where, line = user_frame(2)
      if type(e) == "table" and e.budget and e.at[2] > 0 then
        where, line = e.at[1], e.at[2]
      end
      out = { text = ("%s:%d: the Reloadfile ran more than %d Lua instructions while " ..
        "loading (an endless loop?) and was stopped"):format(where, line, M.budget) }
    else
      local msg = tostring(type(e) == "table" and (e.message or e[1]) or e)
      local src, rest = msg:match("^([^\n]-):%d+: (.*)$")
      if src and user_files["@" .. src] then
        out = { text = msg } -- already at a user file's line
      else
        local where, line = user_frame(2)
        if src then
          -- Raised inside reload's own code (a recipe, say): the user's line, then where.
          msg = ("%s (in %s)"):format(rest, src:gsub("^.*/lua/", ""))
        end
        out = { text = ("%s:%d: %s"):format(where, line, msg) }
      end
    end
    return out
  end)
  loading = false
  if old_hook[1] then
    debug.sethook(old_hook[1], old_hook[2], old_hook[3])
  else
    debug.sethook()
  end
  if not ok then
    if res.dsl then
      return nil, located(res.dsl, res.line or 0)
    end
    return nil, res.text
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
  -- One terminal: one service at most reads it.
  local reader
  for _, svc in ipairs(config.services) do
    if svc.stdin then
      if reader then
        return nil, located(("service \"%s\": 'stdin' is already given to service \"%s\"; " ..
          "one service at most reads the terminal"):format(svc.name, reader.name),
          key_line(lines, svc.line, "stdin"))
      end
      reader = svc
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

--- A configuration built from `reload run` options instead of a file, checked by the same
--- schema as a Reloadfile.
---@param root string
---@param svc table raw service definition
---@param ignore string[]
---@return reload.Config|nil, string|nil
function M.from_table(root, svc, ignore)
  local ok, res = pcall(normalize_service, svc, "main", 0, {}, { root = root })
  local list = require("reload.detect").ignores(root)
  local list_ok, given = pcall(schema.ignore_list, "ignore", ignore or {})
  if list_ok then
    table.move(given, 1, #given, #list + 1, list)
  end
  if not ok or not list_ok then
    local e = ok and given or res
    return nil, type(e) == "table" and e.dsl or tostring(e)
  end
  return {
    file = nil,
    root = root,
    services = { res },
    by_name = { main = res },
    ignore = list,
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
