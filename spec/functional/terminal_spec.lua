-- A terminal per service, through the real binary: each command's output goes through a
-- pseudo-terminal of its own (programs line-buffer and keep their colours, reload prefixes and,
-- with NO_COLOR or when its own output is not a terminal, strips the colours), `tty = false`
-- gives pipes, and `stdin = true` gives reload's terminal to one service, in its foreground.
local helpers = require("spec.helpers")
local uv = require("luv")

local function have(cmd)
  return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true
end

-- Python block-buffers into a pipe unless told otherwise: the environment must not tell it.
local function env(marker, extra)
  local vars = { RELOAD_TERM = marker, PYTHONUNBUFFERED = false, NO_COLOR = false }
  for k, v in pairs(extra or {}) do vars[k] = v end
  return helpers.env_with(vars)
end

local function start(dir, extra_env, args)
  local marker = helpers.unique("RELOAD_TERM")
  local proc = helpers.start_reload(args or {}, { cwd = dir, env = env(marker, extra_env) })
  return proc, "RELOAD_TERM=" .. marker
end

--- reload under `script`, so that its own stdout and stderr are a terminal.
local function start_on_tty(dir, extra_env)
  local marker = helpers.unique("RELOAD_TERM")
  local proc = helpers.start({ "script", "-qfec", helpers.reload_bin, "/dev/null" },
    { cwd = dir, env = env(marker, extra_env) })
  return proc, "RELOAD_TERM=" .. marker
end

local function stop(proc, marker)
  proc:signal("sigint")
  local code = proc:wait(20000)
  local left = helpers.tagged(marker)
  helpers.kill_all(left)
  assert.are.same({}, left, "processes left: " .. helpers.describe(left))
  return code
end

