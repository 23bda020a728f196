-- A signal to reload's whole process group, as a terminal (Ctrl-C: SIGINT) or a CI job's timeout
-- (`kill -KILL -PGID`) sends it. The keepers are in groups of their own, so the signal reaches
-- reload alone, and reload (or, once it is dead, each keeper on its own) stops every tree in
-- order.
local helpers = require("spec.helpers")
local uv = require("luv")

--- A service whose command starts a helper in a session of its own (out of the command's
--- process group, as daemons and some dev servers do), then sleeps.
local function start()
  local dir = helpers.project({ ["Reloadfile.lua"] = [[
service "s" {
  watch = "*.nothing",
  run = "setsid sleep 1000 & echo started; exec sleep 1000",
}
]] })
  local proc, tagged = helpers.session(dir)
  proc:wait_output("started\n", 15000, true)
  -- helpers.start gives reload a session, hence a process group, of its own: its pid.
  assert.are.equal(proc.pid, helpers.proc_stat(proc.pid).pgid)
  helpers.wait_until(10000, function() return #helpers.tagged(tagged) >= 3 end,
    function() return "reload and its two sleeps; have " ..
      helpers.describe(helpers.tagged(tagged)) end)
  return proc, tagged
end

local function wait_all_gone(tagged, proc)
  helpers.wait_until(15000, function() return #helpers.tagged(tagged) == 0 end, function()
    return "every process of the run gone; left: " .. helpers.describe(helpers.tagged(tagged)) ..
      "\nreload said:\n" .. proc:text()
  end)
end

describe("a signal to reload's process group", function()
  it("SIGKILL (a CI timeout): the keepers, out of the group, still take every tree down",
    function()
      local proc, tagged = start()
      uv.kill(-proc.pid, "sigkill")
      -- Before keepers left the group, they died with reload and the setsid'd sleep lived on.
      wait_all_gone(tagged, proc)
      proc:kill()
    end)

  it("SIGINT (Ctrl-C): reload stops every tree and exits cleanly, no keeper dies first",
    function()
      local proc, tagged = start()
      uv.kill(-proc.pid, "sigint")
      assert.are.equal(0, proc:wait(20000), proc:text())
      wait_all_gone(tagged, proc)
      local text = proc:text()
      assert.matches("every process tree is gone; bye", text)
      assert.is_nil(text:find("keeper", 1, true), text)
    end)
end)
