--- What `reload init` learns from the project in front of it: which stack it is (go.mod,
--- Cargo.toml, manage.py or a Flask/FastAPI app, package.json, CMakeLists.txt or a Makefile),
--- and for that stack what to build and run: Go's main packages (the root, cmd/*), Rust's
--- binary ([package].name, [[bin]], src/bin/*), package.json's scripts.dev / scripts.start /
--- main, the Python framework and its app object (and a .venv), the CMake target or the
--- Makefile's first target. The result is a plain table that the stack's recipe turns into a
--- Reloadfile (`recipe.template(project)`); this module only reads files.
local M = {}

local uv = require("luv")
local json = require("reload.json")

local function read(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local text = f:read("a")
  f:close()
  return text
end

local function exists(path, kind)
  local st = uv.fs_stat(path)
  return st ~= nil and (kind == nil or st.type == kind)
end

--- Names in dir (sorted), optionally only those of a type ("file", "directory").
local function list(dir, kind)
  local out = {}
  local req = uv.fs_scandir(dir)
  while req do
    local name, t = uv.fs_scandir_next(req)
    if not name then
      break
    end
    if kind == nil or t == kind or (t == "link" and exists(dir .. "/" .. name, kind)) then
      out[#out + 1] = name
    end
  end
  table.sort(out)
  return out
end

--- A word a service may be named with.
local function service_name(s, fallback)
  s = tostring(s or ""):gsub("^@[^/]*/", ""):gsub("[^%w_.-]", "-"):gsub("^[-.]+", "")
  return s ~= "" and s or fallback
end

-- Go -----------------------------------------------------------------------------------------

--- True when dir holds a non-test .go file of package main.
local function go_main(dir)
  for _, f in ipairs(list(dir, "file")) do
    if f:match("%.go$") and not f:match("_test%.go$") then
      local text = read(dir .. "/" .. f) or ""
      if text:match("^package%s+main%f[%W]") or text:match("\npackage%s+main%f[%W]") then
        return true
      end
    end
  end
  return false
end

function M.go(dir)
  local mod = (read(dir .. "/go.mod") or ""):match("module%s+([^%s]+)")
  local base = service_name(mod and mod:match("([^/]+)$"), "app")
  local services, found = {}, {}
  if go_main(dir) then
    services[#services + 1] = { name = base, pkg = "." }
    found[#found + 1] = "package main at the root"
  end
  for _, d in ipairs(list(dir .. "/cmd", "directory")) do
    if go_main(dir .. "/cmd/" .. d) then
      services[#services + 1] = { name = service_name(d, "app"), pkg = "./cmd/" .. d }
      found[#found + 1] = "cmd/" .. d
    end
  end
  if #services == 0 then
    services[1] = { name = base, pkg = "." }
  end
  return { services = services, module = mod },
    ("a Go module%s%s"):format(mod and (" (" .. mod .. ")") or "",
      #found > 0 and (" with " .. table.concat(found, ", ")) or "")
end

-- Node ---------------------------------------------------------------------------------------

-- A dev script that runs its own watcher would restart under reload's restarts.
local WATCHERS = { "nodemon", "node%-dev", "ts%-node%-dev", "%-%-watch", "supervisor",
  "forever" }

local function runs_watcher(cmd)
  for _, w in ipairs(WATCHERS) do
    if cmd:find(w) then
      return true
    end
  end
  return false
end

function M.node(dir)
  local pkg = json.decode(read(dir .. "/package.json") or "") or {}
  local scripts = type(pkg.scripts) == "table" and pkg.scripts or {}
  local p = { name = service_name(pkg.name, "app") }
  local why
  if type(scripts.dev) == "string" and not runs_watcher(scripts.dev) then
    p.script, why = "dev", "scripts.dev: " .. scripts.dev
  elseif type(scripts.start) == "string" and not runs_watcher(scripts.start) then
    p.script, why = "start", "scripts.start: " .. scripts.start
  elseif type(pkg.main) == "string" and exists(dir .. "/" .. pkg.main, "file") then
    p.main, why = pkg.main, "main: " .. pkg.main
  else
    for _, f in ipairs({ "index.js", "server.js", "app.js", "main.js", "index.mjs" }) do
      if exists(dir .. "/" .. f, "file") then
        p.main, why = f, f
        break
      end
    end
  end
  if not p.main and not p.script then
    p.main, why = "index.js", "no entry point found; index.js"
  end
  p.why = why
  -- Vite's dev server (node.vite) when the script runs vite; an Express server (node.express)
  -- when the package depends on express.
  local deps = type(pkg.dependencies) == "table" and pkg.dependencies or {}
  if p.script and scripts[p.script]:find("%f[%w]vite%f[%W]") then
    p.kind = "vite"
    return p, ("a Vite app (%s)"):format(why)
  elseif deps.express then
    p.kind = "express"
    return p, ("an Express server (%s)"):format(why)
  end
  return p, ("a Node.js package (%s)"):format(why)
end

-- Python -------------------------------------------------------------------------------------

local PY_FIRST = { "app.py", "main.py", "wsgi.py", "asgi.py", "server.py", "application.py",
  "api.py" }

--- The root's Python files, the usual entry points first.
local function py_files(dir)
  local out, seen = {}, {}
  for _, f in ipairs(PY_FIRST) do
    if exists(dir .. "/" .. f, "file") then
      out[#out + 1], seen[f] = f, true
    end
  end
  for _, f in ipairs(list(dir, "file")) do
    if f:match("%.py$") and not seen[f] then
      out[#out + 1] = f
    end
  end
  return out
end

function M.python(dir)
  local p = { name = "app" }
  for _, py in ipairs({ ".venv/bin/python", "venv/bin/python" }) do
    if exists(dir .. "/" .. py) then
      p.python = py
      break
    end
  end
  local what
  if exists(dir .. "/manage.py", "file") then
    p.kind, p.name, what = "django", "web", "a Django project (manage.py)"
  else
    for _, f in ipairs(py_files(dir)) do
      local text = read(dir .. "/" .. f) or ""
      local stem = f:sub(1, -4)
      local var = text:match("([%a_][%w_]*)%s*=%s*[%w_.]-FastAPI%s*%(")
      if var then
        p.kind, p.app, p.name = "fastapi", stem .. ":" .. var, "api"
        what = ("a FastAPI app (%s in %s)"):format(var, f)
        break
      end
      var = text:match("([%a_][%w_]*)%s*=%s*[%w_.]-Flask%s*%(")
      if var then
        p.kind, p.app, p.name = "flask", stem .. ":" .. var, "web"
        what = ("a Flask app (%s in %s)"):format(var, f)
        break
      end
    end
  end
  if not p.kind then
    p.kind = "script"
    p.script = py_files(dir)[1] or "main.py"
    what = ("a Python program (%s)"):format(p.script)
  end
  if p.python then
    what = what .. " with " .. p.python
  end
  return p, what
end

-- Rust ---------------------------------------------------------------------------------------

--- [package].name, [[bin]] names and [workspace].members of a Cargo.toml.
local function cargo_toml(text)
  local section, out = nil, { bins = {}, members = {} }
  local in_members = false
  for line in (text or ""):gmatch("[^\n]*") do
    line = line:gsub("#.*$", "")
    local header = line:match("^%s*%[%[?([%w%.%-_]+)%]%]?%s*$")
    if header then
      section = line:find("[[", 1, true) and ("[[" .. header .. "]]") or header
      if section == "[[bin]]" then
        out.bins[#out.bins + 1] = {}
      end
      in_members = false
    else
      local k, v = line:match('^%s*([%w_%-]+)%s*=%s*"([^"]*)"')
      if section == "package" and k == "name" then
        out.name = v
      elseif section == "[[bin]]" and k == "name" then
        out.bins[#out.bins].name = v
      end
      if section == "workspace" and line:match("^%s*members%s*=") then
        in_members = true
      end
      if in_members then
        for m in line:gmatch('"([^"]+)"') do
          out.members[#out.members + 1] = m
        end
        if line:find("]", 1, true) then
          in_members = false
        end
      end
    end
  end
  return out
end

--- The binaries of the crate in dir: its own name (src/main.rs), [[bin]]s, src/bin/*.rs.
local function cargo_bins(dir, toml)
  local bins = {}
  if toml.name and exists(dir .. "/src/main.rs", "file") then
    bins[#bins + 1] = toml.name
  end
  for _, b in ipairs(toml.bins) do
    if b.name then
      bins[#bins + 1] = b.name
    end
  end
  for _, f in ipairs(list(dir .. "/src/bin", "file")) do
    if f:match("%.rs$") then
      bins[#bins + 1] = f:sub(1, -4)
    end
  end
  return bins
end

function M.rust(dir)
  local toml = cargo_toml(read(dir .. "/Cargo.toml"))
  local bins = cargo_bins(dir, toml)
  for _, member in ipairs(toml.members) do
    if not member:find("*", 1, true) then
      for _, b in ipairs(cargo_bins(dir .. "/" .. member,
        cargo_toml(read(dir .. "/" .. member .. "/Cargo.toml")))) do
        bins[#bins + 1] = b
      end
    end
  end
  if #bins == 0 then
    bins[1] = toml.name or "app"
  end
  local p = { bin = bins[1], others = { table.unpack(bins, 2) }, name = service_name(bins[1],
    "app") }
  return p, ("a Cargo %s (binary %s)"):format(#toml.members > 0 and "workspace" or "package",
    table.concat(bins, ", "))
end

-- C ------------------------------------------------------------------------------------------

--- The first real target of a Makefile (the first prerequisite of "all"), or nil.
local function make_target(text)
  local phony = {}
  for names in (text or ""):gmatch("\n?%.PHONY%s*:([^\n]*)") do
    for n in names:gmatch("%S+") do
      phony[n] = true
    end
  end
  for line in (text or ""):gmatch("[^\n]*") do
    local target, deps = line:match("^([%w_%-%./]+)%s*:([^=][^\n]*)$")
    if not target then
      target, deps = line:match("^([%w_%-%./]+)%s*:$"), ""
    end
    if target and not target:match("^%.") and not target:find("%", 1, true) then
      if target == "all" or phony[target] then
        local first = deps:match("^%s*([%w_%-%./]+)")
        if target == "all" and first and not phony[first] then
          return first
        end
      else
        return target
      end
    end
  end
  return nil
end

function M.c(dir)
  local cmake = read(dir .. "/CMakeLists.txt")
  if cmake then
    -- CMake commands are case-insensitive; names are not.
    local lower = cmake:lower()
    local _, e = lower:find("add_executable%s*%(%s*")
    local target = e and cmake:match("^([%w_%-%.]+)", e + 1)
    if not target and e and cmake:match("^%${PROJECT_NAME}", e + 1) then
      local _, pe = lower:find("project%s*%(%s*")
      target = pe and cmake:match("^([%w_%-%.]+)", pe + 1)
    end
    target = target or "app"
    return { build = "cmake", target = target, run = "build/" .. target,
      name = service_name(target, "app") }, ("a CMake project (add_executable %s)"):format(target)
  end
  local text
  for _, f in ipairs({ "GNUmakefile", "makefile", "Makefile" }) do
    text = text or read(dir .. "/" .. f)
  end
  local target = make_target(text) or "app"
  return { build = "make", target = target, run = "./" .. target,
    name = service_name(target:match("[^/]*$"), "app") },
    ("a Makefile project (target %s)"):format(target)
end

-- Which stack --------------------------------------------------------------------------------

--- The stack of the project in dir, or nil: the first of go, rust, python, node, c whose
--- marker files are there.
---@param dir string
---@return string|nil
function M.stack(dir)
  if exists(dir .. "/go.mod", "file") then
    return "go"
  end
  if exists(dir .. "/Cargo.toml", "file") then
    return "rust"
  end
  for _, f in ipairs({ "manage.py", "pyproject.toml", "requirements.txt", "setup.py" }) do
    if exists(dir .. "/" .. f, "file") then
      return "python"
    end
  end
  for _, f in ipairs(py_files(dir)) do
    local text = read(dir .. "/" .. f) or ""
    if text:find("FastAPI%s*%(") or text:find("Flask%s*%(") then
      return "python"
    end
  end
  if exists(dir .. "/package.json", "file") then
    return "node"
  end
  for _, f in ipairs({ "CMakeLists.txt", "GNUmakefile", "makefile", "Makefile" }) do
    if exists(dir .. "/" .. f, "file") then
      return "c"
    end
  end
  return nil
end

--- Cargo makes its target directory as target<6 letters or digits>/ (a temporary directory,
--- renamed into place once it holds CACHEDIR.TAG) when a build finds none.
M.cargo_target_tmp = "target" .. ("[a-zA-Z0-9]"):rep(6) .. "/"

--- What the project's toolchain writes into its tree while it builds, where the name alone
--- cannot say so and the built-in defaults (reload.core) therefore leave it: Cargo's target/,
--- and the temporary directory that becomes it, beside a Cargo.toml (a directory named target
--- elsewhere may hold sources). Ignored like the Reloadfile's `ignore` patterns, before them.
---@param dir string the project root
---@return string[]
function M.ignores(dir)
  local out = {}
  if exists(dir .. "/Cargo.toml", "file") then
    out[#out + 1] = "/target/"
    out[#out + 1] = "/" .. M.cargo_target_tmp
  end
  return out
end

--- What the stack's recipe needs to know of the project in dir, and a sentence saying what was
--- found.
---@param stack "go"|"node"|"python"|"rust"|"c"
---@param dir string
---@return table project
---@return string what
function M.project(stack, dir)
  return M[stack](dir)
end

return M
