--- Recipe for Rust: `cargo build -q` while the old program keeps serving, then `cargo run -q`.
---
---   local rust = require("reload.recipes.rust")
---   service "api" (rust.cargo { bin = "api" })
local recipe = require("reload.recipe")

local M = {}

M.watch = { "**/*.rs", "**/Cargo.toml", "Cargo.lock", "build.rs", ".cargo/config.toml" }
--- target/, and the temporary directory cargo renames to target/ when a build finds none.
M.ignore = { "target/", "target" .. ("[a-zA-Z0-9]"):rep(6) .. "/" }

---@class reload.recipes.rust.Options
---@field bin? string the binary (cargo --bin NAME; default: the package's)
---@field release? boolean build with --release
---@field features? string[] cargo --features
---@field args? string[] arguments of the program

--- `cargo build -q [--bin BIN]` as the build step, so the old program serves while it compiles
--- and a compile error keeps it running; then `cargo run -q [--bin BIN] -- ARGS`, which finds
--- the binary wherever cargo put it (a workspace's target/, CARGO_TARGET_DIR, build.target-dir)
--- and execs it, once its check of what is already built (about 0.1 s) is done. -q: a build
--- that passes shows its warnings and nothing else. cargo writes Cargo.lock when its
--- dependencies change, during the build that the Cargo.toml edit started: that build is
--- cancelled and started again (at once, before any compile), one restart in all.
---@param opts? reload.recipes.rust.Options|table
---@return table service definition
function M.cargo(opts)
  opts = opts or {}
  if opts.bin ~= nil and type(opts.bin) ~= "string" then
    error("recipes.rust.cargo: 'bin' must be the binary's name", 2)
  end
  local select_ = {}
  if opts.bin then
    select_ = { "--bin", opts.bin }
  end
  if opts.release then
    select_[#select_ + 1] = "--release"
  end
  if opts.features and #opts.features > 0 then
    select_[#select_ + 1] = "--features=" .. table.concat(opts.features, ",")
  end
  local build = { "cargo", "build", "-q" }
  local run = { "cargo", "run", "-q" }
  for _, a in ipairs(select_) do
    build[#build + 1] = a
    run[#run + 1] = a
  end
  if opts.args and #opts.args > 0 then
    run[#run + 1] = "--"
    for _, a in ipairs(opts.args) do
      run[#run + 1] = a
    end
  end
  return recipe.merge("recipes.rust", { watch = M.watch, ignore = M.ignore, build = build,
    run = run }, opts, { bin = true, release = true, features = true, args = true })
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
