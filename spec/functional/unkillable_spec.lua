-- Processes that reload has no right to stop: a command (run by an ordinary user) starts a
-- set-user-ID root program, as sudo or a setuid helper would. kill() answers EPERM for it, so
-- no restart can end it. reload must say so, name it, never claim a clean stop, and its keeper
-- must give up once the stop is over rather than retry forever (also once reload is gone).
--
-- Real privileges: the suite runs as root; reload runs as `nobody` through setpriv, and the
-- fixture is a root-owned set-user-ID copy of spec/fixtures/setuid_sleeper.c in the test's
-- directory. Every survivor is killed by the test, as root.
local helpers = require("spec.helpers")
local uv = require("luv")

local GRACE_S = 1

--- Why this machine cannot run these tests, or nil.
---@param dir string the test's directory
---@param install table helpers.install_for_others()
local function unsupported(dir, install)
  if uv.getuid() ~= 0 then
    return "needs root: the test runs reload as nobody and a set-user-ID root fixture"
  end
  local passwd = helpers.read_file("/etc/passwd") or ""
  if not passwd:find("\nnobody:", 1, true) and not passwd:find("^nobody:") then
    return "no user nobody in /etc/passwd"
  end
  if helpers.run({ "sh", "-c", "command -v setpriv" }) ~= 0 then
    return "setpriv (util-linux) is not installed"
  end
  local status = helpers.read_file("/proc/self/status") or ""
  if status:match("NoNewPrivs:%s*1") then
    return "this process has no_new_privs set: a set-user-ID program would not gain root"
  end
  local code, opts = helpers.run({ "findmnt", "-n", "-o", "OPTIONS", "-T", dir })
  if code ~= 0 then
    return "findmnt cannot tell how " .. dir .. " is mounted"
  end
  if opts:find("nosuid", 1, true) then
    return dir .. " is on a nosuid mount: a set-user-ID program would not gain root"
  end
  -- nobody must reach the test's directory, and the copy of reload it runs
  for _, path in ipairs({ dir, install.bin, install.keeper }) do
    local closed = helpers.closed_to_others(path)
    if closed then
      return closed .. " cannot be searched by other users (nobody cannot reach " .. path .. ")"
    end
  end
  return nil
end

--- A project whose service starts the set-user-ID fixture in the background, then sleeps.
--- Returns the directory and a copy of reload that nobody can run (the checkout may be closed
--- to other users), or nil and why the test cannot run here.
local function project()
  local dir = helpers.tmpdir()
  assert(uv.fs_chmod(dir, tonumber("755", 8)))
  local install, closed = helpers.install_for_others()
  if not install then
    return nil, closed
  end
  local why = unsupported(dir, install)
  if why then
    return nil, why
  end
  local sleeper = dir .. "/setuid_sleeper"
  assert(uv.fs_copyfile(helpers.fixture("setuid_sleeper"), sleeper))
  assert(uv.fs_chmod(sleeper, tonumber("4755", 8)))
  helpers.write_file(dir .. "/a.txt", "1")
  helpers.write_file(dir .. "/Reloadfile.lua", ([[
service "s" {
  watch = "*.txt",
  run = "%s survivor.pid & exec sleep 1000",
  stop = { grace = %d },
}
]]):format(sleeper, GRACE_S))
  return dir, install
end

--- Starts reload (the copy install.bin) as nobody in dir.
local function start(dir, install)
  local marker = helpers.unique("RELOAD_UK")
  local proc = helpers.start({ "setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
    install.bin }, { cwd = dir, env = helpers.env_with({ RELOAD_UK = marker,
    NO_COLOR = "1", HOME = "/nonexistent", XDG_CONFIG_HOME = false, XDG_RUNTIME_DIR = false,
    TMPDIR = "/tmp" }) })
  return proc, "RELOAD_UK=" .. marker
end

--- The pid the fixture wrote once it runs as root, different from `previous`.
local function survivor_pid(dir, proc, previous)
  local pid = helpers.retry(15000, function()
    local pid = tonumber((helpers.read_file(dir .. "/survivor.pid") or ""):match("%d+"))
    return pid ~= previous and pid, "the fixture's pid file; reload said:\n" .. proc:text()
  end)
  local status = assert(helpers.read_file("/proc/" .. pid .. "/status"), "no process " .. pid)
  assert.matches("\nUid:%s+0%s+0%s+0", status)
  return pid