-- A Python program that says whether its stdout is a terminal, prints a line coloured only
-- then (as `ls --color=auto` and most tools do), without flushing, and stays.
local PY_TTY = [[python3 -c "
import os, sys, time
tty = os.isatty(1)
print('tty=%s err=%s' % (tty, os.isatty(2)))
print(('\033[31m' if tty else '') + 'red-word' + ('\033[0m' if tty else ''))
time.sleep(1000)
"]]

local function two_services(first)
  return ([[
service "one" { watch = "*.nothing", run = %q }
service "two" { watch = "*.nothing", run = "sleep 1000" }
]]):format(first)
end

describe("a terminal per service", function()
  it("a Python print without flush appears at once with two services", function()
    local dir = helpers.project({ ["Reloadfile.lua"] = two_services(
      [[python3 -c "import time; print('first-line'); time.sleep(1000)"]]) })
    local proc, marker = start(dir)
    proc:wait_output("one | first-line\n", 15000, true)
    assert.are.equal(0, stop(proc, marker), proc:text())
  end)

  it("the service's stdout and stderr are a terminal, its controlling one, 80x24 by default",
    function()
      local dir = helpers.project({ ["Reloadfile.lua"] = two_services([[python3 -c "
import os, time
fd = os.open('/dev/tty', os.O_RDWR)
print('tty', os.isatty(1), os.isatty(2), os.get_terminal_size(fd), os.tcgetpgrp(fd) == os.getpgrp())
time.sleep(1000)
"]]) })
      local proc, marker = start(dir)
      proc:wait_output("one | tty True True os.terminal_size(columns=80, lines=24) True\n",
        15000, true)
      assert.are.equal(0, stop(proc, marker), proc:text())
    end)

  it("colours pass through when reload's output is a terminal", function()
    if not have("script") then
      pending("script (util-linux) is not installed")
      return
    end
    local dir = helpers.project({ ["Reloadfile.lua"] = two_services(PY_TTY) })
    local proc, marker = start_on_tty(dir)
    proc:wait_output("red-word", 15000, true)
    local text = proc:text()
    assert.truthy(text:find("tty=True err=True", 1, true), text)
    assert.truthy(text:find("\27[31mred-word\27[0m", 1, true), text)
    -- logs carry plain newlines: the pty adds no "\r" (script's own terminal adds one)
    assert.is_nil(text:find("\r\r\n", 1, true), text)
    stop(proc, marker)
  end)

  it("colours are stripped with NO_COLOR, on a terminal too", function()
    if not have("script") then
      pending("script (util-linux) is not installed")
      return
    end
    local dir = helpers.project({ ["Reloadfile.lua"] = two_services(PY_TTY) })
    local proc, marker = start_on_tty(dir, { NO_COLOR = "1" })
    proc:wait_output("red-word", 15000, true)
    local text = proc:text()
    assert.truthy(text:find("tty=True err=True", 1, true), text)
    assert.truthy(text:find("one | red-word", 1, true), text)
    assert.is_nil(text:find("\27[31m", 1, true), text)
    stop(proc, marker)
  end)

  it("colours are stripped when reload's output is not a terminal", function()
    local dir = helpers.project({ ["Reloadfile.lua"] = two_services(PY_TTY) })
    local proc, marker = start(dir)
    proc:wait_output("one | red-word\n", 15000, true)
    local text = proc:text()
    assert.truthy(text:find("one | tty=True err=True\n", 1, true), text)
    assert.is_nil(text:find("\27", 1, true), text)
    assert.are.equal(0, stop(proc, marker), proc:text())
  end)

  it("one service alone is shown as it writes, on its terminal, unprefixed", function()
    local dir = helpers.project({ ["Reloadfile.lua"] = ([[
service "one" { watch = "*.nothing", run = %q }
]]):format(PY_TTY) })
    local proc, marker = start(dir)
    proc:wait_output("\nred-word\n", 15000, true)
    assert.truthy(proc:text():find("\ntty=True err=True\n", 1, true), proc:text())
    assert.are.equal(0, stop(proc, marker), proc:text())
  end)

  it("tty = false gives pipes (libuv's are socket pairs)", function()
    local dir = helpers.project({ ["Reloadfile.lua"] = ([[
service "one" { watch = "*.nothing", tty = false, run = %q }
service "two" { watch = "*.nothing", run = "sleep 1000" }
]]):format([[python3 -u -c "
import os, stat, time
m = os.fstat(1).st_mode
print('pipe', stat.S_ISFIFO(m) or stat.S_ISSOCK(m), os.isatty(1))
time.sleep(1000)
"]]) })
    local proc, marker = start(dir)
    proc:wait_output("one | pipe True False\n", 15000, true)
    assert.are.equal(0, stop(proc, marker), proc:text())
  end)

  it("a partial last line on the terminal is printed when the program exits", function()
    -- The last line has no newline: it reaches reload only as the pty's end (EIO on Linux).
    local dir = helpers.project({ ["Reloadfile.lua"] = two_services(
      [[python3 -c "import os, sys; sys.stdout.write('last-words tty=%s' % os.isatty(1))"]]) })
    local proc, marker = start(dir)
    proc:wait_output("one | last-words tty=True\n", 15000, true)
    proc:wait_output("one: exited with status 0", 15000, true)
    assert.are.equal(0, stop(proc, marker), proc:text())
  end)

  it("core.spawn{pty}: the whole tree stops, and its output ends before its exit", function()
    local core = require("reload.core")
    local tag = helpers.unique("RELOAD_TERM")
    local out, events = {}, {}
    local p = assert(core.spawn({
      cmd = "echo up; sleep 1000 & sleep 1000",
      pty = { cols = 80, rows = 24 },
      env = helpers.env_with({ RELOAD_TERM = tag }),
      on_stdout = function(chunk) out[#out + 1] = chunk or "<eof>" end,
      on_event = function(ev)
        events[#events + 1] = ev.type
        if ev.type == "exit" then out[#out + 1] = "<exit>" end
      end,
    }))
    helpers.wait_until(10000, function() return table.concat(out):find("up\n", 1, true) end,
      "up")
    p:stop()
    helpers.wait_until(15000, function() return events[#events] == "exit" end, "exit")
    assert.matches("up\n<eof><exit>$", table.concat(out))
    assert.are.same({}, helpers.tagged("RELOAD_TERM=" .. tag))
    -- Misuse raises: the pty is stdout and stderr both, and the command's only terminal.
    assert.has_error(function()
      core.spawn({ cmd = "true", pty = { cols = 80, rows = 24 }, stdout = "pipe" })
    end)
    assert.has_error(function()
      core.spawn({ cmd = "true", pty = { cols = 80, rows = 24 }, foreground = true })
    end)
    assert.has_error(function() core.spawn({ cmd = "true", pty = { cols = 0, rows = 24 } }) end)
  end)

  it("a second service with stdin = true is refused, with its line", function()
    local dir = helpers.project({ ["Reloadfile.lua"] = [[
service "a" { run = "cat", stdin = true }
service "b" {
  run = "cat",
  stdin = true,
}
]] })
    local code, out, err = helpers.reload({ "check" }, { cwd = dir })
    assert.are_not.equal(0, code)
    assert.matches("Reloadfile.lua:4: service \"b\": 'stdin' is already given to service \"a\"",
      out .. err)
  end)

  it("reload check refuses a tty that is not a boolean, with its line", function()
    local dir = helpers.project({ ["Reloadfile.lua"] = [[
service "a" {
  run = "cat",
  tty = "no",
}
]] })
    local code, out, err = helpers.reload({ "check" }, { cwd = dir })
    assert.are_not.equal(0, code)
    assert.matches("Reloadfile.lua:3:.*'tty' must be true or false", out .. err)
  end)
end)

describe("in tmux, as a user types", function()
  local socket
  local function tmux(...)
    local code, out, err = helpers.run({ "tmux", "-L", socket, ... })
    assert.are.equal(0, code, err)
    return out
  end
  local function screen()
    return tmux("capture-pane", "-p", "-t", "0", "-S", "-100")
  end
  local function wait_screen(text)
    helpers.retry(15000, function()
      local s = screen()
      return s:find(text, 1, true) ~= nil, ("%q on the screen; it shows:\n%s"):format(text, s)
    end)
  end
  local function state_of(pid_file)
    local pid = tonumber(helpers.read_file(pid_file) or "")
    local st = pid and helpers.proc_stat(pid)
    return st and st.state, pid or 0
  end

  after_each(function()
    if socket then
      helpers.run({ "tmux", "-L", socket, "kill-server" })
      socket = nil
    end
  end)

  it("a service's pty has reload's terminal size, and follows its changes", function()
    if not have("tmux") then
      pending("tmux is not installed (scripts/setup installs it)")
      return
    end
    local dir = helpers.project({ ["Reloadfile.lua"] = ([[
service "sized" { watch = "*.nothing", run = %q }
service "other" { watch = "*.nothing", run = "sleep 1000" }
]]):format([[python3 -c "
import os, signal, time
def show(*_):
    print('size=%dx%d' % tuple(os.get_terminal_size()), flush=True)
signal.signal(signal.SIGWINCH, show)
show()
while True: time.sleep(1000)
"]]) })
    local marker = helpers.unique("RELOAD_TERM")
    socket = "reload-spec-" .. helpers.unique()
    local cmd = ("exec env RELOAD_TERM=%s NO_COLOR=1 %s"):format(marker, helpers.reload_bin)
    tmux("new-session", "-d", "-x", "100", "-y", "30", "-c", dir, cmd)
    wait_screen("sized | size=100x30")
    tmux("resize-window", "-t", "0", "-x", "120", "-y", "40")
    wait_screen("sized | size=120x40")
    local reload_pid = tonumber((tmux("list-panes", "-t", "0", "-F", "#{pane_pid}"):match("%d+")))
    uv.kill(reload_pid, "sigint")
    helpers.retry(20000, function()
      return helpers.run({ "tmux", "-L", socket, "has-session" }) ~= 0, "reload to quit"
    end)
    local left = helpers.tagged("RELOAD_TERM=" .. marker)
    helpers.kill_all(left)
    assert.are.same({}, left, "processes left: " .. helpers.describe(left))
  end)

  it("the service reads the terminal in its foreground, again after a restart", function()
    if not have("tmux") then
      pending("tmux is not installed (scripts/setup installs it)")
      return
    end
    local dir = helpers.project({
      ["Reloadfile.lua"] = [[
service "asker" {
  watch = "*.txt",
  stdin = true,
  run = "echo $$ > pid.new && mv pid.new pid; echo asking-$(cat v.txt); read line; " ..
    "echo \"got:$line\"; exec sleep 1000",
}
]],
      ["v.txt"] = "1",
    })
    local marker = helpers.unique("RELOAD_TERM")
    socket = "reload-spec-" .. helpers.unique()
    local cmd = ("exec env RELOAD_TERM=%s NO_COLOR=1 %s"):format(marker, helpers.reload_bin)
    tmux("new-session", "-d", "-x", "100", "-y", "30", "-c", dir, cmd)
    wait_screen("asking-1")
    -- It waits in read(2) (S), not stopped by SIGTTIN (T).
    helpers.retry(10000, function()
      local st, pid = state_of(dir .. "/pid")
      return st == "S", ("pid %d in state %s"):format(pid, tostring(st))
    end)
    tmux("send-keys", "-t", "0", "hello", "Enter")
    wait_screen("got:hello")
    local first = tonumber(helpers.read_file(dir .. "/pid"))

    helpers.write_file(dir .. "/v.txt", "2")
    wait_screen("asking-2")
    helpers.retry(10000, function()
      local st, pid = state_of(dir .. "/pid")
      return pid ~= first and st == "S", ("pid %d in state %s"):format(pid, tostring(st))
    end)
    tmux("send-keys", "-t", "0", "again", "Enter")
    wait_screen("got:again")

    -- A SIGINT to reload (Ctrl-C would go to the service, which has the foreground) ends it,
    -- and it leaves nothing behind.
    local reload_pid = tonumber((tmux("list-panes", "-t", "0", "-F", "#{pane_pid}"):match("%d+")))
    uv.kill(reload_pid, "sigint")
    helpers.retry(20000, function() -- its pane, and so the tmux server, end with it
      return helpers.run({ "tmux", "-L", socket, "has-session" }) ~= 0, "reload to quit"
    end)
    local left = helpers.tagged("RELOAD_TERM=" .. marker)
    helpers.kill_all(left)
    assert.are.same({}, left, "processes left: " .. helpers.describe(left))
  end)
end)
