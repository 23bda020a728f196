--- Recipes for Node.js: `node FILE` or `npm run SCRIPT` (node.app), an Express server
--- (node.express), Vite's dev server (node.vite), and the inspector on demand.
---
---   local node = require("reload.recipes.node")
---   service "web" (node.app { main = "server.js", inspect = flag("debug") and "127.0.0.1:9229" })
---   service "api" (node.express { script = "start", port = 3000 })
---   service "front" (node.vite { port = 5173 })
local recipe = require("reload.recipe")

local M = {}

M.watch = { "**/*.js", "**/*.mjs", "**/*.cjs", "**/*.ts", "**/*.json" }
--- Dependencies, build output and what dev servers generate at start: Vite 4-5's bundled config
--- (vite.config.js.timestamp-<ms>-<hash>.mjs, written beside the config and removed at every
--- start: watching it restarted Vite forever), SvelteKit's .svelte-kit/, Vite's cache.
M.ignore = { "node_modules/", "dist/", "build/", "coverage/", ".next/", "package-lock.json",
  "*.timestamp-*.mjs", ".svelte-kit/", ".vite/" }

--- What Vite reads once at start; it serves every other change itself (HMR).
M.vite_watch = { "vite.config.*", "package.json", "package-lock.json", ".env", ".env.*",
  "postcss.config.*", "tailwind.config.*", "svelte.config.*", "tsconfig.json" }

