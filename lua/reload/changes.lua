--- The changed paths handed to a service's commands, in their environment and in a file.
---
--- Theory of operation. Each list of changed paths (a *set*) is written once, to a file of its
--- own, and stays until nobody holds it: the service holds its latest set, each generation of
--- its command the set it started with, until that generation's exit. So neither a newer change,
--- nor a Reloadfile reload (which replaces the service object), nor a quit removes a file that a
--- live command may still read. Every path of a command gets:
---
---   RELOAD_CHANGED_FILE  every path, each followed by a NUL byte (`xargs -0 < "$F"`): a name
---                        may hold any byte but NUL, a newline included
---   RELOAD_CHANGED       the first paths, one per line, at most `env_max_paths` and
---                        `env_max_bytes`, whole paths only; a name holding a newline is left out
---                        (it would read as two). Linux refuses one environment string over
---                        128 KiB (E2BIG: the command would not start); the file has them all.
---
--- Where: a directory of this reload process, `<base>/<pid>-XXXXXX` (mkdtemp), in the base
--- `$XDG_RUNTIME_DIR/reload`, else `${TMPDIR:-/tmp}/reload-<uid>`; a base is used only when it
--- is a directory (not a link) of this user that no one else may enter, else a mkdtemp directory
--- of its own stands in. Files are created O_EXCL|O_NOFOLLOW, mode 0600 (core.write_private).
--- The directory goes when the process ends normally (`close`, also run by a finalizer when the
--- Lua state closes); one left by a process that was killed is removed by the next reload that
--- creates its own in the same base.
local M = {}

local uv = require("luv")
local log = require("reload.log")

M.env_max_paths = 100
M.env_max_bytes = 32 * 1024

---@class reload.ChangeSet
---@field paths string[]
---@field file string|nil the file, nil when it could not be written
local Set = {}
Set.__index = Set

---@class reload.ChangePlace
local Place = {}
Place.__index = Place

local function is_ours(path)
  local st = uv.fs_lstat(path)
  return st and st.type == "directory" and st.uid == uv.getuid() and st.mode & 63 == 0
end

--- Removes a directory of this module: its files, then itself.
local function remove_dir(dir)
  local req = uv.fs_scandir(dir)
  while req do
    local name, kind = uv.fs_scandir_next(req)
    if not name then
      break
    end
    if kind ~= "directory" then
      uv.fs_unlink(dir .. "/" .. name)
    end
  end
  uv.fs_rmdir(dir)
end

--- Removes the directories in base of reload processes that are gone.
local function sweep(base)
  local req = uv.fs_scandir(base)
  local me = uv.os_getpid()
  while req do
    local name, kind = uv.fs_scandir_next(req)
    if not name then
      break
    end
    local pid = tonumber(name:match("^(%d+)%-%w+$"))
    if pid and kind == "directory" and pid ~= me and select(3, uv.kill(pid, 0)) == "ESRCH" then
      remove_dir(base .. "/" .. name)
    end
  end
end

--- A place for change files. opts: runtime_dir, tmp_dir (default: $XDG_RUNTIME_DIR, $TMPDIR or
--- /tmp). The directory is made on the first write.
---@param opts? { runtime_dir?: string, tmp_dir?: string }
---@return reload.ChangePlace
function M.place(opts)
  opts = opts or {}
  local runtime = opts.runtime_dir
  if runtime == nil then
    runtime = os.getenv("XDG_RUNTIME_DIR")
  end
  local tmp = opts.tmp_dir or os.getenv("TMPDIR") or "/tmp"
  return setmetatable({ runtime = runtime ~= "" and runtime or nil, tmp = tmp, seq = 0,
    sets = {} }, Place)
end

--- The directory of this process, made (and the base swept) on first use; nil and a message
--- when none can be made.
function Place:directory()
  if self.dir or self.failed then
    return self.dir, self.failed
  end
  local base
  if self.runtime and self.runtime:sub(1, 1) == "/" and is_ours(self.runtime) then
    base = self.runtime .. "/reload"
  else
    base = ("%s/reload-%d"):format(self.tmp, uv.getuid())
  end
  uv.fs_mkdir(base, tonumber("700", 8))
  local err
  if is_ours(base) then
    sweep(base)
    self.dir, err = uv.fs_mkdtemp(("%s/%d-XXXXXX"):format(base, uv.os_getpid()))
  else
    -- Someone else's (or a link): not a place to look for, nor to put, our files.
    self.dir, err = uv.fs_mkdtemp(self.tmp .. "/reload-XXXXXX")
  end
  if not self.dir then
    self.failed = tostring(err)
  end
  return self.dir, self.failed
end

--- Writes a new set for service `name` (held once, by the caller). A set that cannot be
--- written still exports RELOAD_CHANGED; its RELOAD_CHANGED_FILE is left out, with a warning.
---@param name string
---@param paths string[]
---@return reload.ChangeSet
function Place:write(name, paths)
  local set = setmetatable({ paths = paths, holds = 1, place = self }, Set)
  local dir, err = self:directory()
  if dir then
    self.seq = self.seq + 1
    local file = ("%s/%d-%s"):format(dir, self.seq, (name:gsub("[^%w_.-]", "_"):sub(1, 64)))
    local parts = {}
    for i, p in ipairs(paths) do
      parts[i] = p .. "\0"
    end
    local ok, werr = require("reload.core").write_private(file, table.concat(parts))
    if ok then
      set.file = file
      self.sets[set] = true
    else
      err = werr
    end
  end
  if not set.file and not self.warned then
    self.warned = true
    log.warn("cannot write the list of changed paths (RELOAD_CHANGED_FILE): %s", tostring(err))
  end
  return set
end

--- Removes every file and the directory (the process is ending). Plain os.remove: it also runs
--- from a finalizer while the Lua state closes, when luv's loop may be gone already.
function Place:close()
  for set in pairs(self.sets) do
    set.holds = 0
    os.remove(set.file)
  end
  self.sets = {}
  if self.dir then
    os.remove(self.dir)
    self.dir = nil
  end
end

--- One more holder; returns the set.
function Set:hold()
  self.holds = self.holds + 1
  return self
end

--- One holder less; the file goes with the last.
function Set:release()
  if self.holds <= 0 then
    return
  end
  self.holds = self.holds - 1
  if self.holds == 0 and self.file then
    uv.fs_unlink(self.file)
    self.place.sets[self] = nil
  end
end

--- Sets RELOAD_CHANGED and RELOAD_CHANGED_FILE in env (a name -> value table).
---@param env table<string, string>
function Set:export(env)
  local shown, bytes = {}, 0
  for _, p in ipairs(self.paths) do
    if #shown >= M.env_max_paths then
      break
    end
    if not p:find("\n", 1, true) then
      bytes = bytes + #p + (#shown > 0 and 1 or 0)
      if bytes > M.env_max_bytes then
        break
      end
      shown[#shown + 1] = p
    end
  end
  env.RELOAD_CHANGED = table.concat(shown, "\n")
  env.RELOAD_CHANGED_FILE = self.file
end

local default

--- The place of this process (from $XDG_RUNTIME_DIR and $TMPDIR), closed when the Lua state
--- closes.
---@return reload.ChangePlace
function M.default()
  if not default then
    default = M.place()
    M._finalizer = setmetatable({}, { __gc = function() default:close() end })
  end
  return default
end

return M
