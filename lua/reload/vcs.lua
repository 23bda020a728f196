--- Version control as the debouncer sees it: is a git operation (checkout, merge, rebase, reset,
--- stash) under way in the work tree? git holds .git/index.lock while it rewrites the tree, so
--- the files it writes are one change, however long it takes.
local M = {}

local uv = require("luv")

local git_dirs = {}

--- The git directory of a work tree: ROOT/.git, or the one a .git file names (worktrees,
--- submodules). False when there is none.
---@param root string
---@return string|false
function M.git_dir(root)
  local known = git_dirs[root]
  if known ~= nil then
    return known
  end
  local dir = false
  local path = root .. "/.git"
  local st = uv.fs_stat(path)
  if st and st.type == "directory" then
    dir = path
  elseif st and st.type == "file" then
    local f = io.open(path, "r")
    local line = f and f:read("l")
    if f then
      f:close()
    end
    local target = line and line:match("^gitdir:%s*(.-)%s*$")
    if target then
      dir = target:sub(1, 1) == "/" and target or (root .. "/" .. target)
    end
  end
  git_dirs[root] = dir
  return dir
end

--- True while a git operation holds the index of the work tree at root.
---@param root string
---@return boolean
function M.busy(root)
  local dir = M.git_dir(root)
  return dir and uv.fs_stat(dir .. "/index.lock") ~= nil or false
end

return M
