--- Generates a source-like tree for the watch benchmark: `ndirs` directories spread over a few
--- levels, `nfiles` small files spread over them, plus ignored weight (.git, node_modules) that a
--- good watcher never walks.
local uv = require("luv")

local M = {}

---@param root string an empty directory
---@param ndirs integer
---@param nfiles integer
---@return string[] files relative paths of the generated files
function M.generate(root, ndirs, nfiles)
  local dirs = { "" }
  for i = 1, ndirs - 1 do
    -- a tree about 10 wide: parent chosen among the earlier directories
    local parent = dirs[math.floor((i - 1) / 10) + 1]
    local rel = (parent == "" and "" or parent .. "/") .. "d" .. i
    assert(uv.fs_mkdir(root .. "/" .. rel, 493))
    dirs[#dirs + 1] = rel
  end
  local files = {}
  for i = 1, nfiles do
    local d = dirs[(i - 1) % #dirs + 1]
    local rel = (d == "" and "" or d .. "/") .. "f" .. i .. ".go"
    local f = assert(io.open(root .. "/" .. rel, "w"))
    f:write("package x\n")
    f:close()
    files[#files + 1] = rel
  end
  -- ignored weight
  for _, top in ipairs({ ".git/objects", "node_modules" }) do
    local base = root .. "/" .. top
    os.execute("mkdir -p '" .. base .. "'")
    for i = 1, math.max(10, ndirs // 10) do
      uv.fs_mkdir(base .. "/x" .. i, 493)
    end
  end
  return files
end

return M
