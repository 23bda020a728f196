--- Recipe for Python: a module (python3 -m MOD) or a script, with debugpy on demand.
---
---   local py = require("reload.recipes.python")
---   service "api" (py.app { module = "myapp", debugpy = flag("debug") and "127.0.0.1:5678" })
local recipe = require("reload.recipe")

local M = {}

M.watch = { "**/*.py", "pyproject.toml", "requirements*.txt" }
M.ignore = { "__pycache__/", "*.pyc", ".venv/", "venv/", ".pytest_cache/", ".mypy_cache/" }

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

---@class reload.recipes.python.Options
---@field module? string run python3 -m MODULE
---@field script? string run python3 SCRIPT (default "main.py")
---@field args? string[]
---@field python? string interpreter (default "python3")
---@field debugpy? string|boolean listen address for debugpy

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
  for _, a in ipairs(opts.args or {}) do
    run[#run + 1] = a
  end
  local defaults = { watch = M.watch, ignore = M.ignore, run = run,
    env = { PYTHONUNBUFFERED = "1" } }
  if opts.debugpy then
    local addr = type(opts.debugpy) == "string" and opts.debugpy or "127.0.0.1:5678"
    defaults.wrap = recipe.wrapper(function(argv)
      return M.debugpy(argv, addr)
    end, ("debugpy listens on %s: attach your editor (request: attach, connect: %s)")
      :format(addr, addr), "debugpy listens on " .. addr)
  end
  return recipe.merge("recipes.python", defaults, opts,
    { module = true, script = true, args = true, python = true, debugpy = true })
end

--- The Reloadfile `reload init python` writes, for the project reload.detect found: Django
--- (manage.py runserver), Flask (flask run), FastAPI (uvicorn), or a script. Frameworks run
--- without their own reloader: reload restarts them.
---@param project? { kind: string, name?: string, app?: string, script?: string, python?: string }
---@return string
function M.template(project)
  project = project or { kind = "script", script = "main.py" }
  local kind = project.kind
  local lines
  local port_default = "8000"
  if kind == "django" then
    lines = { '  script  = "manage.py",',
      '  args    = { "runserver", "--noreload", "127.0.0.1:" .. port },' }
  elseif kind == "flask" then
    port_default = "5000"
    lines = { '  module  = "flask",',
      ('  args    = { "--app", %q, "run", "--port", port },'):format(project.app) }
  elseif kind == "fastapi" then
    lines = { '  module  = "uvicorn",',
      ('  args    = { %q, "--port", port },'):format(project.app) }
  else
    lines = { ("  script  = %q,                      -- or module = \"mypackage\"")
      :format(project.script or "main.py") }
  end
  if project.python then
    lines[#lines + 1] = ("  python  = %q,"):format(project.python)
  end
  if kind == "script" then
    lines[#lines + 1] = "  env     = { PORT = port },"
  else
    lines[#lines + 1] = "  ready   = { port = tonumber(port) },"
  end
  lines[#lines + 1] = '  debugpy = flag("debug") and "127.0.0.1:5678" or nil,'
  local what = ({ django = "a Django project", flask = "a Flask app", fastapi = "a FastAPI app" })
    [kind] or "a Python app"
  return ([[
-- Reloadfile.lua for %s. `reload --debug` runs it under debugpy.
local py = require("reload.recipes.python")
local port = os.getenv("PORT") or "%s"

service %q (py.app {
%s
})
]]):format(what, port_default, project.name or "app", table.concat(lines, "\n"))
end

return M
