-- The contract between the unit specs' fake core (spec/support/fake.lua) and the real one: the
-- same scenarios, run against both, give the same sequence of the events the lifecycle acts on
-- ("started", "main-exit", "tree-empty", "exit", "dropped") with the same fields. If the C side
-- changes what it reports, this fails before the unit specs can drift from it.
local helpers = require("spec.helpers")
local fake = require("spec.support.fake")
local core = require("reload.core")

local treegen = helpers.fixture("treegen")
local LIFECYCLE = { started = true, ["main-exit"] = true, ["tree-empty"] = true, exit = true,
  dropped = true }

--- What a scenario's events say, as comparable lines.
local function trace(events)
  local out = {}
  for _, ev in ipairs(events) do
    if LIFECYCLE[ev.type] then
      local parts = { ev.type }
      for _, k in ipairs({ "code", "signal", "status", "forced", "cancelled" }) do
        if ev[k] ~= nil and ev[k] ~= false then
          parts[#parts + 1] = k .. "=" .. tostring(ev[k])
        end
      end
      if ev.spawn_error then
        parts[#parts + 1] = "spawn_error"
      end
      out[#out + 1] = table.concat(parts, " ")
    end
  end
  return out
end

local function has(events, type)
  for _, ev in ipairs(events) do
    if ev.type == type then return true end
  end
  return false
end

-- Each scenario: spawn options, then the same story told to the real core (run) and to the fake
-- (tell). `run` waits on the real events; `tell` plays them on the fake.
local scenarios = {
  {
    name = "a command that exits on its own with a status",
    opts = { cmd = { "/bin/sh", "-c", "exit 3" } },
    run = function() end,
    tell = function(p) p:exit(3) end,
  },
  {
    name = "a command stopped with the polite signal",
    opts = { cmd = { treegen, "sleep" } },
    run = function(p, events)
      helpers.wait_until(10000, function() return has(events, "started") end, "started")
      p:stop()
    end,
    tell = function(p)
      p:start()
      p:stop()
      p:exit(128 + 15)
    end,
  },
  {
    name = "a command killed at once",
    opts = { cmd = { treegen, "sleep" } },
    run = function(p, events)
      helpers.wait_until(10000, function() return has(events, "started") end, "started")
      p:kill()
    end,
    tell = function(p)
      p:start()
      p:kill()
      p:exit(128 + 9, { forced = true })
    end,
  },
  {
    name = "a command that cannot be executed",
    opts = { cmd = { "/nonexistent/command" } },
    run = function() end,
    tell = function(p) p:exit(127, { spawn_error = "ENOENT: no such file or directory" }) end,
  },
  {
    name = "a held keeper stopped before go",
    opts = { hold = true },
    run = function(p, events)
      helpers.wait_until(10000, function() return has(events, "held") end, "held")
      p:stop()
    end,
    tell = function(p) p:exit(0, { cancelled = true }) end,
  },
  {
    name = "a held keeper given its command",
    opts = { hold = true },
    run = function(p, events)
      helpers.wait_until(10000, function() return has(events, "held") end, "held")
      p:go({ cmd = { "/bin/sh", "-c", "exit 0" } })
    end,
    tell = function(p)
      p:go({ cmd = { "/bin/sh", "-c", "exit 0" } })
      p:exit(0)
    end,
  },
  {
    name = "a main command that exits 1 and leaves a helper, which a stop ends",
    opts = { cmd = { "/bin/sh", "-c", "setsid " .. treegen .. " sleep & exit 1" } },
    run = function(p, events)
      helpers.wait_until(10000, function() return has(events, "main-exit") end, "main-exit")
      p:stop()
    end,
    tell = function(p)
      p:start()
      p:main_exit(1)
      p:stop()
      p:exit(1)
    end,
  },
  {
    name = "a next run queued in the keeper, which runs it once the stopped tree is gone",
    next = true,
    opts = { cmd = { treegen, "sleep" } },
    run = function(p, events)
      helpers.wait_until(10000, function() return has(events, "started") end, "started")
      assert(p:next({ cmd = { "/bin/sh", "-c", "exit 4" } }))
      p:stop({ linger = true })
    end,
    tell = function(p)
      p:start()
      assert(p:next({ cmd = { "/bin/sh", "-c", "exit 4" } }))
      p:stop({ linger = true })
      p:main_exit(128 + 15)
      p:empty()
      p:exit(4)
    end,
  },
  {
    name = "a next run dropped before the tree is gone",
    next = true,
    opts = { cmd = { treegen, "sleep" } },
    run = function(p, events)
      helpers.wait_until(10000, function() return has(events, "started") end, "started")
      assert(p:next({ cmd = { "/bin/sh", "-c", "exit 4" } }))
      p:drop_next()
      helpers.wait_until(10000, function() return has(events, "dropped") end, "dropped")
      p:stop()
    end,
    tell = function(p)
      p:start()
      assert(p:next({ cmd = { "/bin/sh", "-c", "exit 4" } }))
      p:drop_next()
      p:stop()
      p:exit(128 + 15)
    end,
  },
}

describe("the fake core keeps the real core's contract", function()
  for _, sc in ipairs(scenarios) do
    it(sc.name, function()
      local real = {}
      local opts = { grace_ms = 2000, stdout = "null", stderr = "null" }
      for k, v in pairs(sc.opts) do opts[k] = v end
      opts.on_event = function(ev) real[#real + 1] = ev end
      local p = assert(core.spawn(opts))
      sc.run(p, real)
      helpers.wait_until(15000, function() return has(real, "exit") end, function()
        return "the exit event; seen: " .. table.concat(trace(real), ", ")
      end)

      local told = {}
      local fcore = fake.core({ next = sc.next })
      local fopts = {}
      for k, v in pairs(sc.opts) do fopts[k] = v end
      fopts.on_event = function(ev) told[#told + 1] = ev end
      sc.tell(fcore.spawn(fopts))

      assert.are.same(trace(real), trace(told))
    end)
  end
end)
