--- Recipes for Go: build into tmp/ and run the binary (go.service), or `go run` (go.run), and
--- either under Delve on demand (headless, --continue, multi-client), the case reload was made
--- for: the whole tree, dlv and the program it started, is stopped before each restart, so both
--- ports are free. Under Delve the stop is SIGKILL: Delve's own TERM handling costs 0.5-0.9 s
--- per restart and gives the program no graceful stop either (docs/recipes.md has the figures).
---
---   local go = require("reload.recipes.go")
---   service "api" (go.service { name = "api", pkg = "./cmd/api",
---                               debug = flag("debug") and { listen = "127.0.0.1:2345" } })
---   service "tool" (go.run { pkg = "./cmd/tool" })
local recipe = require("reload.recipe")

local M = {}

--- What a Go service watches and ignores by default (tests only with tests = true).
M.watch = { "**/*.go", "go.mod", "go.sum" }
M.ignore = { "tmp/", "vendor/", "*_test.go" }

---@class reload.recipes.go.DlvOptions
---@field listen? string Delve's address (default 127.0.0.1:2345)
---@field continue? boolean start the program at once (default true)

--- The Delve command for a command: `dlv exec --headless --continue --accept-multiclient
--- --listen ADDR --api-version 2 BIN -- ARGS` for a binary, and for `go run [FLAGS] PKG ARGS`
--- `dlv debug ... --build-flags=FLAGS PKG -- ARGS` (Delve builds it without optimisations,
--- into __debug_bin* in the working directory: a default ignore).
---@param cmd string|string[] a binary path, or an argv table
---@param opts? reload.recipes.go.DlvOptions
---@return string[]
function M.dlv(cmd, opts)
  opts = opts or {}
  local argv = recipe.argv(cmd)
  local debug = argv[1] == "go" and argv[2] == "run"
  local out = { "dlv", debug and "debug" or "exec", "--headless" }
  if opts.continue ~= false then
    out[#out + 1] = "--continue"
  end
  for _, a in ipairs({ "--accept-multiclient", "--listen", opts.listen or "127.0.0.1:2345",
    "--api-version", "2" }) do
    out[#out + 1] = a
  end
  local first = 2
  if debug then
    local flags = {}
    first = 3
    while argv[first] and argv[first]:sub(1, 1) == "-" do
      flags[#flags + 1] = argv[first]
      first = first + 1
    end
    if #flags > 0 then
      out[#out + 1] = "--build-flags=" .. table.concat(flags, " ")
    end
    out[#out + 1] = argv[first] or "."
    first = first + 1
  else
    out[#out + 1] = argv[1]
  end
  if #argv >= first then
    out[#out + 1] = "--"
    for i = first, #argv do
      out[#out + 1] = argv[i]
    end
  end
  return out
end

--- How a tree under Delve stops: SIGKILL. Measured on the go-dlv example (docs/recipes.md):
--- TERM and INT cost 0.5-0.9 s of Delve's own handling on most restarts, QUIT the whole grace,
--- HUP is fast only while the program does not catch SIGHUP; KILL takes 16-80 ms, and the
--- keeper kills the program Delve started with it (Delve's TERM does not stop it gracefully
--- either).
M.debug_stop = { signal = "KILL" }

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

local function ignores(opts)
  local ignore = {}
  for _, p in ipairs(M.ignore) do
    if not (opts.tests and p == "*_test.go") then
      ignore[#ignore + 1] = p
    end
  end
  return ignore
end

--- Under Delve: the wrapper, readiness on Delve's port unless the user gave one, SIGKILL.
local function debug_fields(defaults, opts)
  if opts.debug then
    local dopts = type(opts.debug) == "table" and opts.debug or {}
    defaults.wrap = M.debugger(dopts)
    defaults.stop = M.debug_stop
    if not opts.ready then
      defaults.ready = { port = recipe.port_of(dopts.listen or "127.0.0.1:2345") }
    end
  end
  return defaults
end

--- A Go service: `go build -o tmp/NAME PKG` while the old binary keeps serving, then
--- tmp/NAME ARGS; under Delve (debug), dlv exec. Any service key overrides.
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
  local defaults = debug_fields({ watch = M.watch, ignore = ignores(opts), build = build,
    run = run }, opts)
  return recipe.merge("recipes.go", defaults, opts,
    { name = true, pkg = true, args = true, tests = true, debug = true })
end

---@class reload.recipes.go.RunOptions
---@field pkg? string the package go run runs (default ".")
---@field args? string[] arguments of the program
---@field flags? string[] build flags of go run (-race, -tags=x)
---@field check? boolean first `go build -o /dev/null PKG`, so that a compile error keeps the
--- old process serving (default true; costs one more link)
---@field tests? boolean also restart on *_test.go changes
---@field debug? reload.recipes.go.DlvOptions|boolean run under Delve (dlv debug)

--- `go run PKG ARGS`, as users run it (go compiles into a temporary directory and runs the
--- program as its child). A check step, `go build -o /dev/null PKG`, comes first: a compile error
--- then keeps the old process serving, as with go.service (compiles are cached; the cost is one
--- more link). Under Delve (debug), `dlv debug` instead, with SIGKILL as the stop.
---@param opts? reload.recipes.go.RunOptions|table
---@return table service definition
function M.run(opts)
  opts = opts or {}
  local pkg = opts.pkg or "."
  local flags = opts.flags or {}
  local run = { "go", "run" }
  for _, list in ipairs({ flags, { pkg }, opts.args or {} }) do
    for _, a in ipairs(list) do
      run[#run + 1] = a
    end
  end
  local defaults = { watch = M.watch, ignore = ignores(opts), run = run }
  if opts.check ~= false then
    local build = { "go", "build" }
    if opts.debug then
      build[#build + 1] = "-gcflags=all=-N -l" -- dlv debug's flags: its compile is then cached
    end
    for _, list in ipairs({ flags, { "-o", "/dev/null", pkg } }) do
      for _, a in ipairs(list) do
        build[#build + 1] = a
      end
    end
    defaults.build = build
  end
  return recipe.merge("recipes.go.run", debug_fields(defaults, opts), opts,
    { pkg = true, args = true, flags = true, check = true, tests = true, debug = true })
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
