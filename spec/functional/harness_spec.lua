-- The test harness itself: a test that hangs becomes a failure with a traceback and the process
-- tree, the suite goes on, and what a test started dies with the runner even on SIGKILL.
local helpers = require("spec.helpers")

describe("the test harness", function()
  it("turns each kind of hang into a failure with a traceback, then goes on", function()
    local code, out, err = helpers.run(helpers.lua("/usr/bin/busted", "-o", "TAP",
      "spec/fixtures/harness/hang_spec.lua"), { cwd = helpers.root, timeout_ms = 120000,
      env = helpers.env_with({ RELOAD_TEST_SLOWDOWN = "1" }) })
    local text = out .. err
    assert.are_not.equal(0, code, text)
    local _, watchdogs = text:gsub("watchdog: the test ran past its budget of 1 s", "")
    assert.are.equal(3, watchdogs, text)
    assert.matches("ok %d+ %- hangs passes after them", text)
    assert.matches("processes at that moment:\n[# ]*%d+ R %(.-%) lua5.4 /usr/bin/busted", text)
    assert.matches("hang_spec.lua:%d+", text)
    assert.matches("blocked outside Lua", text)
  end)

  it("reads the stat line of a zombie that its parent is reaping (pids detached: -1)", function()
    -- As the kernel printed it for a zombie of init's during a run of the suite; the watchdog's
    -- process tree once failed on it with "table index is nil".
    local line = "29601 (treegen) X 0 -1 -1 0 -1 4227148 20 0 0 0 0 0 0 0 20 0 0 0 5292440 0 0\n"
    assert.are.same({ pid = 29601, comm = "treegen", state = "X", ppid = 0, pgid = -1 },
      helpers.parse_stat(29601, line))
    assert.are.same({ pid = 7, comm = "a) (b", state = "S", ppid = 1, pgid = 7 },
      helpers.parse_stat(7, "7 (a) (b) S 1 7 7 0 -1\n"))
    assert.is_nil(helpers.parse_stat(7, "7 (sh) "))
    assert.is_truthy(helpers.process_tree():find(tostring(helpers.pid), 1, true))
  end)

  it("finds and ends a line of processes that fork and exit at full speed", function()
    -- One scan of /proc now and then reads such a "hopper" as a zombie, its child made after the
    -- scan passed; one SIGKILL of what a scan found leaves that child running.
    local marker = "RELOAD_HARNESS=" .. helpers.unique("hopper")
    local port = helpers.free_port()
    local proc = helpers.start({ helpers.fixture("treegen"), "hopper", tostring(port) },
      { env = helpers.env_with({ [marker:match("^[^=]+")] = marker:match("=(.*)$") }) })
    helpers.wait_until(5000, function() return #helpers.tagged(marker) >= 2 end,
      function() return "the hopper: " .. helpers.describe(helpers.tagged(marker)) end)
    for _ = 1, 20 do
      assert.are_not.same({}, helpers.tagged(marker), "a scan missed the hopper")
    end
    assert.is_true(#helpers.kill_tagged(marker) >= 2)
    assert.are.same({}, helpers.tagged(marker))
    assert.is_true(helpers.port_bindable(port))
    proc:wait(5000)
  end)

  it("a process started by a test dies with the runner, even when the runner is SIGKILLed",
    function()
      local dir = helpers.tmpdir()
      local marker = "RELOAD_HARNESS=" .. helpers.unique("orphan")
      helpers.write_file(dir .. "/runner.lua", ([[
        package.path = %q .. "/?.lua;" .. package.path
        local helpers = require("spec.helpers")
        local uv = require("luv")
        helpers.start({ "sleep", "600" }, { env = helpers.env_with({ [%q] = %q }) })
        io.stdout:write("started\n")
        io.stdout:flush()
        uv.kill(uv.os_getpid(), "sigkill")
      ]]):format(helpers.root, marker:match("^[^=]+"), marker:match("=(.*)$")))
      local code, out, err = helpers.run(helpers.lua(dir .. "/runner.lua"),
        { cwd = helpers.root })
      assert.are.equal(128 + 9, code, err)
      assert.are.equal("started\n", out)
      helpers.retry(5000, function()
        local left = helpers.tagged(marker)
        return #left == 0, "left: " .. helpers.describe(left)
      end)
    end)
end)
