--- What every recipe shares: turning a recipe's defaults and the user's options into one
--- plain service table. A recipe is a module of functions that return plain tables, so any
--- field can be overridden. Lists and maps merge as the schema says (`watch` and `ignore`
--- append to the recipe's, `env` adds to it key by key); every other key replaces the
--- recipe's, and so does any value wrapped in replace { ... }.
local M = {}

local schema = require("reload.schema")

--- Every service key, from the schema.
M.service_keys = {}
for _, name in ipairs(schema.names) do
  M.service_keys[name] = true
end

--- replace { ... }: the value replaces the recipe's instead of merging with it.
M.replace = schema.replace

--- The recipe's defaults with every service key of opts merged over them. Keys that are the
--- recipe's own options (listed in `own`) are dropped; any other key is an error, so a typo
--- in a recipe option is caught like a typo in a service.
---@param recipe string recipe name for messages
---@param defaults table
---@param opts table
---@param own table<string, boolean> the recipe's own option names
---@return table
function M.merge(recipe, defaults, opts, own)
  local out = {}
  for k, v in pairs(defaults) do
    out[k] = v
  end
  for k, v in pairs(opts) do
    if M.service_keys[k] then
      out[k] = schema.merge_value(k, defaults[k], v)
    elseif not own[k] then
      error(("%s: unknown option '%s'"):format(recipe, tostring(k)), 3)
    end
  end
  return out
end

--- argv of a command given as a string (split on spaces: a path and plain words) or a table.
---@param cmd string|string[]
---@return string[]
function M.argv(cmd)
  if type(cmd) == "table" then
    local out = {}
    for i, a in ipairs(cmd) do
      out[i] = a
    end
    return out
  end
  local out = {}
  for word in tostring(cmd):gmatch("%S+") do
    out[#out + 1] = word
  end
  return out
end

--- "host:port" → port number.
---@param addr string
---@return integer|nil
function M.port_of(addr)
  return math.tointeger(tonumber(tostring(addr):match(":(%d+)$")))
end

--- A wrapper (command -> command) that prints a hint the first time it runs and a short line
--- after that.
---@param build fun(argv: string[]): string[]
---@param hint string
---@param short string
---@return fun(cmd: string[]): string[]
function M.wrapper(build, hint, short)
  local said = false
  return function(cmd)
    local log = require("reload.log")
    if not said then
      said = true
      log.info("%s", hint)
    else
      log.info("%s", short)
    end
    return build(M.argv(cmd))
  end
end

return M
