--- The configuration schema: every key of a service, its default, how a recipe merges it, its
--- check and its doc line, in one place. The DSL (`reload.dsl`), `reload check`, `reload run`,
--- the recipes (`reload.recipe`), the CLI's help and the README's table all read it.
---
--- Theory of operation. A check takes the value the user wrote and returns the normalized one,
--- or raises `{ dsl = message }` (no location: the DSL adds FILE:LINE). Checks validate with
--- the real core wherever the core will use the value later: globs and ignore patterns are
--- compiled by core.glob/core.ignore, signals looked up in core.signals. That is the promise
--- of this module: a configuration that passes here cannot raise when reload runs it, so
--- `reload check`, which runs exactly this, says what `reload` will do.
local M = {}

local core = require("reload.core")
local signals = require("reload.signals")

---@class reload.SchemaContext
---@field root? string project root: a relative `cwd` must be a directory under it

local function fail(msg)
  error({ dsl = msg }, 0)
end
M.fail = fail

local function type_name(v)
  return math.type(v) or type(v)
end

local function quote(v)
  return type(v) == "string" and ("'" .. v .. "'") or tostring(v)
end

-- Values ----------------------------------------------------------------------------------

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
M.string_list = string_list

--- The core's message without its "bad glob: " prefix.
local function core_message(err)
  return (tostring(err):gsub("^bad glob: ", ""))
end

--- Globs as the watcher's router compiles them (core.glob of the whole list: braces, and a
--- later "!pattern" excludes again). Each entry is compiled alone first so that the error names
--- it; an exclusion must follow something it excludes from.
local function glob_list(key, v)
  local list = string_list(key, v)
  local included = false
  for i, p in ipairs(list) do
    local ok, err = pcall(core.glob, { p })
    if not ok then
      fail(("'%s'[%d]: %s"):format(key, i, core_message(err)))
    end
    if p:sub(1, 1) == "!" then
      if not included then
        fail(("'%s'[%d]: '%s' only excludes, and nothing before it includes: the last " ..
          "matching pattern decides, so put it after the patterns it excludes from (write " ..
          "'\\!' for a literal '!')"):format(key, i, p))
      end
    else
      included = true
    end
  end
  assert(core.glob(list))
  return list
end

--- Ignore patterns (gitignore syntax) as core.ignore and core.watch compile them.
local function ignore_list(key, v)
  local list = string_list(key, v)
  for i, p in ipairs(list) do
    local ok, err = pcall(core.ignore, { patterns = { p }, defaults = false, gitignore = false })
    if not ok then
      fail(("'%s'[%d]: %s"):format(key, i, core_message(err)))
    end
  end
  return list
end
M.ignore_list = ignore_list

local STEPS_MARK = setmetatable({}, { __mode = "k" })

--- steps { a, b }: marks a table as a list of steps (a plain table of strings is one argv).
function M.steps(list)
  if type(list) == "table" then
    STEPS_MARK[list] = true
  end
  return list
end

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
    if argv[1]:find("%s") or argv[1] == "" then
      fail(("'%s': the program name '%s' is empty or contains a space; an argv table is one " ..
        "command without a shell. For several shell commands in order write steps { ... }")
        :format(key, argv[1]))
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

--- What a `run` function (or a wrapper) returned, as argv: a non-empty shell string becomes
--- /bin/sh -c STRING, an argv table is checked like a `run` argv. Never raises.
---@param v any
---@return string[]|nil argv
---@return string|nil why "returned nil; ..." when it is not a command
function M.command(v)
  if v == nil then
    return nil, "returned nil; it must return a command (a shell string or an argv table)"
  end
  local ok, res = pcall(step, "run", v)
  if not ok or res.kind == "lua" then
    local detail = ""
    if type(v) == "table" and not ok then
      detail = ": " .. tostring(type(res) == "table" and res.dsl or res)
    end
    return nil, ("returned %s; it must return a command (a shell string or an argv table)%s")
      :format(type(v) == "table" and "an invalid argv table" or type(v), detail)
  end
  if res.kind == "shell" then
    return { "/bin/sh", "-c", res.cmd }
  end
  return res.cmd
