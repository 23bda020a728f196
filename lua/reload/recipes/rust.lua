--- Recipe for Rust: `cargo build` and the built binary.
---
---   local rust = require("reload.recipes.rust")
---   service "api" (rust.cargo { bin = "api" })
local recipe = require("reload.recipe")

local M = {}

M.watch = { "**/*.rs", "**/Cargo.toml", "Cargo.lock", "build.rs" }
M.ignore = { "target/" }

---@class reload.recipes.rust.Options
---@field bin string the binary (cargo --bin NAME)
---@field release? boolean build with --release
---@field args? string[]

---@param opts reload.recipes.rust.Options|table
---@return table service definition
function M.cargo(opts)
  if type(opts) ~= "table" or type(opts.bin) ~= "string" then
    error("recipes.rust.cargo: 'bin' (the binary's name) is required", 2)
  end
  local build = { "cargo", "build", "--bin", opts.bin }
  if opts.release then
    build[#build + 1] = "--release"
  end
  local run = { ("target/%s/%s"):format(opts.release and "release" or "debug", opts.bin) }
  for _, a in ipairs(opts.args or {}) do
    run[#run + 1] = a
  end
  return recipe.merge("recipes.rust", { watch = M.watch, ignore = M.ignore, build = build,
    run = run }, opts, { bin = true, release = true, args = true })
end

--- The Reloadfile `reload init rust` writes, for the binary reload.detect found in Cargo.toml.
---@param project? { bin: string, name?: string, others?: string[] }
---@return string
function M.template(project)
  project = project or { bin = "app" }
  local others = project.others and #project.others > 0 and
    ("-- Other binaries: %s (rust.cargo { bin = ... }).\n"):format(table.concat(project.others,
      ", ")) or ""
  return ([[
-- Reloadfile.lua for a Rust binary.
%slocal rust = require("reload.recipes.rust")
local port = os.getenv("PORT") or "8080"

service %q (rust.cargo {
  bin = %q,
  env = { PORT = port },
  -- ready = { port = tonumber(port) },   -- if it listens on $PORT
})
]]):format(others, project.name or project.bin, project.bin)
end

return M
