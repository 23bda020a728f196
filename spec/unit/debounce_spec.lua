-- The save model against a fake clock: one save is one fire, whichever way it is written.
local debounce = require("reload.debounce")
local fake = require("spec.support.fake")

local function ev(kind, path, settled, from)
  return { kind = kind, path = path, settled = settled, from = from }
end

describe("reload.debounce", function()
  local clock, fired, d, lock

  local function new(opts)
    opts = opts or {}
    d = debounce.new({ delay = opts.delay, clock = clock, held = function() return lock end,
      on_fire = function(p, o) fired[#fired + 1] = { paths = p, overflow = o } end })
  end

  before_each(function()
    clock = fake.clock()
    fired, lock = {}, false
    new()
  end)

  describe("a save of one file", function()
    it("written in one go fires at once, when the writer closes it", function()
      d:push({ ev("modify", "a.go", false), ev("close", "a.go", true) })
      clock.advance(0)
      assert.are.equal(1, #fired)
      assert.are.same({ "a.go" }, fired[1].paths)
    end)

    it("truncated, then written after a pause, is one change: it waits for the close",
      function()
        d:push({ ev("modify", "a.go", false) }) -- open(O_TRUNC)
        clock.advance(40)
        d:push({ ev("modify", "a.go", false) }) -- the write, 40 ms later
        clock.advance(40)
        assert.are.equal(0, #fired)
        d:push({ ev("close", "a.go", true) })
        clock.advance(0)
        assert.are.equal(1, #fired)
        assert.are.same({ "a.go" }, fired[1].paths)
      end)

    it("through a temporary file renamed over it is one change to the file", function()
      d:push({ ev("create", "a.go.tmp123", false) })
      d:push({ ev("close", "a.go.tmp123", true) })
      clock.advance(debounce.creation_grace_ms - 1) -- the rename comes late
      assert.are.equal(0, #fired)
      d:push({ ev("rename", "a.go", true, "a.go.tmp123") })
      clock.advance(0)
      assert.are.equal(1, #fired)
      assert.are.same({ "a.go" }, fired[1].paths)
    end)

    it("of a new file fires once it was closed a moment ago and not renamed away", function()
      d:push({ ev("create", "new.go", false), ev("close", "new.go", true) })
      clock.advance(debounce.creation_grace_ms - 1)
      assert.are.equal(0, #fired)
      clock.advance(1)
      assert.are.equal(1, #fired)
    end)

    it("by an editor that moves the old file away first waits for the new one", function()
      d:push({ ev("remove", "a.go", true) }) -- renamed to a backup (ignored)
      clock.advance(5)
      assert.are.equal(0, #fired)
      d:push({ ev("create", "a.go", false), ev("modify", "a.go", false) })
      clock.advance(5)
      assert.are.equal(0, #fired)
      d:push({ ev("close", "a.go", true) })
      clock.advance(0)
      assert.are.equal(1, #fired)
      assert.are.same({ "a.go" }, fired[1].paths)
    end)

    it("that deletes it for good fires once the removal stayed", function()
      d:push({ ev("remove", "a.go", true) })
      clock.advance(debounce.removal_grace_ms - 1)
      assert.are.equal(0, #fired)
      clock.advance(1)
      assert.are.equal(1, #fired)
    end)

    it("by a writer that never closes fires after the write cap", function()
      d:push({ ev("modify", "app.log", false) })
      clock.advance(debounce.write_cap_ms - 1)
      assert.are.equal(0, #fired)
      clock.advance(1)
      assert.are.equal(1, #fired)
    end)
  end)

  describe("a storm", function()
    it("of 5,000 files fires once, after its quiet period, with every path once", function()
      for i = 1, 5000 do
        d:push({ ev("modify", ("f%d.c"):format(i), false), ev("close", ("f%d.c"):format(i), true),
          ev("modify", "common.h", true) })
        clock.advance(1) -- a tool writes a file every millisecond
      end
      assert.are.equal(0, #fired)
      clock.advance(debounce.storm_quiet_ms - 2)
      assert.are.equal(0, #fired)
      clock.advance(1)
      assert.are.equal(1, #fired)
      assert.are.equal(5001, #fired[1].paths)
      assert.are.equal("f1.c", fired[1].paths[1])
    end)

    it("that never ends fires at the cap", function()
      for _ = 1, debounce.max_ms // 10 + 1 do
        d:push({ ev("modify", "a", true), ev("modify", "b", true) })
        clock.advance(10)
      end
      assert.are.equal(1, #fired)
    end)

    it("while a git operation holds the index waits for it to end", function()
      lock = true
      d:push({ ev("close", "a.go", true) })
      clock.advance(1000)
      assert.are.equal(0, #fired)
      d:push({ ev("close", "b.go", true) })
      clock.advance(5000)
      assert.are.equal(0, #fired)
      lock = false
      clock.advance(debounce.hold_poll_ms)
      assert.are.equal(1, #fired)
      assert.are.same({ "a.go", "b.go" }, fired[1].paths)
    end)
  end)

  it("with the user's delay, fires that long after everything settled", function()
    new({ delay = 20 })
    d:push({ ev("modify", "a.go", false) })
    clock.advance(100)
    d:push({ ev("close", "a.go", true) })
    clock.advance(19)
    assert.are.equal(0, #fired)
    clock.advance(1)
    assert.are.equal(1, #fired)
  end)

  it("with a delay of 0, still waits for the writer to close", function()
    new({ delay = 0 })
    d:push({ ev("modify", "a.go", false) })
    clock.advance(10)
    assert.are.equal(0, #fired)
    d:push({ ev("close", "a.go", true) })
    clock.advance(0)
    assert.are.equal(1, #fired)
  end)

  it("carries an overflow through even with no path", function()
    d:push({}, true)
    clock.advance(debounce.storm_quiet_ms)
    assert.are.equal(1, #fired)
    assert.is_true(fired[1].overflow)
  end)

  it("starts afresh after firing", function()
    d:push({ ev("close", "a", true), ev("close", "b", true) })
    clock.advance(debounce.storm_quiet_ms)
    assert.are.equal(1, #fired)
    d:push({ ev("close", "c", true) })
    clock.advance(0)
    assert.are.equal(2, #fired)
    assert.are.same({ "c" }, fired[2].paths)
  end)

  it("drops everything on cancel", function()
    d:push({ ev("modify", "a", false) })
    d:cancel()
    clock.advance(1000)
    assert.are.equal(0, #fired)
    assert.is_false(d:pending())
  end)
end)
