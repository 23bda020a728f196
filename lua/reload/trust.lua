--- Whose Lua files reload runs. A Reloadfile, and every module it requires, is code that
--- reload runs as you; it may be found in a parent directory (`/tmp/Reloadfile.lua` for a
--- project under /tmp). Like git's `safe.directory`, a file is refused unless it is owned by
--- you or by root and is not writable by every user, or its directory (or one above) is listed
--- in `$XDG_CONFIG_HOME/reload/trusted` (one absolute path a line; `*` trusts every file).
---
--- Root is treated like any user: as root, files owned by root are yours; a file owned by
--- another user (say `nobody`) is refused like any other.
local M = {}

local uv = require("luv")

--- The file listing trusted directories.
---@return string
function M.list_file()
  local xdg = os.getenv("XDG_CONFIG_HOME")
  if not xdg or xdg == "" then
    xdg = (os.getenv("HOME") or "") .. "/.config"
  end
  return xdg .. "/reload/trusted"
end

--- True when path is in (or below) a directory listed in the trusted file.
local function listed(path)
  local f = io.open(M.list_file(), "r")
  if not f then
    return false
  end
  for line in f:lines() do
    local dir = line:match("^%s*(.-)%s*$"):gsub("/+$", "")
    if line:match("^%s*%*%s*$") then
      f:close()
      return true
    end
    if dir ~= "" and dir:sub(1, 1) == "/" and path:sub(1, #dir + 1) == dir .. "/" then
      f:close()
      return true
    end
  end
  f:close()
  return false
end

--- "nobody (uid 65534)" from /etc/passwd, or "uid N".
local function user(uid)
  local f = io.open("/etc/passwd", "r")
  if f then
    for line in f:lines() do
      local name, id = line:match("^([^:]*):[^:]*:(%d+):")
      if tonumber(id) == uid then
        f:close()
        return ("%s (uid %d)"):format(name, uid)
      end
    end
    f:close()
  end
  return "uid " .. uid
end

--- Whether reload may run the Lua file at path.
---@param path string absolute
---@return true|nil ok
---@return string|nil why with how to allow it
function M.check(path)
  local st = uv.fs_stat(path)
  if not st then
    return true -- nothing to run; the caller says the file is missing
  end
  local me = uv.getuid()
  local problem
  if st.uid ~= me and st.uid ~= 0 then
    problem = ("it is owned by %s, not by you (%s) or root"):format(user(st.uid), user(me))
  elseif st.mode & 2 ~= 0 then
    problem = ("every user can write it (mode %03o)"):format(st.mode & 511)
  end
  if not problem or listed(path) then
    return true
  end
  local dir = path:match("^(.*)/[^/]*$")
  if dir == "" then
    dir = "/"
  end
  local list = M.list_file()
  return nil, ("refusing to run %s: %s, and reload would run its Lua code as you. If you " ..
    "trust it, add its directory to %s:\n    mkdir -p %s && echo %s >> %s"):format(path, problem,
    list, list:match("^(.*)/[^/]*$"), dir, list)
end

return M
