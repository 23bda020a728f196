--- Recipe for C and C++: `make` or `cmake --build` as the build step, gdbserver on demand.
---
---   local c = require("reload.recipes.c")
---   service "srv" (c.make { target = "server", run = "./server" })
local recipe = require("reload.recipe")

local M = {}

M.watch = { "**/*.c", "**/*.h", "**/*.cc", "**/*.cpp", "**/*.hpp", "Makefile", "*.mk",
  "**/CMakeLists.txt", "**/*.cmake" }
M.ignore = { "build/", "*.o", "*.a", "*.so", "*.d" }

--- gdbserver ADDR <command>: attach with `gdb -ex "target remote ADDR" PROGRAM`.
---@param cmd string|string[]
---@param addr? string default 127.0.0.1:2159
---@return string[]
function M.gdbserver(cmd, addr)
  local out = { "gdbserver", addr or "127.0.0.1:2159" }
  for _, a in ipairs(recipe.argv(cmd)) do
    out[#out + 1] = a
  end
  return out
end

local function debug_wrap(defaults, opts)
  if opts.gdbserver then
    local addr = type(opts.gdbserver) == "string" and opts.gdbserver or "127.0.0.1:2159"
    defaults.wrap = recipe.wrapper(function(argv)
      return M.gdbserver(argv, addr)
    end, ('gdbserver listens on %s: attach with gdb -ex "target remote %s" PROGRAM')
      :format(addr, addr), "gdbserver listens on " .. addr)
  end
  return defaults
end

---@class reload.recipes.c.Options
---@field target? string make target (default: make's default)
---@field jobs? integer make -jN
---@field run string|string[] the program to run
---@field gdbserver? string|boolean run under gdbserver (address)

--- Build with `make -s`: silent about the commands it runs, so a build that passes shows the
--- compiler's warnings and nothing else.
---@param opts reload.recipes.c.Options|table
---@return table service definition
function M.make(opts)
  local build = { "make", "-s" }
  if opts.jobs then
    build[#build + 1] = "-j" .. tostring(opts.jobs)
  end
  if opts.target then
    build[#build + 1] = opts.target
  end
  local defaults = debug_wrap({ watch = M.watch, ignore = M.ignore, build = build }, opts)
  return recipe.merge("recipes.c", defaults, opts,
    { target = true, jobs = true, gdbserver = true })
end

--- Build with CMake: configure once into `dir` (default "build"), then `cmake --build`.
---@param opts table dir?, target?, run, gdbserver?
---@return table service definition
function M.cmake(opts)
  local dir = opts.dir or "build"
  local build_cmd = { "cmake", "--build", dir }
  if opts.target then
    build_cmd[#build_cmd + 1] = "--target"
    build_cmd[#build_cmd + 1] = opts.target
  end
  local configure = ("test -f %s/CMakeCache.txt || cmake -S . -B %s"):format(dir, dir)
  local ignore = { dir .. "/" }
  for _, p in ipairs(M.ignore) do
    ignore[#ignore + 1] = p
  end
  -- A table holding a table is a list of steps (see reload.dsl).
  local steps = { configure, build_cmd }
  local defaults = debug_wrap({ watch = M.watch, ignore = ignore, build = steps }, opts)
  return recipe.merge("recipes.c", defaults, opts,
    { dir = true, target = true, gdbserver = true })
end

--- The Reloadfile `reload init c` writes: CMake (add_executable's target) or make (the
--- Makefile's first target). `reload --debug` runs the program under gdbserver.
---@param project? { build: "make"|"cmake", target: string, run: string, name?: string }
---@return string
function M.template(project)
  project = project or { build = "make", target = "app", run = "./app" }
  local fn = project.build == "cmake" and "cmake" or "make"
  return ([[
-- Reloadfile.lua for a C project built with %s. `reload --debug` runs it under gdbserver.
local c = require("reload.recipes.c")
local port = os.getenv("PORT") or "8080"

service %q (c.%s {
  target    = %q,
  run       = %q,
  env       = { PORT = port },
  -- ready  = { port = tonumber(port) },   -- if it listens on $PORT
  gdbserver = flag("debug") and "127.0.0.1:2159" or nil,
})
]]):format(project.build == "cmake" and "CMake" or "make", project.name or project.target, fn,
    project.target, project.run)
end

return M
