--- An external recipe, published as its own rock (see the rockspec beside this folder): a
--- team's standard web service, built with make and started with a port in PORT.
---
---   local webapp = require("teamrecipes.webapp")
---   service "site" (webapp.service { port = 8080 })
local M = {}

---@param opts { port?: integer, target?: string }|table
---@return table service definition
function M.service(opts)
  opts = opts or {}
  local port = opts.port or 8080
  return {
    watch = { "**/*.c", "**/*.h", "Makefile" },
    build = { "make", opts.target or "app" },
    run = "./" .. (opts.target or "app"),
    env = { PORT = tostring(port) },
    ready = { port = port },
    stop = { signal = "TERM", grace = 2 },
  }
end

--- The Reloadfile `reload init teamrecipes.webapp` writes.
function M.template()
  return [[
local webapp = require("teamrecipes.webapp")

service "site" (webapp.service { port = 8080 })
]]
end

return M
