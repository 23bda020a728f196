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

--- The Reloadfile `reload init node` writes, for the package reload.detect read.
---@param project? { name?: string, main?: string, script?: string, why?: string }
---@return string
function M.template(project)
  project = project or { main = "index.js" }
  local entry = project.script and ("  script  = %q,"):format(project.script)
    or ("  main    = %q,"):format(project.main)
  return ([[
-- Reloadfile.lua for a Node.js app%s. `reload --debug` runs it with --inspect.
local node = require("reload.recipes.node")
local port = os.getenv("PORT") or "3000"

service %q (node.app {
%s
  env     = { PORT = port },
  -- ready = { port = tonumber(port) },   -- if it listens on $PORT
  inspect = flag("debug") and "127.0.0.1:9229" or nil,
})
]]):format(project.why and (" (package.json " .. project.why .. ")") or "",
    project.name or "app", entry)
end

return M
