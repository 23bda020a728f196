-- Signal names come from the core (<signal.h>), never from a table in Lua.
local core = require("reload.core")
local signals = require("reload.signals")
local helpers = require("spec.helpers")

describe("reload.signals", function()
  it("core.signals has every signal bash's kill -l lists, with the same number", function()
    local code, out = helpers.run({ "bash", "-c", "kill -l" })
    assert.are.equal(0, code)
    local listed = 0
    for n, name in out:gmatch("(%d+)%) SIG([%w+-]+)") do
      listed = listed + 1
      assert.are.equal(tonumber(n), core.signals[name], name)
    end
    assert.is_true(listed >= 60, out)
  end)

  it("takes a name in any case, with or without SIG, or a number", function()
    assert.are.equal("TERM", signals.normalize("sigterm"))
    assert.are.equal("STKFLT", signals.normalize("STKFLT"))
    assert.are.equal("RTMIN+1", signals.normalize("rtmin+1"))
    assert.are.equal("RTMIN+1", signals.normalize(core.signals.RTMIN + 1))
    assert.are.equal("INT", signals.normalize("2"))
    assert.is_nil(signals.normalize("TREM"))
    assert.is_nil(signals.normalize(0))
    assert.are.equal("SIGKILL", signals.describe(9))
  end)

  it("accepts exactly what core.spawn accepts as a stop signal", function()
    for name in pairs(core.signals) do
      assert.are.equal(name, signals.normalize(name))
    end
    -- The core refuses what signals refuses (the message names the option).
    assert.has_error(function()
      core.spawn({ cmd = { "true" }, stop_signal = "TREM" })
    end)
  end)
end)
