local debounce = require("reload.debounce")
local fake = require("spec.support.fake")

describe("reload.debounce", function()
  local clock, fired, d
  before_each(function()
    clock = fake.clock()
    fired = {}
    d = debounce.new({ delay = 5, storm_delay = 30, clock = clock, on_fire = function(p, o)
      fired[#fired + 1] = { paths = p, overflow = o }
    end })
  end)

  it("fires once after the quiet period of a single batch", function()
    d:push({ "a.go", "b.go" })
    clock.advance(4)
    assert.are.equal(0, #fired)
    clock.advance(1)
    assert.are.equal(1, #fired)
    assert.are.same({ "a.go", "b.go" }, fired[1].paths)
  end)

  it("gives one fire for a storm of 5,000 batches and keeps every path once", function()
    for i = 1, 5000 do
      d:push({ ("f%d.c"):format(i), "common.h" })
      clock.advance(1) -- a checkout writes a file every millisecond
    end
    assert.are.equal(0, #fired)
    clock.advance(28) -- 29 ms after the last batch: still inside the storm's quiet period
    assert.are.equal(0, #fired)
    clock.advance(1)
    assert.are.equal(1, #fired)
    assert.are.equal(5001, #fired[1].paths)
    assert.are.equal("f1.c", fired[1].paths[1])
  end)

  it("carries an overflow through even with no path", function()
    d:push({}, true)
    clock.advance(5)
    assert.are.equal(1, #fired)
    assert.is_true(fired[1].overflow)
  end)

  it("starts afresh after firing: the next single batch waits the short delay", function()
    d:push({ "a" })
    d:push({ "b" })
    clock.advance(30)
    assert.are.equal(1, #fired)
    d:push({ "c" })
    clock.advance(5)
    assert.are.equal(2, #fired)
    assert.are.same({ "c" }, fired[2].paths)
  end)

  it("drops everything on cancel", function()
    d:push({ "a" })
    d:cancel()
    clock.advance(100)
    assert.are.equal(0, #fired)
    assert.is_false(d:pending())
  end)
end)
