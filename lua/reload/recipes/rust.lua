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

function M.template()
  return [[
-- Reloadfile.lua for a Rust binary.
local rust = require("reload.recipes.rust")

service "app" (rust.cargo { bin = "app" })
]]
end

return M
