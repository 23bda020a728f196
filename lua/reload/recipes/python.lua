--- Recipes for Python: a module or a script, the web frameworks (Django's runserver, Flask,
--- FastAPI under uvicorn, gunicorn), and debugpy on demand. Frameworks run without their own
--- reloader: reload is the reloader, and one that forks a watcher child would restart the
--- program a second time on every save.
---
---   local py = require("reload.recipes.python")
---   service "web" (py.django { port = 8000, debugpy = flag("debug") and "127.0.0.1:5678" })
---   service "api" (py.fastapi { app = "main:app", port = 8001 })
local recipe = require("reload.recipe")

local M = {}

M.watch = { "**/*.py", "pyproject.toml", "requirements*.txt" }
M.ignore = { "__pycache__/", "*.pyc", ".venv/", "venv/", ".pytest_cache/", ".mypy_cache/" }
--- Templates are read once at start by Flask without debug, and by Django's cached loader
--- (its default since 4.1, reset only by the reloader that --noreload turns off); compiled
--- translations (*.mo) are read once at start.
M.templates = { "**/templates/**", "**/*.mo" }

--- python3 -m debugpy --listen ADDR [--wait-for-client] <the rest of the python command>.
---@param cmd string|string[]
---@param addr? string default 127.0.0.1:5678
---@param wait? boolean wait for the debugger before running
---@return string[]
function M.debugpy(cmd, addr, wait)
  local argv = recipe.argv(cmd)
  local out = { argv[1], "-m", "debugpy", "--listen", addr or "127.0.0.1:5678" }
  if wait then
    out[#out + 1] = "--wait-for-client"
  end
  for i = 2, #argv do
    out[#out + 1] = argv[i]
  end
  return out
end

---@class reload.recipes.python.DebugOptions
---@field listen? string debugpy's address (default 127.0.0.1:5678)
---@field wait? boolean wait for the debugger before running the program

--- A wrapper (command -> command) that runs a python command under debugpy and says how to
--- attach: `wrap = py.debugger { listen = "127.0.0.1:5678" }`.
---@param opts? reload.recipes.python.DebugOptions|string options, or the address
---@return fun(cmd: string[]): string[]
function M.debugger(opts)
  if type(opts) ~= "table" then
    opts = { listen = opts }
  end
  local listen = opts.listen or "127.0.0.1:5678"
  local host, port = listen:match("^(.*):(%d+)$")
  local hint = ("debugpy listens on %s: attach your editor with " ..
    '{ "type": "debugpy", "request": "attach", "connect": { "host": "%s", "port": %s } }')
    :format(listen, host ~= "" and host or "127.0.0.1", port)
  return recipe.wrapper(function(argv)
    return M.debugpy(argv, listen, opts.wait)
  end, hint, "debugpy listens on " .. listen)
end

--- The options every Python recipe takes besides service keys.
local COMMON = { args = true, python = true, debugpy = true }

local function own(extra)
  local out = {}
  for k in pairs(COMMON) do
    out[k] = true
  end
  for k in pairs(extra) do
    out[k] = true
  end
  return out
end

local function append(list, more)
  for _, v in ipairs(more or {}) do
    list[#list + 1] = v
  end
  return list
end

--- The service every recipe returns, from the recipe's own fields.
local function service(name, opts, fields, own_keys)
  local defaults = { watch = M.watch, ignore = M.ignore, env = { PYTHONUNBUFFERED = "1" } }
  for k, v in pairs(fields) do
    defaults[k] = v
  end
  if opts.debugpy then
    defaults.wrap = M.debugger(type(opts.debugpy) == "string" and opts.debugpy or nil)
  end
  return recipe.merge(name, defaults, opts, own_keys)
end

--- host, port of a server recipe (port: an integer, or an error naming the recipe).
local function address(name, opts, port)
  port = opts.port or port
  local n = math.tointeger(tonumber(port))
  if not n or n < 1 or n > 65535 then
    error(("%s: 'port' must be a port number, not %s"):format(name, tostring(port)), 3)
  end
  return opts.host or "127.0.0.1", n
end

local function join(list, more)
  return append(append({}, list), more)
end

---@class reload.recipes.python.Options
---@field module? string run python3 -m MODULE
---@field script? string run python3 SCRIPT (default "main.py")
---@field args? string[]
---@field python? string interpreter (default "python3")
---@field debugpy? string|boolean listen address for debugpy

---@class reload.recipes.python.Server
---@field app? string the application ("module:object")
---@field port? integer default 8000 (Flask: 5000)
---@field host? string default 127.0.0.1
---@field args? string[] more arguments of the server
---@field python? string interpreter (default "python3")
---@field debugpy? string|boolean run under debugpy (address, or true for 127.0.0.1:5678)

---@class reload.recipes.python.Django: reload.recipes.python.Server
---@field manage? string default "manage.py"
---@field settings? string DJANGO_SETTINGS_MODULE

---@class reload.recipes.python.Flask: reload.recipes.python.Server
---@field debug? boolean Flask's interactive debugger (FLASK_DEBUG=1), never its reloader

---@class reload.recipes.python.Gunicorn: reload.recipes.python.Server
---@field workers? integer default 2
---@field worker_class? string gunicorn --worker-class
---@field graceful? number gunicorn --graceful-timeout, seconds (default 2)

--- A Python program: python3 -m MODULE, or python3 SCRIPT.
---@param opts? reload.recipes.python.Options|table
---@return table service definition
function M.app(opts)
  opts = opts or {}
  local run = { opts.python or "python3" }
  if opts.module then
    run[#run + 1] = "-m"
    run[#run + 1] = opts.module
  else
    run[#run + 1] = opts.script or "main.py"
  end
  return service("recipes.python", opts, { run = append(run, opts.args) },
    own({ module = true, script = true }))
end

--- Django's development server: `manage.py runserver --noreload HOST:PORT`. Django's own
--- autoreloader is off (--noreload): reload restarts it, and keeps the old one serving while a
--- change is being built. Up once it listens on the port; TERM stops it.
---@param opts? reload.recipes.python.Django|table
---@return table service definition
function M.django(opts)
  opts = opts or {}
  local name = "recipes.python.django"
  local host, port = address(name, opts, 8000)
  local run = { opts.python or "python3", opts.manage or "manage.py", "runserver", "--noreload",
    ("%s:%d"):format(host, port) }
  local fields = { run = append(run, opts.args), watch = join(M.watch, M.templates),
    ready = { port = port } }
  if opts.settings then
    fields.env = { PYTHONUNBUFFERED = "1", DJANGO_SETTINGS_MODULE = opts.settings }
  end
  return service(name, opts, fields,
    own({ port = true, host = true, manage = true, settings = true }))
end

--- A Flask app: `python3 -m flask run --no-reload` with FLASK_APP (every Flask since 1.0 reads
--- it). Flask's reloader is off (--no-reload), also with debug = true, which only turns on
--- the interactive debugger (FLASK_DEBUG=1).
---@param opts? reload.recipes.python.Flask|table
---@return table service definition
function M.flask(opts)
  opts = opts or {}
  local name = "recipes.python.flask"
  local host, port = address(name, opts, 5000)
  local run = { opts.python or "python3", "-m", "flask", "run", "--no-reload", "--host", host,
    "--port", tostring(port) }
  local env = { PYTHONUNBUFFERED = "1", FLASK_APP = opts.app or "app" }
  if opts.debug then
    env.FLASK_DEBUG = "1"
  end
  return service(name, opts, { run = append(run, opts.args), watch = join(M.watch, M.templates),
    env = env, ready = { port = port } }, own({ app = true, port = true, host = true,
    debug = true }))
end

--- An ASGI app (FastAPI, Starlette, …) under uvicorn: `python3 -m uvicorn APP --host H --port
--- P`. uvicorn's reloader (--reload) is not asked for: reload restarts it. TERM is uvicorn's
--- graceful stop (requests in flight finish, lifespan shutdown runs).
---@param opts? reload.recipes.python.Server|table
---@return table service definition
function M.fastapi(opts)
  opts = opts or {}
  local name = "recipes.python.fastapi"
  local host, port = address(name, opts, 8000)
  local run = { opts.python or "python3", "-m", "uvicorn", opts.app or "main:app", "--host",
    host, "--port", tostring(port) }
  return service(name, opts, { run = append(run, opts.args), ready = { port = port } },
    own({ app = true, port = true, host = true }))
end
M.uvicorn = M.fastapi

--- A WSGI app under gunicorn with workers: `python3 -m gunicorn --bind H:P --workers N
--- --graceful-timeout G APP`. gunicorn's reloader (--reload) is not asked for. TERM to the
--- master alone (stop.to = "main") is gunicorn's graceful stop: it lets each worker finish its
--- request, for up to G seconds (default 2), and reload's grace is G + 2 s, so gunicorn ends its
--- own shutdown. A TERM to each worker as well would have the master fork new ones first (and
--- wait its whole graceful timeout for those still booting). Never USR2: that is gunicorn's
--- binary upgrade, a second master beside the first.
---@param opts? reload.recipes.python.Gunicorn|table
---@return table service definition
function M.gunicorn(opts)
  opts = opts or {}
  local name = "recipes.python.gunicorn"
  if opts.debugpy then
    error(name .. ": no debugpy (it would follow the master, not the workers); debug the app " ..
      "under python.flask or python.django", 2)
  end
  local host, port = address(name, opts, 8000)
  local graceful = opts.graceful or 2
  local run = { opts.python or "python3", "-m", "gunicorn", "--bind", ("%s:%d"):format(host, port),
    "--workers", tostring(opts.workers or 2), "--graceful-timeout", tostring(graceful) }
  if opts.worker_class then
    append(run, { "--worker-class", opts.worker_class })
  end
  append(run, opts.args)
  run[#run + 1] = opts.app or "app:app"
  return service(name, opts, {
    run = run,
    watch = join(M.watch, M.templates),
    ready = { port = port },
    stop = { signal = "TERM", grace = graceful + 2, to = "main" },
  }, own({ app = true, port = true, host = true, workers = true, worker_class = true,
    graceful = true }))
end

--- The Reloadfile `reload init python` writes, for the project reload.detect found: Django,
--- Flask, FastAPI (uvicorn), or a script.
---@param project? { kind: string, name?: string, app?: string, script?: string, python?: string }
---@return string
function M.template(project)
  project = project or { kind = "script", script = "main.py" }
  local kind = project.kind
  local lines, fn
  local port_default = "8000"
  if kind == "django" then
    fn, lines = "django", { "  port    = tonumber(port),   -- manage.py runserver --noreload" }
  elseif kind == "flask" then
    port_default = "5000"
    fn, lines = "flask", { ("  app     = %q,"):format(project.app),
      "  port    = tonumber(port),   -- flask run --no-reload" }
  elseif kind == "fastapi" then
    fn, lines = "fastapi", { ("  app     = %q,"):format(project.app),
      "  port    = tonumber(port),   -- python3 -m uvicorn, without --reload" }
  else
    fn, lines = "app", { ("  script  = %q,                      -- or module = \"mypackage\"")
      :format(project.script or "main.py"), "  env     = { PORT = port }," }
  end
  if project.python then
    lines[#lines + 1] = ("  python  = %q,"):format(project.python)
  end
  lines[#lines + 1] = '  debugpy = flag("debug") and "127.0.0.1:5678" or nil,'
  local what = ({ django = "a Django project", flask = "a Flask app", fastapi = "a FastAPI app" })
    [kind] or "a Python app"
  return ([[
-- Reloadfile.lua for %s. `reload --debug` runs it under debugpy.
local py = require("reload.recipes.python")
local port = os.getenv("PORT") or "%s"

service %q (py.%s {
%s
})
]]):format(what, port_default, project.name or "app", fn, table.concat(lines, "\n"))
end

return M
