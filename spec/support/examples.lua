--- Running the examples/ projects under the real `reload` with the real tools, as a user would:
--- a copy of the example, reload started in it, edits, and what each edit must show (the new
--- text answers, one process of each kind, one restart per edit, none without an edit, no
--- process of the run left after quitting).
local helpers = require("spec.helpers")
local assert = require("luassert")

local M = {}

--- True when the command is on PATH.
---@param cmd string
---@return boolean
function M.have(cmd)
  return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true
end

--- Debian's python3 (PATH may name another one first, e.g. pyenv's).
M.python = "/usr/bin/python3"

--- True when Debian's python3 imports every module named.
function M.python_has(...)
  if not M.have(M.python) then
    return false
  end
  return helpers.run({ M.python, "-c", "import " .. table.concat({ ... }, ", ") }) == 0
end

--- PATH with /usr/bin first: the examples' python3 is Debian's, with its packages.
function M.debian_path()
  return "/usr/bin:" .. (os.getenv("PATH") or "/bin")
end

--- Copies examples/NAME into a temporary directory; returns its path.
---@param name string
---@return string
function M.copy(name)
  local dir = helpers.tmpdir() .. "/" .. name
  assert(os.execute(("cp -r %s %s"):format(helpers.shell_quote(helpers.root .. "/examples/" ..
    name), helpers.shell_quote(dir))))
  return dir
end

--- Runs a copied Go example's Delve without Delve's same-user check. With --continue, Delve
--- connects to itself and looks that connection up in /proc/net/tcp, where a table that is
--- large (sl >= 10000 is not parsed) or changing as it is read (connections closing, TIME_WAIT
--- entries expiring: the load tests of this suite or of another on the machine) can miss it:
--- Delve then refuses itself and the program stays stopped before main (docs/recipes.md). The
--- shipped examples keep the check; the specs are about restarts, not Delve's access check.
---@param dir string the copy
function M.delve_any_user(dir)
  local path = dir .. "/Reloadfile.lua"
  local text = assert(helpers.read_file(path))
  local from = '{ listen = os.getenv("DLV_LISTEN") or "127.0.0.1:2345" }'
  local at = text:find(from, 1, true)
  assert(at, "no Delve options to patch in " .. path)
  helpers.write_file(path, text:sub(1, at - 1) ..
    '{ listen = os.getenv("DLV_LISTEN") or "127.0.0.1:2345", only_same_user = false }' ..
    text:sub(at + #from))
end

--- Starts reload (args) in dir with env added; returns the process and the marker that every
--- process of this run carries in its environment.
function M.start(dir, args, env)
  local marker = helpers.unique("RELOAD_EX")
  env = env or {}
  env.RELOAD_EX = marker
  env.NO_COLOR = "1"
  local proc = helpers.start_reload(args or {}, { cwd = dir, env = helpers.env_with(env) })
  return proc, "RELOAD_EX=" .. marker
end

--- Quits reload with Ctrl-C; it must exit 0 and leave no process of the run.
M.stop = helpers.end_session

--- GET path (default /) from 127.0.0.1:port: the body, or nil and what went wrong.
M.get = helpers.http_get

--- Waits until GET path on port answers with a body containing `expected`.
function M.answers(port, expected, max_ms, proc, path)
  helpers.retry(max_ms or 20000, function()
    local body, err = M.get(port, path)
    return body and body:find(expected, 1, true) ~= nil,
      ("port %d%s answered %s\nreload said:\n%s"):format(port, path or "/",
        tostring(body or err), proc and proc:text():sub(-3000) or "")
  end)
end

--- Live processes of this run whose command name is comm.
function M.alive(marker, comm)
  local found = {}
  for _, st in ipairs(helpers.tagged(marker)) do
    if st.comm == comm then
      found[#found + 1] = st.pid
    end
  end
  return found
end

--- How many times reload said a service restarted.
function M.restarts(proc)
  local _, n = proc:text():gsub("restarted in ", "")
  return n
end

--- Lets `ms` of real time pass and checks that nothing restarted meanwhile: no restart happens
--- without an edit (a tool that writes into the tree at start or while it runs would show here).
function M.quiet(proc, ms, why)
  local before = M.restarts(proc)
  helpers.pump(ms)
  assert.are.equal(before, M.restarts(proc), ("a restart without an edit (%s):\n%s"):format(why,
    proc:text():sub(-4000)))
end

---@class spec.EditLoop
---@field proc spec.Proc
---@field marker string
---@field dir string
---@field file string the file edited, relative to dir
---@field from string a Lua pattern: the text each edit replaces with "edit number N"
---@field port integer
---@field path? string the URL path that shows the text (default /)
---@field n integer edits
---@field comms? table<string, integer> live processes expected of each command name
---@field restart? boolean false: the edits are served without a restart (a dev server's own)
---@field after_each? fun(i: integer) more checks after each edit
---@field max_ms? integer per edit (default 30 s)
---@field gap_ms? integer real time between an answer and the next edit (default none)

--- Edits `file` n times; after each, the new text answers and each listed comm has exactly its
--- number of live processes (no process of an earlier generation lives on); one restart per
--- edit, no more (or none, with restart = false). Then a quiet spell: no restart without an edit.
---@param t spec.EditLoop
function M.edit_loop(t)
  local path = t.dir .. "/" .. t.file
  local original = helpers.read_file(path)
  local base = M.restarts(t.proc)
  for i = 1, t.n do
    if t.gap_ms and i > 1 then
      helpers.pump(t.gap_ms)
    end
    local text = ("edit number %d"):format(i)
    helpers.write_file(path, (original:gsub(t.from, text)))
    M.answers(t.port, text, t.max_ms or 30000, t.proc, t.path)
    local want = base + (t.restart == false and 0 or i)
    helpers.retry(5000, function()
      return M.restarts(t.proc) == want, ("%d restarts after %d edits:\n%s"):format(
        M.restarts(t.proc) - base, i, t.proc:text():sub(-3000))
    end)
    for comm, count in pairs(t.comms or {}) do
      helpers.retry(5000, function()
        local p = M.alive(t.marker, comm)
        return #p == count, ("%d processes named %s (want %d): %s"):format(#p, comm, count,
          table.concat(p, " "))
      end)
    end
    if t.after_each then
      t.after_each(i)
    end
  end
  M.quiet(t.proc, 2500, "after the last edit")
  assert.are.equal(base + (t.restart == false and 0 or t.n), M.restarts(t.proc), t.proc:text())
  assert.is_nil(t.proc:text():find("address already in use", 1, true), t.proc:text())
  assert.is_nil(t.proc:text():find("EADDRINUSE", 1, true), t.proc:text())
end

return M
