--- Recipe for Go services: `go build` into tmp/, run the binary, and optionally run it under
--- Delve (headless, --continue, multi-client), the case reload was made for: the whole tree,
--- dlv and the program it started, is stopped before each restart, so both ports are free.
---
---   local go = require("reload.recipes.go")
---   service "api" (go.service { name = "api", pkg = "./cmd/api",
---                               debug = flag("debug") and { listen = "127.0.0.1:2345" } })
local recipe = require("reload.recipe")

local M = {}

--- What a Go service watches and ignores by default (tests only with tests = true).
M.watch = { "**/*.go", "go.mod", "go.sum" }
M.ignore = { "tmp/", "vendor/", "*_test.go" }

---@class reload.recipes.go.DlvOptions
---@field listen? string Delve's address (default 127.0.0.1:2345)
---@field continue? boolean start the program at once (default true)

--- `dlv exec --headless --continue --accept-multiclient --listen ADDR --api-version 2 BIN --
--- ARGS` for a command (a binary path, or an argv table).
---@param cmd string|string[]
---@param opts? reload.recipes.go.DlvOptions
---@return string[]
function M.dlv(cmd, opts)
  opts = opts or {}
  local argv = recipe.argv(cmd)
  local out = { "dlv", "exec", "--headless" }
  if opts.continue ~= false then
    out[#out + 1] = "--continue"
  end
  for _, a in ipairs({ "--accept-multiclient", "--listen", opts.listen or "127.0.0.1:2345",
    "--api-version", "2", argv[1] }) do
    out[#out + 1] = a
  end
  if #argv > 1 then
    out[#out + 1] = "--"
    for i = 2, #argv do
      out[#out + 1] = argv[i]
    end
  end
  return out
end

--- A wrapper (command -> command) that runs the command under Delve and says how to attach.
---@param opts? reload.recipes.go.DlvOptions
---@return fun(cmd: string[]): string[]
function M.debugger(opts)
  opts = opts or {}
  local listen = opts.listen or "127.0.0.1:2345"
  local host, port = listen:match("^(.*):(%d+)$")
  local hint = ("Delve listens on %s: attach with `dlv connect %s`, or from an editor with " ..
    '{ "type": "go", "request": "attach", "mode": "remote", "host": "%s", "port": %s }')
    :format(listen, listen, host ~= "" and host or "127.0.0.1", port)
  return recipe.wrapper(function(argv)
    return M.dlv(argv, opts)
  end, hint, "Delve listens on " .. listen)
end

---@class reload.recipes.go.Options
---@field name? string binary name (default "app"): built to tmp/NAME
---@field pkg? string package to build (default ".")
---@field args? string[] arguments of the program
---@field tests? boolean also rebuild on *_test.go changes
---@field debug? reload.recipes.go.DlvOptions|boolean run under Delve

--- A Go service: build, run, watch and ignore sets; any service key overrides.
---@param opts? reload.recipes.go.Options|table
---@return table service definition
function M.service(opts)
  opts = opts or {}
  local name = opts.name or "app"
  local bin = "tmp/" .. name
  local build = { "go", "build" }
  if opts.debug then
    -- Optimisations off, so that Delve shows every variable and line.
    build[#build + 1] = "-gcflags=all=-N -l"
  end
  for _, a in ipairs({ "-o", bin, opts.pkg or "." }) do
    build[#build + 1] = a
  end
  local run = { bin }
  for _, a in ipairs(opts.args or {}) do
    run[#run + 1] = a
  end
  local ignore = {}
  for _, p in ipairs(M.ignore) do
    if not (opts.tests and p == "*_test.go") then
      ignore[#ignore + 1] = p
    end
  end
  local defaults = { watch = M.watch, ignore = ignore, build = build, run = run }
  if opts.debug then
    local dopts = type(opts.debug) == "table" and opts.debug or {}
    defaults.wrap = M.debugger(dopts)
    if not opts.ready then
      defaults.ready = { port = recipe.port_of(dopts.listen or "127.0.0.1:2345") }
    end
  end
  return recipe.merge("recipes.go", defaults, opts,
    { name = true, pkg = true, args = true, tests = true, debug = true })
end

--- The Reloadfile `reload init go` writes, for the project reload.detect found (one service per
--- main package: the root, cmd/*).
---@param project? { services: { name: string, pkg: string }[], module?: string }
---@return string
function M.template(project)
  project = project or { services = { { name = "app", pkg = "." } } }
  local out = {
    "-- Reloadfile.lua for " .. (project.module and ("the Go module " .. project.module) or
      "a Go service") .. ". `reload` runs it; `reload --debug` runs it under Delve.",
    'local go = require("reload.recipes.go")',
    'local port = os.getenv("PORT") or "8080"',
  }
  for i, svc in ipairs(project.services) do
    out[#out + 1] = ""
    out[#out + 1] = ("service %q (go.service {"):format(svc.name)
    out[#out + 1] = ("  name  = %q,"):format(svc.name)
    out[#out + 1] = ("  pkg   = %q,"):format(svc.pkg)
    if i == 1 then
      out[#out + 1] = "  env   = { PORT = port },"
      out[#out + 1] = "  -- ready = { port = tonumber(port) },   -- if it listens on $PORT"
    end
    out[#out + 1] = ('  debug = flag("debug") and { listen = "127.0.0.1:%d" } or nil,')
      :format(2345 + i - 1)
    out[#out + 1] = "})"
  end
  return table.concat(out, "\n") .. "\n"
end

return M
