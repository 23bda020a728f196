--- Signal names: "TERM", "SIGTERM", "term" and 15 all mean SIGTERM.
---
--- The names and numbers are the core's (core.signals, built from <signal.h> on this system,
--- real-time signals named as `kill -l` names them): what passes here is what core.spawn and
--- Process:stop accept, so a stop signal that validates cannot fail at start.
local M = {}

local core = require("reload.core")

--- name ("TERM", "RTMIN+1") -> number
---@type table<string, integer>
M.numbers = {}
--- number -> name
---@type table<integer, string>
M.names = {}
for name, n in pairs(core.signals) do
  M.numbers[name] = n
  M.names[n] = name
end

--- The canonical name ("TERM") of a signal given by name or number, or nil if unknown.
---@param sig string|integer
---@return string|nil
function M.normalize(sig)
  if math.type(sig) == "integer" then
    return M.names[sig]
  end
  if type(sig) ~= "string" then
    return nil
  end
  local name = sig:upper():gsub("^SIG", "")
  if M.numbers[name] then
    return name
  end
  local n = math.tointeger(tonumber(sig))
  return n and M.names[n] or nil
end

--- "SIGTERM" for 15.
---@param n integer
---@return string
function M.describe(n)
  return M.names[n] and ("SIG" .. M.names[n]) or ("signal " .. tostring(n))
end

return M
