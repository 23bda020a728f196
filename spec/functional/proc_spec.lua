-- Whole-tree process control (issue 3): core.spawn and its keeper against real process trees
-- that try to escape (notes/process-tree.md §12). Every tree carries a unique marker in its
-- environment; "no survivor" means no live process carries it. Survivors are counted inside
-- the "exit" callback, and the port is probed right after the loop returns from it: no sleep.
local helpers = require("spec.helpers")
local uv = require("luv")
local core = require("reload.core")

local treegen = helpers.fixture("treegen")

--- The environment of this process plus `extra` entries, as a "K=V" list.
local function env_with(...)
  local env = {}
  for k, v in pairs(uv.os_environ()) do
    env[#env + 1] = k .. "=" .. v
  end
  for _, e in ipairs({ ... }) do
    env[#env + 1] = e
  end
  return env
end

--- Names in a directory, sorted.
local function listdir(path)
  local names = {}
  local req = uv.fs_scandir(path)
  while req do
    local name = uv.fs_scandir_next(req)
    if not name then break end
    names[#names + 1] = name
  end
  table.sort(names)
  return names
end

local runs = {}

--- Spawns a tree with a fresh marker; records its events, and its survivors at "exit".
local function start(opts, ...)
  local run = { events = {}, marker = "RELOAD_PROC_TAG=" .. helpers.unique("tree") }
  opts.env = opts.env or env_with(run.marker, ...)
  opts.on_event = function(ev)
    run.events[#run.events + 1] = ev
    if run.hook then
      run.hook(ev)
    end
    if ev.type == "exit" then
      run.survivors = helpers.tagged(run.marker)
      run.exit = ev
    end
  end
  local p, err = core.spawn(opts)
  assert(p, err)
  run.p = p
  runs[#runs + 1] = run
  return run
end

local function event_types(run)
  local t = {}
  for _, ev in ipairs(run.events) do
    t[#t + 1] = ev.type
  end
  return table.concat(t, ",")
end

local function wait_event(run, type, max_ms)
  helpers.wait_until(max_ms or 10000, function()
    for _, ev in ipairs(run.events) do
      if ev.type == type then
        return true
      end
    end
    return false
  end, function()
    return ("event %q; events so far: %s"):format(type, event_types(run))
  end)
end

local function wait_exit(run, max_ms)
  helpers.wait_until(max_ms or 10000, function() return run.exit ~= nil end, function()
    return ("the exit event; events so far: %s; tree: %s"):format(event_types(run),
      helpers.describe(helpers.tagged(run.marker)))
  end)
  return run.exit
end

--- Waits until the port listens and, with a run, until "started" has arrived too: on a busy
--- machine the tree can bind before the keeper gets to report the start.
local function wait_listening(port, run)
  helpers.wait_until(10000, function() return helpers.port_listening(port) end, function()
    return ("port %d to listen; events: %s; processes:\n%s"):format(port,
      run and event_types(run) or "", helpers.process_tree())
  end)
  if run then
    wait_event(run, "started")
  end
end

--- Waits until the tree of `treegen hopper` has forked a hundred times (pids given out since
--- its start, which wrap at pid_max).
local function wait_hopping(run)
  local pid_max = tonumber(helpers.read_file("/proc/sys/kernel/pid_max"))
  local first, last = run.p:pid(), nil
  helpers.wait_until(5000, function()
    last = tonumber(helpers.read_file("/proc/sys/kernel/ns_last_pid"))
    return (last - first) % pid_max > 100
  end, function() return ("a hundred forks (pid %d, last pid %s)"):format(first, last) end)
end

--- Asserts, as soon as "exit" has arrived, that nothing of the tree is left and the ports are
--- free.
local function assert_clean(run, ports)
  assert.are.equal(0, #run.survivors, "survivors at exit: " .. helpers.describe(run.survivors))
  for _, port in ipairs(ports or {}) do
    local ok, err = helpers.port_bindable(port)
    assert.is_true(ok, ("port %d still bound at exit: %s"):format(port, tostring(err)))
  end
end

local function count_type(run, type)
  local n = 0
  for _, ev in ipairs(run.events) do
    n = n + (ev.type == type and 1 or 0)
  end
  return n
end

after_each(function()
  -- A failed test must not leave a tree (and live core refs) to the next one.
  for _, run in ipairs(runs) do
    if not run.exit then
      run.p:kill()
      pcall(wait_exit, run, 5000)
    end
  end
  runs = {}
end)

describe("core.spawn stops the whole tree", function()
  it("of a three-level chain of real shells: sh -> sh -> server", function()
    local port = helpers.free_port()
    local inner = ("sh -c %s; true"):format(helpers.shell_quote(treegen .. " server " .. port
      .. "; true"))
    local run = start({ cmd = inner, grace_ms = 300 })
    wait_listening(port, run)
    local list = run.p:descendants()
    assert.are.equal(3, #list, helpers.describe(list))
    assert.are.same({ "sh", "sh", "treegen" }, { list[1].comm, list[2].comm, list[3].comm })
    assert.are.equal(run.p:keeper_pid(), list[1].ppid)
    assert.are.equal(list[1].pid, list[2].ppid)
    assert.are.equal(list[2].pid, list[3].ppid)
    assert.are.equal(run.p:pid(), list[1].pid)
    assert.are.equal(run.p:pgid(), list[3].pgid)
    run.p:stop()
    local ev = wait_exit(run)
    assert_clean(run, { port })
    assert.is_false(ev.forced)
    assert.is_false(ev.fallback)
    assert.is_number(ev.duration_ms)
    assert.are.equal("started,stopping,main-exit,tree-empty,exit", event_types(run))
    assert.are.equal("exited", run.p:status())
  end)

  for _, case in ipairs({
    { mode = "chain3" },
    { mode = "setsid", what = "a grandchild that calls setsid" },
    { mode = "daemon", what = "a double-fork daemon whose top process stays" },
    { mode = "daemon_exit", what = "a double-fork daemon whose top process already exited" },
    { mode = "threadfork_setsid", what = "a child forked by a non-main thread that setsid()s" },
    { mode = "setsid", scan = true, what = "setsid, found by the /proc/*/stat scan fallback" },
    { mode = "daemon_exit", scan = true, what = "daemon_exit, found by the scan fallback" },
  }) do
    it("of " .. (case.what or case.mode), function()
      local port = helpers.free_port()
      -- A long grace: on a busy machine a cooperative tree must still end politely.
      local run = start({ cmd = { treegen, case.mode, tostring(port) }, grace_ms = 3000 },
        case.scan and "RELOAD_KEEPER_ENUM=scan" or nil)
      wait_listening(port, run)
      if case.mode == "daemon_exit" then
        -- wait-tree (the default): the run goes on while the daemon lives.
        wait_event(run, "main-exit")
        assert.are.equal(0, run.events[2].code)
        assert.are.equal("main-exited", run.p:status())
        assert.is_true(#run.p:descendants() >= 1)
      else
        local env = helpers.read_file("/proc/" .. run.p:pid() .. "/environ")
        assert.is_nil(env:find("RELOAD_KEEPER_", 1, true), "a keeper hook reached the command")
        assert.is_truthy(env:find("RELOAD_RUN=", 1, true))
      end
      run.p:stop()
      local ev = wait_exit(run)
      assert_clean(run, { port })
      assert.is_false(ev.forced)
      assert.is_true(ev.duration_ms < 1000, "duration " .. ev.duration_ms)
    end)
  end

  it("that ignores SIGTERM: SIGKILL after the grace period", function()
    local port = helpers.free_port()
    local grace = 300
    local run = start({ cmd = { treegen, "ignterm", tostring(port) }, grace_ms = grace })
    wait_listening(port, run)
    run.p:stop()
    local ev = wait_exit(run)
    assert_clean(run, { port })
    assert.is_true(ev.forced)
    assert.is_true(ev.duration_ms >= grace and ev.duration_ms < grace + 2000,
      "duration " .. ev.duration_ms)
    assert.are.equal("started,stopping,forcing,main-exit,tree-empty,exit", event_types(run))
  end)

  it("that keeps forking while it is stopped", function()
    local port = helpers.free_port()
    local run = start({ cmd = { treegen, "forkloop", tostring(port) }, grace_ms = 300 })
    wait_listening(port, run)
    -- Stop it while it forks at full speed.
    helpers.wait_until(5000, function() return #run.p:descendants() > 10 end, function()
      return "a dozen forks: " .. helpers.describe(run.p:descendants())
    end)
    run.p:stop()
    wait_exit(run)
    assert_clean(run, { port })
  end)

  for _, case in ipairs({ { how = "stop" }, { how = "kill" }, { how = "stop", scan = true },
    { how = "kill", scan = true } }) do
    local how = case.how
    it(("of a line of processes forking and exiting at full speed (%s%s)"):format(how,
      case.scan and ", found by the scan fallback" or ""), function()
      local port = helpers.free_port()
      local run = start({ cmd = { treegen, "hopper", tostring(port) }, grace_ms = 300 },
        case.scan and "RELOAD_KEEPER_ENUM=scan" or nil)
      wait_listening(port, run)
      wait_hopping(run)
      run.p[how](run.p)
      local ev = wait_exit(run)
      assert_clean(run, { port })
      assert.is_false(ev.fallback)
    end)
  end

  it("with stopped processes: their SIGTERM handlers still run (SIGCONT)", function()
    local port = helpers.free_port()
    local dir = helpers.tmpdir()
    local run = start({ cmd = { treegen, "stopped", tostring(port), dir }, grace_ms = 3000 })
    wait_listening(port, run)
    helpers.wait_until(5000, function()
      local stopped = 0
      for _, d in ipairs(run.p:descendants()) do
        local st = helpers.proc_stat(d.pid)
        stopped = stopped + ((st and st.state == "T") and 1 or 0)
      end
      return stopped == 2
    end, function() return "two stopped processes: " .. helpers.describe(run.p:descendants()) end)
    run.p:stop()
    local ev = wait_exit(run)
    assert_clean(run, { port })
    assert.is_false(ev.forced)
    local ran = listdir(dir)
    assert.are.equal(3, #ran, "TERM handlers that ran: " .. table.concat(ran, " "))
  end)

  it("at once with kill(), and tears down after the main exits with kill-tree", function()
    local port = helpers.free_port()
    local run = start({ cmd = { treegen, "setsid", tostring(port) }, grace_ms = 3000 })
    wait_listening(port, run)
    run.p:kill()
    local ev = wait_exit(run)
    assert_clean(run, { port })
    assert.is_true(ev.forced)
    assert.are.equal(9, ev.signal)

    port = helpers.free_port()
    run = start({ cmd = { treegen, "daemon_exit", tostring(port) }, grace_ms = 300,
      on_main_exit = "kill-tree" })
    ev = wait_exit(run)
    assert_clean(run, { port })
    assert.are.equal(0, ev.code)
    assert.is_number(ev.duration_ms)
  end)

  it("when the keeper itself is SIGKILLed: reload's fallback sweep", function()
    local port = helpers.free_port()
    local run = start({ cmd = { treegen, "setsid", tostring(port) }, grace_ms = 300 })
    wait_listening(port, run)
    uv.kill(run.p:keeper_pid(), "sigkill")
    local ev = wait_exit(run)
    assert_clean(run, { port })
    assert.is_true(ev.fallback)
    assert.is_true(ev.forced)
  end)

  it("when the keeper is SIGKILLed with a line of processes forking and exiting at full speed",
    function()
      -- A scan of /proc alone misses such a "hopper" now and then: it reads as a zombie, and its
      -- child comes after the scan passed. The sweep checks the pids given out since it began.
      for _ = 1, 3 do
        local port = helpers.free_port()
        local run = start({ cmd = { treegen, "hopper", tostring(port) }, grace_ms = 300 })
        wait_listening(port, run)
        wait_hopping(run)
        uv.kill(run.p:keeper_pid(), "sigkill")
        local ev = wait_exit(run)
        assert_clean(run, { port })
        assert.is_true(ev.fallback)
      end
    end)

  it("when a process is closed while running", function()
    local run = start({ cmd = { treegen, "sleep" } })
    wait_event(run, "started")
    run.p:close()
    run.p:close()
    wait_exit(run)
    assert_clean(run)
  end)
end)

describe("when the API caller is SIGKILLed", function()
  local script = [[
    local uv = require("luv")
    local core = require("reload.core")
    local treegen, port, marker, hold = arg[1], arg[2], arg[3], arg[4] == "hold"
    local env = {}
    for k, v in pairs(uv.os_environ()) do env[#env + 1] = k .. "=" .. v end
    env[#env + 1] = marker
    core.spawn{ cmd = { treegen, "setsid", port }, env = env, grace_ms = 300, hold = hold,
      stdout = "null", stderr = "null",
      on_event = function(ev)
        if ev.type == "started" or ev.type == "held" then
          io.stdout:write(ev.type, "\n"); io.stdout:flush()
        end
      end }
  ]]

  local function caller_killed(...)
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/caller.lua", script)
    local port = helpers.free_port()
    local marker = "RELOAD_PROC_TAG=" .. helpers.unique("orphan")
    local caller = helpers.start_reload({ "script", dir .. "/caller.lua", treegen,
      tostring(port), marker }, { env = env_with(...) })
    caller:wait_output("started")
    wait_listening(port)
    assert.is_true(#helpers.tagged(marker) >= 4, "keeper, P0, P1, P2")
    caller:signal("sigkill")
    caller:wait()
    return port, marker
  end

  local function assert_gone(port, marker)
    helpers.retry(10000, function()
      local left = helpers.tagged(marker)
      return #left == 0, "survivors: " .. helpers.describe(left)
    end)
    assert.is_true((helpers.port_bindable(port)))
  end

  it("the keeper's parent-death signal alone tears the tree down", function()
    assert_gone(caller_killed("RELOAD_KEEPER_NO_EOF=1"))
  end)

  it("EOF on the control socket alone tears the tree down", function()
    assert_gone(caller_killed("RELOAD_KEEPER_NO_PDEATHSIG=1"))
  end)

  --- A caller that spawned a held keeper (no command started) and is then SIGKILLed.
  local function held_caller_killed(...)
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/caller.lua", script)
    local marker = "RELOAD_PROC_TAG=" .. helpers.unique("held")
    local caller = helpers.start_reload({ "script", dir .. "/caller.lua", treegen,
      tostring(helpers.free_port()), marker, "hold" }, { env = env_with(...) })
    caller:wait_output("held")
    assert.are.equal(1, #helpers.tagged(marker), "the keeper alone")
    caller:signal("sigkill")
    caller:wait()
    return marker
  end

  for _, case in ipairs({ { "parent-death signal", "RELOAD_KEEPER_NO_EOF=1" },
    { "EOF on the control socket", "RELOAD_KEEPER_NO_PDEATHSIG=1" } }) do
    it("a held keeper goes too, by its " .. case[1] .. " alone", function()
      local marker = held_caller_killed(case[2])
      helpers.retry(10000, function()
        local left = helpers.tagged(marker)
        return #left == 0, "left: " .. helpers.describe(left)
      end)
    end)
  end

  it("with both paths disabled the tree is left (so each test above proves its path)", function()
    local port, marker = caller_killed("RELOAD_KEEPER_NO_EOF=1",
      "RELOAD_KEEPER_NO_PDEATHSIG=1")
    -- No waiting for a while: wait until the keeper has read the EOF (its control socket is
    -- closed) and is asleep again. Had it begun a teardown, it would have signalled the tree
    -- before sleeping, and a signal sent stays visible as pending until the process is gone.
    local keeper = helpers.retry(5000, function()
      for _, st in ipairs(helpers.tagged(marker)) do
        local cmd = helpers.read_file("/proc/" .. st.pid .. "/cmdline") or ""
        if cmd:find("--keeper-v1", 1, true) then return st.pid end
      end
      return nil, "no keeper in " .. helpers.describe(helpers.tagged(marker))
    end)
    helpers.retry(5000, function()
      local req = uv.fs_scandir("/proc/" .. keeper .. "/fd")
      while req do
        local name = uv.fs_scandir_next(req)
        if not name then break end
        local target = uv.fs_readlink("/proc/" .. keeper .. "/fd/" .. name) or ""
        if target:match("^socket:") then return false, "fd " .. name .. " is still " .. target end
      end
      local st = helpers.proc_stat(keeper)
      return st and st.state == "S", "keeper state " .. (st and st.state or "gone")
    end)
    local left = helpers.tagged(marker)
    local pending_signals = {}
    for _, st in ipairs(left) do
      local status = helpers.read_file("/proc/" .. st.pid .. "/status") or ""
      for field, mask in status:gmatch("(%a+Pnd):%s*(%x+)") do
        if tonumber(mask, 16) ~= 0 then
          pending_signals[#pending_signals + 1] = st.pid .. " " .. field .. " " .. mask
        end
      end
    end
    helpers.kill_all(left)
    assert.is_true(#left >= 4, "keeper, P0, P1, P2: " .. helpers.describe(left))
    assert.are.same({}, pending_signals)
    helpers.retry(10000, function() return #helpers.tagged(marker) == 0 end)
    helpers.retry(10000, function() return helpers.port_bindable(port) end)
  end)
end)

describe("a Lua state closed while a run is active", function()
  it("does not crash stock lua5.4 (luv's loop __gc), and the tree goes", function()
    local dir = helpers.tmpdir()
    local port = helpers.free_port()
    local marker = "RELOAD_PROC_TAG=" .. helpers.unique("close")
    helpers.write_file(dir .. "/closing.lua", ([[
      package.cpath = %q .. "/lib/?.so;" .. package.cpath
      local uv = require("luv")
      local core = require("reload.core")
      local p = core.spawn{ cmd = { %q, "setsid", "%d" }, env = { %q }, grace_ms = 300,
        stdout = "pipe", on_stdout = function() end }
      while not p:pid() do uv.run("once") end
      io.stdout:write("started\n")
    ]]):format(helpers.build_dir, treegen, port, marker))
    local code, out, err = helpers.run(helpers.lua(dir .. "/closing.lua"))
    assert.are.equal(0, code, err)
    assert.are.equal("started\n", out)
    helpers.retry(10000, function()
      local left = helpers.tagged(marker)
      return #left == 0, "survivors: " .. helpers.describe(left)
    end)
  end)
end)

describe("when the API caller dies before the keeper armed PDEATHSIG", function()
  it("the keeper sees the wrong parent and starts nothing", function()
    local dir = helpers.tmpdir()
    local marker = "RELOAD_PROC_TAG=" .. helpers.unique("race")
    helpers.write_file(dir .. "/caller.lua", ([[
      local uv = require("luv")
      local core = require("reload.core")
      core.spawn{ cmd = { "/bin/sh", "-c", "touch %s/started; sleep 5" },
        stdout = "null", stderr = "null" }
      uv.kill(uv.os_getpid(), "sigkill")
    ]]):format(dir))
    local caller = helpers.start_reload({ "script", dir .. "/caller.lua" }, {
      env = env_with(marker, "RELOAD_KEEPER_DELAY_BEFORE_PRCTL_MS=300", "RELOAD_KEEPER_NO_EOF=1"),
    })
    caller:wait()
    helpers.retry(10000, function()
      local left = helpers.tagged(marker)
      return #left == 0, "still alive: " .. helpers.describe(left)
    end)
    assert.is_nil(helpers.read_file(dir .. "/started"), "the command started")
  end)
end)

describe("core.spawn over many runs", function()
  it("50 spawn/stop cycles: 50 exit events, no zombie, only fds 0-2 in the command", function()
    -- A fd opened by Lua is not CLOEXEC: it must not reach the command anyway.
    local leaky = assert(io.open(helpers.tmpdir() .. "/leaky", "w"))
    local exits = 0
    for i = 1, 50 do
      local run = start({ cmd = { treegen, "sleep" }, grace_ms = 1000 })
      wait_event(run, "started")
      -- Right after exec the dynamic loader briefly holds fd 3 (ld.so.cache, libc): a leak is
      -- an fd that stays.
      helpers.retry(10000, function()
        local fds = listdir("/proc/" .. run.p:pid() .. "/fd")
        return table.concat(fds, ",") == "0,1,2", ("cycle %d: fds %s"):format(i,
          table.concat(fds, ","))
      end)
      run.p:stop()
      wait_exit(run)
      assert_clean(run)
      exits = exits + count_type(run, "exit")
    end
    leaky:close()
    assert.are.equal(50, exits)
    local zombies = {}
    for _, st in ipairs(helpers.children_of(uv.os_getpid())) do
      if st.state == "Z" then
        zombies[#zombies + 1] = st
      end
    end
    assert.are.equal(0, #zombies, helpers.describe(zombies))
  end)
end)

describe("the exit event", function()
  it("carries the main command's exit code", function()
    local run = start({ cmd = "exit 7" })
    local ev = wait_exit(run)
    assert.are.equal(7, ev.code)
    assert.are.equal(7, ev.status)
    assert.is_nil(ev.signal)
    assert.is_nil(ev.duration_ms)
    assert.is_false(ev.forced)
  end)

  it("carries the signal that killed the main command", function()
    local run = start({ cmd = "kill -9 $$" })
    local ev = wait_exit(run)
    assert.are.equal(9, ev.signal)
    assert.are.equal(137, ev.status)
    assert.is_nil(ev.code)
  end)

  it("reports a missing program as spawn_error, status 127, with no keeper left", function()
    local run = start({ cmd = { "no-such-program-" .. helpers.unique() } })
    local ev = wait_exit(run)
    assert.matches("^ENOENT: ", ev.spawn_error)
    assert.are.equal(127, ev.status)
    assert.are.equal("exit", event_types(run))
    assert.is_nil(helpers.proc_stat(run.p:keeper_pid()))
  end)

  it("reports a program that cannot be executed as status 126", function()
    local file = helpers.tmpdir() .. "/not-executable"
    helpers.write_file(file, "#!/bin/sh\n")
    local ev = wait_exit(start({ cmd = { file } }))
    assert.matches("^EACCES: ", ev.spawn_error)
    assert.are.equal(126, ev.status)
  end)
end)

describe("the command's process", function()
  it("starts with no ignored or blocked signal even when the spawner ignores SIGINT", function()
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/status.lua", ([[
      local core = require("reload.core")
      core.spawn{ cmd = { %q, "status" } }
    ]]):format(treegen))
    local code, out, err = helpers.run({ "/bin/sh", "-c", "trap '' INT QUIT; exec "
      .. helpers.shell_quote(helpers.reload_bin) .. " script " .. dir .. "/status.lua" })
    assert.are.equal(0, code, err)
    assert.matches("SigBlk:%s+0+\n", out)
    assert.matches("SigIgn:%s+0+\n", out)
  end)

  it("runs in its own session with setsid = true", function()
    local run = start({ cmd = { treegen, "sleep" }, setsid = true })
    wait_event(run, "started")
    local stat = helpers.read_file("/proc/" .. run.p:pid() .. "/stat")
    local sid = tonumber(stat:match("%) %S+ %d+ %d+ (%d+)"))
    assert.are.equal(run.p:pid(), sid)
    run.p:stop()
    wait_exit(run)
    assert_clean(run)
  end)

  it("gets signals from p:signal for the main process, its group or the whole tree", function()
    local out = {}
    local function loop(name)
      return ("trap 'echo hup-%s' HUP; echo ready-%s; while :; do sleep 0.01; done"):format(name,
        name)
    end
    local run = start({
      cmd = ("sh -c %s & setsid sh -c %s & %s"):format(helpers.shell_quote(loop("group")),
        helpers.shell_quote(loop("tree")), loop("main")),
      stdout = "pipe",
      stderr = "null", -- sh says "Hangup" for each `sleep` that the signal ends
      on_stdout = function(chunk) out[#out + 1] = chunk end,
    })
    local function seen(word, n)
      helpers.wait_until(5000, function()
        local _, count = table.concat(out):gsub(word, "")
        return count >= n
      end, function() return ("%d x %s; output: %s"):format(n, word, table.concat(out)) end)
    end
    seen("ready%-", 3)
    run.p:signal("HUP", "main")
    seen("hup%-main", 1)
    run.p:signal("SIGHUP", "group")
    seen("hup%-main", 2)
    seen("hup%-group", 1)
    run.p:signal(1, "tree")
    seen("hup%-tree", 1)
    seen("hup%-main", 3)
    seen("hup%-group", 2)
    run.p:stop()
    wait_exit(run)
    assert_clean(run)
  end)

  it("writes to stdout and stderr pipes: chunks, then nil, then exit", function()
    local order = {}
    local out, err = {}, {}
    local run = start({
      cmd = { "/bin/sh", "-c", "cat; echo oops >&2" },
      stdin = "pipe", stdout = "pipe", stderr = "pipe",
      on_stdout = function(chunk)
        out[#out + 1] = chunk
        if not chunk then order[#order + 1] = "stdout-eof" end
      end,
      on_stderr = function(chunk)
        err[#err + 1] = chunk
        if not chunk then order[#order + 1] = "stderr-eof" end
      end,
    })
    run.p:write("hello ")
    run.p:write("world\n")
    run.p:close_stdin()
    local ev = wait_exit(run)
    assert.are.equal(0, ev.code)
    assert.are.equal("hello world\n", table.concat(out))
    assert.are.equal("oops\n", table.concat(err))
    table.sort(order)
    assert.are.same({ "stderr-eof", "stdout-eof" }, order)
    local ok, _, code = run.p:write("x")
    assert.is_nil(ok)
    assert.are.equal("EPIPE", code)
  end)
end)

describe("core.spawn misuse", function()
  it("raises on wrong options and returns OS errors", function()
    assert.has_error(function() core.spawn({ cmd = { "true" }, bogus = 1 }) end,
      "unknown option 'bogus'")
    assert.has_error(function() core.spawn({ cmd = {} }) end, "option 'cmd': empty")
    assert.has_error(function() core.spawn({ cmd = "true", stop_signal = "NOPE" }) end,
      "option 'stop_signal': unknown signal 'NOPE'")
    assert.has_error(function() core.spawn({ cmd = "true", stdin = "tty" }) end,
      "option 'stdin': invalid value 'tty'")
    local p, err, code = core.spawn({ cmd = "true", cwd = "/no/such/dir" })
    assert.is_nil(p)
    assert.are.equal("ENOENT", code)
    assert.matches("^ENOENT: ", err)
    local run = start({ cmd = { treegen, "sleep" } })
    assert.has_error(function() run.p:signal("NOPE") end)
    assert.has_error(function() run.p:write("x") end)
    assert.has_error(function() run.p:stop({ grace = 1 }) end, "unknown option 'grace'")
    run.p:kill()
    wait_exit(run)
  end)
end)

describe("under Delve", function()
  local function build_server()
    if helpers.run({ "/bin/sh", "-c", "command -v go && command -v dlv" }) ~= 0 then
      return nil
    end
    -- Built into the build tree, with its own Go cache: the second build is instant.
    local dir = helpers.build_dir .. "/goserver"
    local code, _, err = helpers.run({ "go", "build", "-o", dir .. "/server",
      helpers.spec_fixtures .. "/goserver/main.go" }, {
      env = env_with("GOCACHE=" .. dir .. "/gocache", "GOPATH=" .. dir .. "/gopath",
        "GOFLAGS=", "CGO_ENABLED=0"),
      timeout_ms = 120000,
    })
    assert.are.equal(0, code, err)
    return dir .. "/server"
  end

  local function under_dlv(stop)
    local server = build_server()
    if not server then
      pending("go or dlv is not installed")
      return
    end
    local port = ("%d"):format(helpers.free_port())
    local dlv_port = ("%d"):format(helpers.free_port())
    -- Go programs and ASan's LD_PRELOAD do not mix: the tree gets a clean environment.
    local env = {}
    for _, e in ipairs(env_with()) do
      if not e:find("^LD_PRELOAD=") then env[#env + 1] = e end
    end
    local marker = "RELOAD_PROC_TAG=" .. helpers.unique("dlv")
    env[#env + 1] = marker
    -- --only-same-user=false: with --continue, Delve connects to its own API server, and its
    -- same-user check can miss that connection in a large or changing /proc/net/tcp (this
    -- suite's load tests, or another's on the machine): Delve then refuses itself and the
    -- program stays stopped before main (docs/recipes.md). This test is about teardown.
    local run = start({ cmd = { "dlv", "exec", "--headless", "--continue", "--accept-multiclient",
      "--only-same-user=false", "--listen", "127.0.0.1:" .. dlv_port, "--api-version", "2",
      server, "--", port }, env = env, grace_ms = 3000, stdout = "null" })
    run.marker = marker
    wait_listening(tonumber(dlv_port), run)
    wait_listening(tonumber(port), run)
    stop(run.p)
    wait_exit(run, 15000)
    assert_clean(run, { tonumber(port), tonumber(dlv_port) })
  end

  it("stop frees both the app's and the debugger's port", function()
    under_dlv(function(p) p:stop() end)
  end)

  it("kill frees both ports at once", function()
    under_dlv(function(p) p:kill() end)
  end)
end)

describe("a stop racing the keeper's own exit", function()
  it("never kills the caller with SIGPIPE (the control socket may already be closed)", function()
    -- Run in a child lua5.4: if a write to a gone keeper raised SIGPIPE, it would die of it.
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/race.lua", ([[
      package.cpath = %q .. package.cpath
      local uv = require("luv")
      local core = require("reload.core")
      local exits = 0
      for _ = 1, 40 do
        local p
        p = core.spawn({ cmd = { "true" }, on_event = function(ev)
          -- The main command is gone and the keeper is on its way out: ask it to stop anyway.
          if ev.type == "main-exit" then p:stop() p:kill() p:signal("HUP", "tree") end
          if ev.type == "exit" then exits = exits + 1 end
        end })
      end
      uv.run()
      io.stdout:write(exits, "\n")
    ]]):format(helpers.build_dir .. "/lib/?.so;"))
    local code, out, err = helpers.run(helpers.lua(dir .. "/race.lua"))
    assert.are.equal(0, code, "status " .. code .. ": " .. err)
    assert.are.equal("40\n", out)
  end)
end)

--- The keeper's children (the command, once started).
local function keeper_children(run)
  local pid = run.p:keeper_pid()
  return helpers.read_file(("/proc/%d/task/%d/children"):format(pid, pid)) or ""
end

describe("a held run (hold = true: the keeper waits for go())", function()
  it("starts nothing until go(), then runs and stops like any run", function()
    local port = helpers.free_port()
    local run = start({ cmd = { treegen, "chain3", tostring(port) }, hold = true,
      grace_ms = 3000 })
    wait_event(run, "held")
    assert.are.equal("", keeper_children(run), "the command started before go()")
    assert.is_false(helpers.port_listening(port))
    assert.is_nil(run.p:pid())
    run.p:go()
    run.p:go() -- a second go() is harmless: one command
    wait_listening(port, run)
    assert.are.equal(1, count_type(run, "started"))
    run.p:stop()
    local ev = wait_exit(run)
    assert_clean(run, { port })
    assert.is_nil(ev.cancelled)
    assert.are.equal("held,started,stopping,main-exit,tree-empty,exit", event_types(run))
  end)

  for _, how in ipairs({ "stop", "kill" }) do
    it("is cancelled by " .. how .. "() before go(): the command never runs", function()
      local port = helpers.free_port()
      local run = start({ cmd = { treegen, "server", tostring(port) }, hold = true })
      wait_event(run, "held")
      run.p[how](run.p)
      run.p:go() -- too late: the stop wins
      local ev = wait_exit(run)
      assert.is_true(ev.cancelled)
      assert.is_nil(ev.code)
      assert.are.equal(0, ev.status)
      assert.are.equal("held,exit", event_types(run))
      assert.is_false(helpers.port_listening(port))
      assert.is_nil(helpers.proc_stat(run.p:keeper_pid()))
    end)
  end

  it("is cancelled by a stop sent before the keeper was even ready", function()
    local run = start({ cmd = { treegen, "server", tostring(helpers.free_port()) }, hold = true })
    run.p:stop()
    local ev = wait_exit(run)
    assert.is_true(ev.cancelled)
    assert.are.equal(0, count_type(run, "started"))
  end)

  it("takes its command and environment at go() when spawned without one", function()
    local port = helpers.free_port()
    local run = start({ hold = true })
    wait_event(run, "held")
    assert.has_error(function() run.p:go() end,
      "go: the run was spawned without cmd: go{ cmd = ... } needs one")
    run.p:go({ cmd = { treegen, "server", tostring(port) }, env = env_with(run.marker) })
    wait_listening(port, run)
    local env = helpers.read_file("/proc/" .. run.p:pid() .. "/environ")
    assert.is_truthy(env:find(run.marker, 1, true))
    assert.is_truthy(env:find("RELOAD_RUN=", 1, true))
    run.p:stop()
    wait_exit(run)
    assert_clean(run, { port })
  end)

  it("passes a shell command and an environment of any size and content intact", function()
    local out = {}
    local big = ("x"):rep(100000) -- one string may be 128 KiB at most (MAX_ARG_STRLEN)
    local run = start({ hold = true, stdout = "pipe",
      on_stdout = function(chunk) out[#out + 1] = chunk end })
    wait_event(run, "held")
    run.p:go({ cmd = 'printf "%s|%s" "$GREETING" "${#BIG}"',
      env = { "GREETING=hello\nthere = yes", "BIG=" .. big, run.marker } })
    local ev = wait_exit(run)
    assert.are.equal(0, ev.status, tostring(ev.spawn_error))
    assert.are.equal("hello\nthere = yes|100000", table.concat(out))
  end)
end)

describe("stop() signals the command's group from reload itself", function()
  it("at once, without waiting for the keeper to run, which then sweeps and reaps as usual",
    function()
      local port = helpers.free_port()
      local run = start({ cmd = { treegen, "server", tostring(port) }, grace_ms = 3000 })
      wait_listening(port, run)
      local keeper, server = run.p:keeper_pid(), run.p:pid()
      uv.kill(keeper, "sigstop")
      helpers.wait_until(10000, function()
        local st = helpers.proc_stat(keeper)
        return st and st.state == "T"
      end, "the keeper to be stopped (SIGSTOP)")
      run.p:stop()
      -- The keeper cannot run: only reload's own signal can have ended the server, which stays
      -- a zombie until the keeper reaps it.
      local ok, err = pcall(helpers.wait_until, 10000, function()
        local st = helpers.proc_stat(server)
        return st == nil or st.state == "Z"
      end, function()
        return ("the server (pid %d) to die of reload's SIGTERM; it is %s"):format(server,
          helpers.describe({ helpers.proc_stat(server) }))
      end)
      uv.kill(keeper, "sigcont")
      assert(ok, err)
      local ev = wait_exit(run)
      assert_clean(run, { port })
      assert.are.equal(128 + 15, ev.status)
      assert.are.equal("started,stopping,main-exit,tree-empty,exit", event_types(run))
    end)
end)

describe("a primed run (go{ prime = true }): started by the gate of the run before it", function()
  --- A run of treegen `kind` on port with a gate, and a held run spawned after it: the first
  --- listening, the second held.
  local function pair(port, kind)
    local old = start({ cmd = { treegen, kind, tostring(port) }, gate = true, grace_ms = 3000 })
    local new = start({ hold = true, after = old.p })
    wait_listening(port, old)
    wait_event(new, "held")
    return old, new
  end

  local function prime(run, ...)
    run.p:go({ cmd = { treegen, ... }, env = env_with(run.marker), prime = true })
  end
  --- Processes of run's tree, its keeper left out (it may still be exiting).
  local function tree_left(run)
    local left = {}
    for _, p in ipairs(helpers.tagged(run.marker)) do
      if p.pid ~= run.p:keeper_pid() then
        left[#left + 1] = p
      end
    end
    return left
  end

  it("starts the moment the previous tree is gone, without go(), on the same port", function()
    local port = helpers.free_port()
    local old, new = pair(port, "chain3")
    local at_start
    new.hook = function(ev)
      if ev.type == "started" then
        at_start = { left = tree_left(old), old_events = event_types(old) }
      end
    end
    prime(new, "server", tostring(port))
    old.p:stop()
    wait_listening(port, new) -- bound: nothing of the old tree held the port any more
    assert.are.equal(0, #at_start.left, "the old tree at the new start: " ..
      helpers.describe(at_start.left))
    wait_exit(old)
    assert_clean(old)
    assert.are.equal(1, count_type(new, "started"))
    new.p:stop()
    wait_exit(new)
    assert_clean(new, { port })
    assert.are.equal("held,started,stopping,main-exit,tree-empty,exit", event_types(new))
  end)

  it("starts at once when the gate opened before the command came", function()
    local port = helpers.free_port()
    local old, new = pair(port, "server")
    old.p:stop()
    wait_exit(old)
    prime(new, "server", tostring(port))
    wait_listening(port, new)
    new.p:stop()
    wait_exit(new)
    assert_clean(new, { port })
  end)

  it("does not start when the previous keeper dies without opening its gate, until go()",
    function()
      local old, new = pair(helpers.free_port(), "server")
      prime(new, "sleep")
      local keeper = new.p:keeper_pid()
      local gate = ("/proc/%d/fd/4"):format(keeper) -- fds 0-2, the control socket, the gate
      assert.is_truthy(uv.fs_readlink(gate), "the gate is the new keeper's fd 4")
      uv.kill(old.p:keeper_pid(), "sigkill")
      wait_exit(old)
      -- EOF read (the gate closed) and back in poll(): had EOF opened it, the command would
      -- have been started before that poll.
      helpers.wait_until(10000, function()
        local syscall = helpers.read_file(("/proc/%d/syscall"):format(keeper)) or ""
        local nr = tonumber(syscall:match("^(%d+)"))
        return uv.fs_readlink(gate) == nil and (nr == 7 or nr == 271)
      end, function()
        return ("the new keeper to read EOF and wait again; fd 4: %s"):format(
          tostring(uv.fs_readlink(gate)))
      end)
      assert.are.equal("", keeper_children(new), "started on EOF")
      assert.are.equal(0, count_type(new, "started"))
      new.p:go()
      wait_event(new, "started")
      new.p:stop()
      wait_exit(new)
      assert_clean(new)
      for _, p in ipairs(helpers.tagged(old.marker)) do -- orphaned with its keeper: ours to end
        uv.kill(p.pid, "sigkill")
      end
      helpers.wait_until(10000, function() return #helpers.tagged(old.marker) == 0 end,
        "the old server, orphaned by its keeper's SIGKILL, to be gone")
    end)

  it("is cancelled by a stop before its gate opens: the command never runs", function()
    local port = helpers.free_port()
    local old, new = pair(port, "server")
    prime(new, "server", tostring(port))
    new.p:stop()
    local ev = wait_exit(new)
    assert.is_true(ev.cancelled)
    assert.are.equal("held,exit", event_types(new))
    old.p:stop()
    wait_exit(old)
    assert_clean(old, { port })
  end)
end)

describe("the next run (p:next{}): started by the same keeper once the tree is gone", function()
  --- A run of treegen `kind` listening on port, and the marker the next run's processes carry.
  local function running(port, kind)
    local run = start({ cmd = { treegen, kind, tostring(port) }, grace_ms = 3000 })
    wait_listening(port, run)
    return run, "RELOAD_PROC_TAG=" .. helpers.unique("next")
  end

  local function queue(run, marker, ...)
    return run.p:next({ cmd = { treegen, ... }, env = env_with(marker) })
  end

  local function wait_count(run, type, n)
    helpers.wait_until(10000, function() return count_type(run, type) >= n end, function()
      return ("%d %q events; events so far: %s"):format(n, type, event_types(run))
    end)
  end

  it("starts in the same keeper the moment the old tree is gone, on the same port", function()
    local port = helpers.free_port()
    local run, marker = running(port, "chain3")
    local keeper, old_pid = run.p:keeper_pid(), run.p:pid()
    local at_start
    run.hook = function(ev)
      if ev.type == "started" and ev.pid ~= old_pid then
        at_start = {}
        for _, p in ipairs(helpers.tagged(run.marker)) do -- the keeper has the marker too
          if p.pid ~= keeper then
            at_start[#at_start + 1] = p
          end
        end
      end
    end
    assert(queue(run, marker, "server", tostring(port)))
    run.p:stop()
    wait_count(run, "started", 2)
    assert.are.equal(0, #at_start, "the old tree at the new start: " ..
      helpers.describe(at_start))
    wait_listening(port)
    local new_pid = run.p:pid()
    assert.are_not.equal(old_pid, new_pid)
    assert.are.equal(keeper, run.p:keeper_pid())
    assert.are.equal(keeper, helpers.proc_stat(new_pid).ppid, "the new command's parent")
    assert.are.equal("running", run.p:status())
    run.p:stop()
    wait_exit(run)
    assert_clean(run, { port })
    assert.are.equal(0, #helpers.tagged(marker), "the next run's tree at exit")
    assert.are.equal("started,stopping,main-exit,tree-empty,started,stopping,main-exit," ..
      "tree-empty,exit", event_types(run))
  end)

  it("is dropped by drop_next() before the tree is gone: it never runs", function()
    local port = helpers.free_port()
    local run, marker = running(port, "server")
    assert(queue(run, marker, "server", tostring(port)))
    run.p:drop_next()
    wait_event(run, "dropped")
    run.p:stop()
    wait_exit(run)
    assert_clean(run, { port })
    assert.are.equal(1, count_type(run, "started"))
    assert.are.equal(0, #helpers.tagged(marker))
  end)

  it("is refused once the keeper said its tree was empty without one", function()
    local port = helpers.free_port()
    local run, marker = running(port, "server")
    run.p:stop()
    wait_event(run, "tree-empty")
    local ok, why = queue(run, marker, "server", tostring(port))
    assert.is_nil(ok)
    assert.are.equal("the keeper has finished", why)
    wait_exit(run) -- told "bye": the keeper does not wait for more
    assert_clean(run, { port })
    assert.are.equal(1, count_type(run, "started"))
  end)
end)

describe("tree-empty", function()
  it("comes once every process of the tree is gone, the port free, before exit", function()
    local port = helpers.free_port()
    local run = start({ cmd = { treegen, "setsid", tostring(port) }, grace_ms = 3000 })
    local at_empty
    run.hook = function(ev)
      if ev.type == "tree-empty" then
        -- The keeper carries the marker too and is still exiting: it is not of the tree.
        local left = {}
        for _, p in ipairs(helpers.tagged(run.marker)) do
          if p.pid ~= run.p:keeper_pid() then
            left[#left + 1] = p
          end
        end
        -- Bind right here (helpers.port_bindable would run the loop inside its callback).
        local tcp = uv.new_tcp()
        local ok = tcp:bind("127.0.0.1", port) and tcp:listen(1, function() end)
        tcp:close()
        at_empty = { survivors = left, bindable = ok and true or false, exited = run.exit ~= nil }
      end
    end
    wait_listening(port, run)
    run.p:stop()
    wait_exit(run)
    assert.is_table(at_empty, "no tree-empty event; events: " .. event_types(run))
    assert.are.equal(0, #at_empty.survivors, helpers.describe(at_empty.survivors))
    assert.is_true(at_empty.bindable)
    assert.is_false(at_empty.exited)
  end)
end)

describe("the keeper's test switches (RELOAD_KEEPER_*)", function()
  local function command_env(run, out)
    wait_exit(run)
    assert.are.equal(0, run.exit.status, tostring(run.exit.spawn_error))
    return table.concat(out)
  end

  it("never reach the command, whatever environment go() brings", function()
    -- Spawned with an environment: the keeper reads and drops them (it always did).
    local out = {}
    local function collect(c) out[#out + 1] = c end
    local run = start({ cmd = "env", stdout = "pipe", on_stdout = collect },
      "RELOAD_KEEPER_ENUM=scan")
    assert.is_nil(command_env(run, out):find("RELOAD_KEEPER_", 1, true))
    -- Held, then go{ cmd, env }: the environment of a restart (the spare keeper).
    out = {}
    run = start({ hold = true, stdout = "pipe", on_stdout = function(c) out[#out + 1] = c end })
    wait_event(run, "held")
    run.p:go({ cmd = "env", env = env_with(run.marker, "RELOAD_KEEPER_ENUM=scan",
      "RELOAD_KEEPER_NO_EOF=1") })
    local env = command_env(run, out)
    assert.is_truthy(env:find(run.marker, 1, true))
    assert.is_nil(env:find("RELOAD_KEEPER_", 1, true), env)
    -- Held, then go{ cmd } with reload's own environment, which carries a switch.
    uv.os_setenv("RELOAD_KEEPER_ENUM", "scan")
    local ok, err = pcall(function()
      out = {}
      run = start({ hold = true, stdout = "pipe", on_stdout = function(c) out[#out + 1] = c end })
      wait_event(run, "held")
      run.p:go({ cmd = "env" })
      env = command_env(run, out)
    end)
    uv.os_unsetenv("RELOAD_KEEPER_ENUM")
    assert(ok, err)
    assert.is_nil(env:find("RELOAD_KEEPER_", 1, true), env)
  end)
end)

describe("a keeper that cannot start the command", function()
  local keeper = helpers.build_dir .. "/lib/reload/reload-keeper"

  --- Runs fn with RELOAD_KEEPER pointing at a wrapper script around the real keeper (or the
  --- one at `path`).
  local function with_wrapper(script, fn, path)
    local dir = helpers.tmpdir()
    local wrapper = dir .. "/keeper-wrapper"
    helpers.write_file(wrapper, "#!/bin/sh\n" .. script:gsub("KEEPER", path or keeper) .. "\n")
    assert(uv.fs_chmod(wrapper, 493))
    uv.os_setenv("RELOAD_KEEPER", wrapper)
    local ok, err = pcall(fn)
    uv.os_unsetenv("RELOAD_KEEPER")
    assert(ok, err)
  end

  it("says why when its own setup fails, on stderr and to reload (status 125)", function()
    local errs = {}
    with_wrapper('KEEPER "$@"', function() -- not exec: the keeper's parent is the shell
      local run = start({ cmd = { "true" }, stderr = "pipe",
        on_stderr = function(c) errs[#errs + 1] = c end })
      local ev = wait_exit(run)
      assert.are.equal(125, ev.status)
      assert.matches("^keeper setup: ESRCH: ", ev.spawn_error)
      assert.are.equal("exit", event_types(run))
    end)
    assert.matches("reload%-keeper: setup: reload %(pid %d+%) is not the parent",
      table.concat(errs))
  end)

  it("reports a fork failure as one, not as an exec error (status 125)", function()
    if uv.getuid() ~= 0 or helpers.run({ "sh", "-c", "command -v setpriv && command -v prlimit" })
      ~= 0 then
      pending("needs root, setpriv and prlimit (RLIMIT_NPROC binds only unprivileged users)")
      return
    end
    -- a copy nobody can reach: the checkout may be closed to other users
    local install, closed = helpers.install_for_others()
    if not install then
      pending(closed .. ": nobody cannot run the keeper")
      return
    end
    -- As nobody, with one process allowed: the keeper itself. exec keeps the keeper's pid, so
    -- its parent is still this process.
    with_wrapper("exec setpriv --reuid=65534 --regid=65534 --clear-groups prlimit --nproc=1 "
      .. 'KEEPER "$@"', function()
      local run = start({ cmd = { "true" }, stderr = "null" })
      local ev = wait_exit(run)
      assert.are.equal(125, ev.status, tostring(ev.spawn_error))
      assert.matches("^fork: EAGAIN: ", ev.spawn_error)
      assert.are.equal("exit", event_types(run))
    end, install.keeper)
  end)
end)
