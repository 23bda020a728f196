--- Recipe for Node.js: `node FILE` or `npm run SCRIPT`, with --inspect on demand.
---
---   local node = require("reload.recipes.node")
---   service "web" (node.app { main = "server.js", inspect = flag("debug") and "127.0.0.1:9229" })
local recipe = require("reload.recipe")

local M = {}

M.watch = { "**/*.js", "**/*.mjs", "**/*.cjs", "**/*.ts", "**/*.json" }
M.ignore = { "node_modules/", "dist/", "build/", "coverage/", ".next/", "package-lock.json" }

--- Inserts --inspect=ADDR after `node` (or passes it through NODE_OPTIONS for npm).
---@param cmd string|string[]
---@param addr? string default 127.0.0.1:9229
---@return string[]
function M.inspect(cmd, addr)
  local argv = recipe.argv(cmd)
  addr = addr or "127.0.0.1:9229"
  if argv[1] == "node" or argv[1]:match("/node$") then
    table.insert(argv, 2, "--inspect=" .. addr)
    return argv
  end
  -- npm, npx, yarn...: node reads NODE_OPTIONS.
  local out = { "env", "NODE_OPTIONS=--inspect=" .. addr }
  for _, a in ipairs(argv) do
    out[#out + 1] = a
  end
  return out
end

---@class reload.recipes.node.Options
---@field main? string the file run with node (default "index.js")
---@field script? string an npm script instead (npm run SCRIPT)
---@field inspect? string|boolean run with --inspect (address, or true for 127.0.0.1:9229)

---@param opts? reload.recipes.node.Options|table
---@return table service definition
function M.app(opts)
  opts = opts or {}
  local run = opts.script and { "npm", "run", opts.script } or { "node", opts.main or "index.js" }
  local defaults = { watch = M.watch, ignore = M.ignore, run = run }
  if opts.inspect then
    local addr = type(opts.inspect) == "string" and opts.inspect or "127.0.0.1:9229"
    defaults.wrap = recipe.wrapper(function(argv)
      return M.inspect(argv, addr)
    end, ("the inspector listens on %s: open chrome://inspect or attach your editor"):format(addr),
      "the inspector listens on " .. addr)
  end
  return recipe.merge("recipes.node", defaults, opts,
    { main = true, script = true, inspect = true })
end

function M.template()
  return [[
-- Reloadfile.lua for a Node.js app. `reload --debug` runs it with --inspect.
local node = require("reload.recipes.node")

service "app" (node.app {
  main    = "index.js",                       -- or script = "dev" for npm run dev
  env     = { PORT = "3000" },
  inspect = flag("debug") and "127.0.0.1:9229" or nil,
})
]]
end

return M