end

--- The keeper above the fixture: the fixture's parent is the command (sh, then sleep), whose
--- parent is its keeper.
local function keeper_of(pid)
  local sh = assert(helpers.proc_stat(pid)).ppid
  local keeper = assert(helpers.proc_stat(sh), "the fixture's parent is gone")
  assert.are.equal("reload-keeper", assert(helpers.proc_stat(keeper.ppid)).comm)
  return keeper.ppid
end

--- Has pid exited (gone, or a zombie that nobody reaped yet)?
local function exited(pid)
  local st = helpers.proc_stat(pid)
  return st == nil or st.state == "Z" or st.state == "X"
end

local function kill_root(pid)
  if pid then
    uv.kill(pid, "sigkill")
    helpers.wait_until(5000, function() return exited(pid) end, "the end of pid " .. pid)
  end
end

--- Ends the test's processes: the set-user-ID ones first (they hold reload's output pipes),
--- then reload. Returns what was still alive besides the survivors the test knew of.
local function cleanup(proc, marker, known)
  for _, st in ipairs(helpers.tagged(marker)) do
    if st.comm == "setuid_sleeper" then
      kill_root(st.pid)
    end
  end
  for _, pid in pairs(known) do
    kill_root(pid)
  end
  proc:kill()
  local left = helpers.tagged(marker)
  helpers.kill_all(left)
  return left
end

--- The project, and reload started in it as nobody; nil (the test pending, with why) when this
--- machine cannot run it.
local function begin()
  local dir, install = project()
  if not dir then
    pending(install)
    return nil
  end
  return dir, start(dir, install)
end

describe("a process that reload has no right to stop", function()
  it("is named at a restart and at quit, and no clean stop is claimed", function()
    local dir, proc, marker = begin()
    if not dir then
      return
    end
    local first, second
    local ok, err = pcall(function()
      first = survivor_pid(dir, proc)
      proc:wait_output("s: started in")
      local keeper = keeper_of(first)
      helpers.write_file(dir .. "/a.txt", "2")
      proc:wait_output(("s: cannot stop pid %d (uid 0, 'setuid_sleeper'): not permitted; it " ..
        "keeps running"):format(first), 15000, true)
      -- The keeper gave up once the grace was over, instead of retrying (or being killed by
      -- reload's watchdog, grace + 2 s).
      helpers.wait_until(15000, function() return exited(keeper) end, "the first keeper's exit")
      proc:wait_output("restarted in [%d.]+ m?s %(pid %d+%) after a%.txt changed; .*; 1 " ..
        "process of the previous run could not be stopped and still runs")
      second = survivor_pid(dir, proc, first)
      assert.is_falsy(exited(first), "the survivor named still runs")
      kill_root(first)
      first = nil
      proc:signal("sigint")
      proc:wait_output(("stopped; 1 process that reload could not stop still runs: pid %d " ..
        "('setuid_sleeper'); bye"):format(second), 15000, true)
      local text = proc:text()
      assert.is_nil(text:find("stopped with SIGKILL", 1, true), text)
      assert.is_nil(text:find("every process tree is gone", 1, true), text)
    end)
    local left = cleanup(proc, marker, { first, second })
    assert(ok, err)
    assert.are.same({}, left, "processes left: " .. helpers.describe(left))
  end)

  it("once reload is SIGKILLed, its keeper gives up after the grace and exits", function()
    local dir, proc, marker = begin()
    if not dir then
      return
    end
    local pid
    local ok, err = pcall(function()
      pid = survivor_pid(dir, proc)
      local keeper = keeper_of(pid)
      uv.kill(proc.pid, "sigkill")
      -- Orphaned, the keeper stops the tree with its orphan grace (1 s), then gives up: before
      -- this change it swept the survivor every millisecond, forever.
      helpers.wait_until(15000, function() return exited(keeper) end,
        "the orphaned keeper's exit")
      -- It names the survivor on its stderr, which is the command's terminal: with reload gone,
      -- nobody reads that pseudo-terminal any more; the survivor's life is what can be checked.
      assert.is_falsy(exited(pid), "the survivor still runs: the keeper gave up on it")
    end)
    local left = cleanup(proc, marker, { pid })
    assert(ok, err)
    assert.are.same({}, left, "processes left: " .. helpers.describe(left))
  end)
end)