--- The command with the inspector on ADDR: `node --inspect=ADDR ...`; for npm,
--- `npm --node-options=--inspect=ADDR ...`, which npm passes to the scripts it runs and not to
--- itself (through NODE_OPTIONS npm would take the port, and the app would say "address already
--- in use"); any other command gets NODE_OPTIONS (yarn, pnpm and npx are node programs too: the
--- first node process to start takes the port).
---@param cmd string|string[]
---@param addr? string default 127.0.0.1:9229
---@param brk? boolean --inspect-brk: stop at the first line until a debugger attaches
---@return string[]
function M.inspect(cmd, addr, brk)
  local argv = recipe.argv(cmd)
  local flag = ("--inspect%s=%s"):format(brk and "-brk" or "", addr or "127.0.0.1:9229")
  local prog = argv[1] or ""
  if prog == "node" or prog:match("/node$") then
    table.insert(argv, 2, flag)
    return argv
  end
  if prog == "npm" or prog:match("/npm$") then
    table.insert(argv, 2, "--node-options=" .. flag)
    return argv
  end
  local out = { "env", "NODE_OPTIONS=" .. flag }
  for _, a in ipairs(argv) do
    out[#out + 1] = a
  end
  return out
end

---@class reload.recipes.node.DebugOptions
---@field listen? string the inspector's address (default 127.0.0.1:9229)
---@field brk? boolean wait for the debugger at the first line (--inspect-brk)

--- A wrapper (command -> command) that runs a node command with the inspector and says how to
--- attach: `wrap = node.debugger { listen = "127.0.0.1:9229" }`.
---@param opts? reload.recipes.node.DebugOptions|string options, or the address
---@return fun(cmd: string[]): string[]
function M.debugger(opts)
  if type(opts) ~= "table" then
    opts = { listen = opts }
  end
  local listen = opts.listen or "127.0.0.1:9229"
  local host, port = listen:match("^(.*):(%d+)$")
  local hint = ("the inspector listens on %s: open chrome://inspect, or attach your editor " ..
    'with { "type": "node", "request": "attach", "address": "%s", "port": %s, "restart": true }')
    :format(listen, host ~= "" and host or "127.0.0.1", port)
  return recipe.wrapper(function(argv)
    return M.inspect(argv, listen, opts.brk)
  end, hint, "the inspector listens on " .. listen)
end

local function with_inspect(defaults, opts)
  if opts.inspect then
    defaults.wrap = M.debugger(type(opts.inspect) == "string" and opts.inspect or nil)
  end
  return defaults
end

local function port_of(name, opts, default)
  local port = opts.port or default
  local n = math.tointeger(tonumber(port))
  if not n or n < 1 or n > 65535 then
    error(("%s: 'port' must be a port number, not %s"):format(name, tostring(port)), 3)
  end
  return n
end

---@class reload.recipes.node.Options
---@field main? string the file run with node (default "index.js")
---@field script? string an npm script instead (npm run SCRIPT)
---@field inspect? string|boolean run with --inspect (address, or true for 127.0.0.1:9229)

--- A Node.js program: `node MAIN`, or `npm run SCRIPT`.
---@param opts? reload.recipes.node.Options|table
---@return table service definition
function M.app(opts)
  opts = opts or {}
  local run = opts.script and { "npm", "run", opts.script } or { "node", opts.main or "index.js" }
  local defaults = with_inspect({ watch = M.watch, ignore = M.ignore, run = run }, opts)
  return recipe.merge("recipes.node", defaults, opts,
    { main = true, script = true, inspect = true })
end

---@class reload.recipes.node.Express: reload.recipes.node.Options
---@field port? integer PORT for the server (default 3000); up once it listens there

--- An Express (or any node HTTP) server: `npm run SCRIPT` (default "start", as
--- express-generator writes it) or `node MAIN`, with PORT set and up once it listens on it.
--- Express has no reloader of its own; a script that runs one (nodemon, node --watch) would
--- restart it a second time on every save: point `script` at one that runs node alone.
---@param opts? reload.recipes.node.Express|table
---@return table service definition
function M.express(opts)
  opts = opts or {}
  local name = "recipes.node.express"
  local port = port_of(name, opts, 3000)
  local run = opts.main and { "node", opts.main } or { "npm", "run", opts.script or "start" }
  local defaults = with_inspect({ watch = M.watch, ignore = M.ignore, run = run,
    env = { PORT = tostring(port) }, ready = { port = port } }, opts)
  return recipe.merge(name, defaults, opts, { main = true, script = true, inspect = true,
    port = true })
end

---@class reload.recipes.node.Vite
---@field script? string the npm script that runs vite (default "dev")
---@field port? integer default 5173
---@field host? string default 127.0.0.1
---@field inspect? string|boolean run Vite's node process with --inspect

--- Vite's dev server: `npm run dev -- --port P --strictPort --host H --clearScreen false`.
--- Vite serves a change to a source file itself (hot module replacement, no restart: faster than
--- any restart), so reload restarts it only for what Vite reads once at start: its config,
--- package.json and the lockfile, .env files, PostCSS, Tailwind and SvelteKit configs.
--- --strictPort fails on a busy port instead of moving to the next one, where `ready` would
--- never see it; --clearScreen false keeps reload's lines on the terminal.
---@param opts? reload.recipes.node.Vite|table
---@return table service definition
function M.vite(opts)
  opts = opts or {}
  local name = "recipes.node.vite"
  local port = port_of(name, opts, 5173)
  local run = { "npm", "run", opts.script or "dev", "--", "--port", tostring(port),
    "--strictPort", "--host", opts.host or "127.0.0.1", "--clearScreen", "false" }
  local defaults = with_inspect({ watch = M.vite_watch, ignore = M.ignore, run = run,
    ready = { port = port } }, opts)
  return recipe.merge(name, defaults, opts, { script = true, port = true, host = true,
    inspect = true })
end

--- The Reloadfile `reload init node` writes, for the package reload.detect read: Vite's dev
--- server, an Express server, or a node program.
---@param project? { name?: string, main?: string, script?: string, why?: string, kind?: string }
---@return string
function M.template(project)
  project = project or { main = "index.js" }
  local entry = project.script and ("  script  = %q,"):format(project.script)
    or ("  main    = %q,"):format(project.main)
  if project.kind == "vite" then
    return ([[
-- Reloadfile.lua for a Vite app%s: Vite serves source changes itself (HMR); reload restarts
-- it when its config, package.json or .env change. `reload --debug` runs it with --inspect.
local node = require("reload.recipes.node")

service %q (node.vite {
%s
  port    = tonumber(os.getenv("PORT") or "5173"),
  inspect = flag("debug") and "127.0.0.1:9229" or nil,
})
]]):format(project.why and (" (package.json " .. project.why .. ")") or "",
      project.name or "app", entry)
  end
  local fn = project.kind == "express" and "express" or "app"
  return ([[
-- Reloadfile.lua for a Node.js %s%s. `reload --debug` runs it with --inspect.
local node = require("reload.recipes.node")
local port = os.getenv("PORT") or "3000"

service %q (node.%s {
%s
%s  inspect = flag("debug") and "127.0.0.1:9229" or nil,
})
]]):format(fn == "express" and "Express server" or "app",
    project.why and (" (package.json " .. project.why .. ")") or "", project.name or "app", fn,
    entry, fn == "express" and "  port    = tonumber(port),\n" or
    "  env     = { PORT = port },\n  -- ready = { port = tonumber(port) },   -- if it listens " ..
    "on $PORT\n")
end

return M
