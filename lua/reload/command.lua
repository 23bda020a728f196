--- A command that could not start, said in words: which working directory is missing, which
--- program is not found (and where it was looked for) or cannot be executed. The core reports
--- only an errno ("ENOENT", and for a missing working directory the keeper's own path); the
--- service calls `explain` once a start failed, so a start that works costs nothing.
local M = {}

local uv = require("luv")

local function executable(path)
  local st = uv.fs_stat(path)
  return st and st.type ~= "directory" and uv.fs_access(path, "x") and true or false
end

--- Why argv could not start in cwd.
---@param argv string[]|nil the command (nil: a keeper without its command yet)
---@param cwd string absolute working directory
---@param err string|nil the core's error ("ENOENT: no such file or directory", ...)
---@param path? string the PATH the command gets (default: reload's)
---@return string
function M.explain(argv, cwd, err, path)
  local st = uv.fs_stat(cwd)
  if not st then
    return ("the working directory %s does not exist"):format(cwd)
  elseif st.type ~= "directory" then
    return ("the working directory %s is not a directory"):format(cwd)
  end
  local prog = argv and argv[1]
  if not prog then
    return tostring(err)
  end
  if prog:find("/", 1, true) then
    local full = prog:sub(1, 1) == "/" and prog or (cwd .. "/" .. prog)
    local pst = uv.fs_stat(full)
    if not pst then
      return ("%s: no such file (looked in %s)"):format(prog, cwd)
    elseif pst.type == "directory" then
      return ("%s: is a directory"):format(prog)
    elseif not uv.fs_access(full, "x") then
      return ("%s: not executable (chmod +x %s)"):format(prog, prog)
    end
  else
    path = path or os.getenv("PATH") or ""
    local found = false
    for dir in path:gmatch("[^:]+") do
      if executable(dir .. "/" .. prog) then
        found = true
        break
      end
    end
    if not found then
      return ("%s: program not found in PATH"):format(prog)
    end
  end
  return ("%s: %s"):format(prog, tostring(err))
end

return M