end

--- A number in [min, max]: the upper bounds keep every duration a timer or the core can hold
--- (the core's grace is an int of milliseconds).
local function number_key(key, v, min, max)
  if type(v) ~= "number" or v ~= v or v < min or v > max then
    fail(("'%s' must be a number from %s to %s, not %s"):format(key, tostring(min),
      tostring(max), quote(v)))
  end
  return v
end

local DAY = 86400

--- A key whose value is true or false, default false.
---@param name string
---@param doc string
---@return reload.SchemaKey
local function flag_key(name, doc, default)
  default = default or false
  return {
    name = name, type = "boolean",
    merge = "replace",
    doc = doc,
    default_doc = tostring(default),
    default = function() return default end,
    check = function(key, v)
      if type(v) ~= "boolean" then
        fail(("'%s' must be true or false"):format(key))
      end
      return v
    end,
  }
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

--- Checks a Lua pattern the way string.find reads it (lstrlib.c's classEnd, do_match and the
--- capture checks), so that a pattern that passes cannot raise whatever text it meets. Returns
--- nil, or the message string.find would raise.
---@param p string
---@return string|nil
function M.lua_pattern_error(p)
  local n = #p
  local open = {} -- capture indexes still open, innermost last
  local closed = {} -- capture index -> true once closed
  local captures, depth = 0, 0
  local i = p:sub(1, 1) == "^" and 2 or 1
  local function class_end(j)
    local c = p:sub(j, j)
    j = j + 1
    if c == "%" then
      if j > n then
        return nil, "malformed pattern (ends with '%')"
      end
      return j + 1
    elseif c == "[" then
      if p:sub(j, j) == "^" then
        j = j + 1
      end
      repeat
        if j > n then
          return nil, "malformed pattern (missing ']')"
        end
        local cc = p:sub(j, j)
        j = j + 1
        if cc == "%" and j <= n then
          j = j + 1
        end
      until p:sub(j, j) == "]"
      return j + 1
    end
    return j
  end
  while i <= n do
    local c = p:sub(i, i)
    local nxt = p:sub(i + 1, i + 1)
    if c == "(" then
      if captures >= 32 then
        return "too many captures"
      end
      captures = captures + 1
      depth = depth + 1
      if nxt == ")" then
        closed[captures] = true
        i = i + 2
      else
        open[#open + 1] = captures
        i = i + 1
      end
    elseif c == ")" then
      if #open == 0 then
        return "invalid pattern capture"
      end
      closed[table.remove(open)] = true
      depth = depth + 1
      i = i + 1
    elseif c == "$" and i == n then
      i = i + 1
    elseif c == "%" and nxt == "b" then
      if i + 3 > n then
        return "malformed pattern (missing arguments to '%b')"
      end
      i = i + 4
    elseif c == "%" and nxt == "f" then
      if p:sub(i + 2, i + 2) ~= "[" then
        return "missing '[' after '%f' in pattern"
      end
      local e, err = class_end(i + 2)
      if not e then
        return err
      end
      i = e
    elseif c == "%" and nxt:match("^%d$") then
      local l = tonumber(nxt)
      if l == 0 or l > captures or not closed[l] then
        return ("invalid capture index %%%d"):format(l)
      end
      i = i + 2
    else
      local e, err = class_end(i)
      if not e then
        return err
      end
      if p:sub(e, e):match("^[%?%+%*%-]$") then
        depth = depth + 1
        e = e + 1
      end
      i = e
    end
    -- Each capture and each quantified item is one level of the matcher's recursion, which
    -- stops at 200 ("pattern too complex").
    if depth >= 190 then
      return "pattern too complex"
    end
  end
  if #open > 0 then
    return "unfinished capture"
  end
  return nil
end

-- Keys ------------------------------------------------------------------------------------

local RESTART = { never = true, ["on-failure"] = true, always = true }

---@class reload.SchemaKey
---@field name string
---@field type string what a value may be, in words (README table)
---@field doc string what it means (README table, help)
---@field default_doc string the default, as the README table says it
---@field default fun(): any the normalized default (nil: absent)
---@field merge "replace"|"append"|"map" how a recipe's value and the user's combine
---@field check fun(key: string, v: any, ctx: reload.SchemaContext): any

--- Every key of a service, in the order the docs list them.
---@type reload.SchemaKey[]
M.keys = {
  {
    name = "watch", type = "glob or list of globs",
    merge = "append",
    doc = "a change to a matching file rebuilds and restarts (`!glob` excludes again)",
    default_doc = "every file not ignored",
    default = function() return { "**" } end,
    check = glob_list,
  },
  {
    name = "ignore", type = "glob or list of globs",
    merge = "append",
    doc = "paths this service does not react to",
    default_doc = "none",
    default = function() return {} end,
    check = ignore_list,
  },
  {
    name = "build", type = "step or list of steps",
    merge = "replace",
    doc = "run in order before each start, stopping at the first failure",
    default_doc = "none",
    default = function() return {} end,
    check = step_list,
  },
  {
    name = "run", type = "step",
    merge = "replace",
    doc = "the command: a shell string, an argv table, or a function returning one",
    default_doc = "—",
    default = function() return nil end,
    check = step,
  },
  {
    name = "wrap", type = "function or list of functions",
    merge = "replace",
    doc = "from a command (argv) to a command: debuggers, tracers",
    default_doc = "none",
    default = function() return {} end,
    check = function(key, v)
      if type(v) == "function" then
        return { v }
      end
      if type(v) ~= "table" then
        fail(("'%s' must be a function (command -> command) or a list of them"):format(key))
      end
      local out = {}
      for i, f in ipairs(v) do
        if type(f) ~= "function" then
          fail(("'%s'[%d] must be a function, not %s"):format(key, i, type_name(f)))
        end
        out[i] = f
      end
      return out
    end,
  },
  {
    name = "env", type = "table of NAME = string",
    merge = "map",
    doc = "variables added to reload's environment",
    default_doc = "none",
    default = function() return {} end,
    check = function(key, v)
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
    end,
  },
  {
    name = "cwd", type = "path",
    merge = "replace",
    doc = "working directory of build and run, relative to the project root; must exist",
    default_doc = "the root",
    default = function() return nil end,
    check = function(key, v, ctx)
      if type(v) ~= "string" or v == "" then
        fail(("'%s' must be a directory name, not %s"):format(key, quote(v)))
      end
      if ctx and ctx.root then
        local path = v:sub(1, 1) == "/" and v or (ctx.root .. "/" .. v)
        local st = require("luv").fs_stat(path)
        if not st or st.type ~= "directory" then
          fail(("'%s': %s is not a directory%s"):format(key, path,
            st and "" or " (it does not exist)"))
        end
      end
      return v
    end,
  },
  {
    name = "stop", type = "signal or `{ signal, grace, to }`",
    merge = "replace",
    doc = "polite signal (any name of `kill -l`), then SIGKILL of every descendant after " ..
      "`grace` seconds; `to = \"main\"` sends the signal to the main process alone (a " ..
      "master that stops its own workers, as gunicorn's), the rest once it exits",
    default_doc = "TERM, 3 s",
    default = function() return { signal = "TERM", grace = 3 } end,
    check = function(key, v)
      if type(v) == "string" or math.type(v) == "integer" then
        v = { signal = v }
      end
      if type(v) ~= "table" then
        fail(("'%s' must be a table { signal = \"TERM\", grace = seconds }"):format(key))
      end
      check_table_keys(key, v, { signal = true, grace = true, to = true })
      local out = M.by_name.stop.default()
      if v.signal ~= nil then
        local name = signals.normalize(v.signal)
        if not name then
          fail(("'%s.signal': unknown signal %s (this system's: kill -l)"):format(key,
            quote(v.signal)))
        end
        out.signal = name
      end
      if v.grace ~= nil then
        out.grace = number_key(key .. ".grace", v.grace, 0, DAY)
      end
      if v.to ~= nil and v.to ~= "tree" then
        if v.to ~= "main" then
          fail(("'%s.to' must be \"tree\" (every process, the default) or \"main\" (the main " ..
            "process, then what is left once it exits), not %s"):format(key, quote(v.to)))
        end
        out.to = "main"
      end
      return out
    end,
  },
  {
    name = "ready", type = "port, text or table",
    merge = "replace",
    doc = "up once it listens on `port` (on `host`, default 127.0.0.1), or prints `pattern` " ..
      "(plain text) or matches `lua_pattern`; `timeout` (s) only warns",
    default_doc = "started = up",
    default = function() return nil end,
    check = function(key, v)
      if math.type(v) == "integer" then
        v = { port = v }
      elseif type(v) == "string" then
        v = { pattern = v }
      end
      if type(v) ~= "table" then
        fail(("'%s' must be a port number, a text, or { port =, host =, pattern =, " ..
          "lua_pattern =, timeout = }"):format(key))
      end
      check_table_keys(key, v, { port = true, host = true, pattern = true, lua_pattern = true,
        timeout = true })
      if v.port == nil and v.pattern == nil and v.lua_pattern == nil then
        fail(("'%s' needs a port, a pattern (plain text) or a lua_pattern"):format(key))
      end
      if v.pattern ~= nil and v.lua_pattern ~= nil then
        fail(("'%s' takes pattern (plain text) or lua_pattern, not both"):format(key))
      end
      if v.port ~= nil and (math.type(v.port) ~= "integer" or v.port < 1 or v.port > 65535) then
        fail(("'%s.port' must be a port number (1-65535), not %s"):format(key, quote(v.port)))
      end
      if v.host ~= nil and (v.port == nil or type(v.host) ~= "string" or
          not require("reload.ports").address(v.host)) then
        fail(("'%s.host' must be the IP address the service listens on, beside a port (" ..
          "\"127.0.0.1\", \"::1\", \"0.0.0.0\"), not %s"):format(key, quote(v.host)))
      end
      local text, plain = v.pattern, true
      if v.lua_pattern ~= nil then
        text, plain = v.lua_pattern, false
      end
      if text ~= nil then
        local which = plain and "pattern" or "lua_pattern"
        if type(text) ~= "string" or text == "" then
          fail(("'%s.%s' must be a non-empty string"):format(key, which))
        end
        local err = not plain and M.lua_pattern_error(text)
        if err then
          fail(("'%s.lua_pattern' is not a valid Lua pattern: %s (for plain text write " ..
            "pattern = ...)"):format(key, err))
        end
      end
      return {
        port = v.port,
        host = v.host,
        pattern = text,
        plain = plain,
        timeout = v.timeout ~= nil and number_key(key .. ".timeout", v.timeout, 0, DAY) or 30,
      }
    end,
  },
  {
    name = "restart", type = "string",
    merge = "replace",
    doc = "`\"never\"`, `\"on-failure\"` or `\"always\"`, with exponential backoff",
    default_doc = "`\"never\"`",
    default = function() return "never" end,
    check = function(key, v)
      if not RESTART[v] then
        fail(("'%s' must be \"never\", \"on-failure\" or \"always\", not %s"):format(key,
          type(v) == "string" and ('"' .. v .. '"') or tostring(v)))
      end
      return v
    end,
  },
  {
    name = "after", type = "name or list of names",
    merge = "replace",
    doc = "services that must be up first",
    default_doc = "none",
    default = function() return {} end,
    check = string_list,
  },
  {
    name = "debounce", type = "number (ms)",
    merge = "replace",
    doc = "quiet period in ms once a save is complete (docs/watching.md)",
    default_doc = "none for one file, 30 ms for several",
    default = function() return nil end,
    check = function(key, v)
      return number_key(key, v, 0, DAY * 1000)
    end,
  },
  flag_key("task", "one-shot: up once it exited 0"),
  flag_key("stdin", "the service reads reload's terminal, in its foreground, and writes to it " ..
    "unprefixed (turns the keys off; one service at most)"),
  flag_key("tty", "the command's output goes through a pseudo-terminal of its own (programs " ..
    "line-buffer and keep their colours); false: pipes", true),
  {
    name = "proxy", type = "table",
    merge = "replace",
    doc = "`{ listen =, to =, css =, hold =, queue =, live = }`: a dev proxy on `listen` in " ..
      "front of the server on `to` that holds requests while it restarts and reloads browsers " ..
      "once it is back (docs/proxy.md); implies `ready = { port = to }`",
    default_doc = "none",
    default = function() return nil end,
    check = function(key, v)
      return require("reload.proxy").validate(key, v)
    end,
  },
}

---@type table<string, reload.SchemaKey>
M.by_name = {}
--- The key names, in order.
---@type string[]
M.names = {}
for _, k in ipairs(M.keys) do
  M.by_name[k.name] = k
  M.names[#M.names + 1] = k.name
end

--- A service with every default filled in.
---@param name string
---@return table
function M.defaults(name)
  local out = { name = name }
  for _, k in ipairs(M.keys) do
    out[k.name] = k.default()
  end
  return out
end

--- Checks one key's value; returns the normalized value or raises { dsl = message }.
---@param key string
---@param value any
---@param ctx? reload.SchemaContext
function M.check(key, value, ctx)
  return M.by_name[key].check(key, value, ctx or {})
end

--- What must hold of a whole service once its keys are checked; raises { dsl = message }.
---@param svc table normalized service
function M.finish(svc)
  if svc.proxy and not svc.ready then
    svc.ready = require("reload.proxy").implied_ready(svc.proxy)
  end
  if not svc.run and #svc.build == 0 then
    fail(("service \"%s\" has neither 'run' nor 'build': nothing to do"):format(svc.name))
  end
end

-- Recipes ---------------------------------------------------------------------------------

local REPLACE_MARK = setmetatable({}, { __mode = "k" })

--- replace { ... }: a value given to a recipe replaces the recipe's instead of merging with it
--- (for `watch`, `ignore`, `env`).
---@generic T
---@param v T
---@return T
function M.replace(v)
  if type(v) == "table" then
    REPLACE_MARK[v] = true
  end
  return v
end

local function as_list(v)
  if type(v) == "table" then
    return v
  end
  return { v }
end

--- The recipe's value of a key and the user's, combined as the key's `merge` says: "append"
--- lists (the recipe's first, duplicates dropped), "map" tables key by key (the user's value
--- wins), "replace" takes the user's. A value marked with replace{} always replaces.
---@param key string
---@param base any the recipe's value (may be nil)
---@param over any the user's value
---@return any
function M.merge_value(key, base, over)
  local how = M.by_name[key].merge
  if base == nil or REPLACE_MARK[over] or how == "replace" or type(over) ~= "table" and
    how == "map" then
    return over
  end
  if how == "append" then
    local out, seen = {}, {}
    for _, list in ipairs({ as_list(base), as_list(over) }) do
      for _, p in ipairs(list) do
        if not seen[p] then
          seen[p] = true
          out[#out + 1] = p
        end
      end
    end
    return out
  end
  if type(base) ~= "table" then
    return over
  end
  local out = {}
  for k, v in pairs(base) do
    out[k] = v
  end
  for k, v in pairs(over) do
    out[k] = v
  end
  return out
end

-- Docs ------------------------------------------------------------------------------------

--- The README's table of service keys, generated from the schema.
---@return string
function M.markdown_table()
  local rows = { "| key | type | meaning | default |", "|---|---|---|---|" }
  for _, k in ipairs(M.keys) do
    rows[#rows + 1] = ("| `%s` | %s | %s | %s |"):format(k.name, k.type, k.doc, k.default_doc)
  end
  return table.concat(rows, "\n") .. "\n"
end

return M
