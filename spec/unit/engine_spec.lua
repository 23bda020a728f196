-- The engine and its services against a fake core and a fake clock: policy only, no sleeps.
local engine = require("reload.engine")
local dsl = require("reload.dsl")
local log = require("reload.log")
local service = require("reload.service")
local debounce = require("reload.debounce")
local fake = require("spec.support.fake")
local helpers = require("spec.helpers")

local function config_of(text)
  local dir = helpers.tmpdir()
  helpers.write_file(dir .. "/Reloadfile.lua", text)
  return assert(dsl.load(dir .. "/Reloadfile.lua"))
end

describe("reload.engine", function()
  local core, clock, logged, saved_out

  before_each(function()
    core, clock = fake.core(), fake.clock()
    logged = {}
    saved_out = { log.out, log.services_out }
    log.out = { write = function(_, s) logged[#logged + 1] = s end, flush = function() end }
    log.services_out = log.out
    log.color = false
  end)

  after_each(function()
    log.out, log.services_out = saved_out[1], saved_out[2]
  end)

  local function text()
    return table.concat(logged)
  end

  local function start(cfg_text, opts)
    opts = opts or {}
    local e = engine.new({ config = config_of(cfg_text), core = core, clock = clock, env = {},
      loader = opts.loader })
    assert(e:start())
    return e
  end

  it("builds, then runs, and counts the service up once started", function()
    local e = start('service "api" { build = "make", run = { "./api" } }')
    local build = core.last("make")
    assert.are.same({ "/bin/sh", "-c", "make" }, build.opts.cmd)
    assert.is_nil(core.last("./api"))
    build:exit(0)
    local run = core.last("./api")
    assert.truthy(run)
    run:start()
    assert.is_true(e.by_name.api.up)
    assert.are.equal("ready", e.by_name.api.state.name)
  end)

  it("rebuilds on a matching change and replaces the old tree only after the build", function()
    local e = start('service "api" { watch = "**/*.go", build = "go build", run = "./api" }')
    core.last("go build"):exit(0)
    local old = core.last("./api")
    old:start()
    core.change("README.md")
    clock.advance(100)
    assert.are.equal(1, core.count("go build"))
    core.change("cmd/main.go")
    clock.advance(5)
    local build2 = core.last("go build")
    assert.are_not.equal(1, build2.id)
    assert.are.equal(0, old.stops) -- the old process keeps serving during the build
    build2:exit(0)
    assert.are.equal(1, old.stops)
    -- A keeper is ready (the spare), primed with the new command on the old keeper's gate:
    -- nothing new runs before the old tree is gone.
    local spare = core.last("./api")
    assert.are_not.equal(old, spare)
    assert.are.equal("primed", spare.state)
    assert.are.equal(0, spare.gos)
    assert.are.equal(old, spare.opts.after)
    old:exit(143)
    local new = core.last("./api")
    assert.are.equal(spare, new)
    assert.are.equal(1, new.gos)
    assert.are.equal(2, core.count("./api"))
    new:start()
    assert.matches("restarted in", text())
    assert.are.equal("ready", e.by_name.api.state.name)
  end)

  it("keeps the old process when the build fails, and shows the build's output", function()
    local e = start('service "api" { build = "go build", run = "./api" }')
    core.last("go build"):exit(0)
    local old = core.last("./api")
    old:start()
    core.change("main.go")
    clock.advance(5)
    core.last("go build"):exit(2, { output = "main.go:3: syntax error\n" })
    assert.are.equal(0, old.stops)
    assert.are.equal("ready", e.by_name.api.state.name)
    assert.matches("build failed.*exit status 2.*previous version keeps running", text())
    assert.matches("main.go:3: syntax error", text())
  end)

  it("cancels a build (its whole tree) when a change arrives during it", function()
    start('service "api" { build = "go build", run = "./api" }')
    local first = core.last("go build")
    core.change("a.go")
    clock.advance(5)
    assert.are.equal(1, first.kills)
    local second = core.last("go build")
    assert.are_not.equal(first, second)
    first:exit(137) -- the cancelled build's exit must not start anything
    assert.is_nil(core.last("./api"))
    second:exit(0)
    assert.truthy(core.last("./api"))
  end)

  it("backs off exponentially in a crash loop and resets after a stable run", function()
    start('service "w" { run = "./w", restart = "on-failure" }')
    local delays = {}
    for i = 1, 4 do
      local p = core.last("./w")
      p:start()
      local t0 = clock.now()
      p:exit(1)
      local before = core.count("./w")
      while core.count("./w") == before do
        clock.advance(10)
      end
      delays[i] = clock.now() - t0
    end
    for i = 2, 4 do
      assert.is_true(delays[i] >= delays[i - 1] * 2 - 20,
        "delays should double: " .. table.concat(delays, ", "))
    end
    assert.is_true(delays[4] <= service.backoff_max_ms + 10)
    -- A run that stayed up longer than stable_ms resets the backoff.
    local p = core.last("./w")
    p:start()
    clock.advance(service.stable_ms + 1)
    p:exit(1)
    local before = core.count("./w")
    clock.advance(service.backoff_base_ms)
    assert.are.equal(before + 1, core.count("./w"))
  end)

  it("does not restart a clean exit under on-failure, and never restarts under never", function()
    local e = start('service "w" { run = "./w", restart = "on-failure" }')
    local p = core.last("./w")
    p:start()
    p:exit(0)
    clock.advance(60000)
    assert.are.equal(p, core.last("./w"))
    assert.are.equal("exited", e.by_name.w.state.name)
  end)

  it("starts a service `after` another only once that one is ready", function()
    local e = start([[
service "db" { run = "./db", ready = { pattern = "accepting connections" } }
service "api" { run = "./api", after = { "db" } }
]])
    local db = core.last("./db")
    db:start()
    assert.is_nil(core.last("./api"))
    db.opts.on_stdout("booting\n")
    assert.is_nil(core.last("./api"))
    db.opts.on_stdout("ready: accepting connections\n")
    assert.truthy(core.last("./api"))
    assert.is_true(e.by_name.db.up)
  end)

  it("counts a one-shot task as up once it exited 0", function()
    start([[
service "migrate" { run = "./migrate", task = true }
service "api" { run = "./api", after = { "migrate" } }
]])
    local m = core.last("./migrate")
    m:start()
    assert.is_nil(core.last("./api"))
    m:exit(0)
    assert.truthy(core.last("./api"))
  end)

  it("applies wrappers to the run command, as argv", function()
    start([[
local function debugger(cmd)
  local out = { "dlv", "exec", cmd[1], "--" }
  for i = 2, #cmd do out[#out + 1] = cmd[i] end
  return out
end
service "api" { run = { "./api", "-v" }, wrap = debugger }
]])
    assert.are.same({ "dlv", "exec", "./api", "--", "-v" }, core.spawned[1].opts.cmd)
  end)

  it("runs Lua steps with ctx.sh and the changed paths", function()
    start([[
service "a" {
  build = function(ctx)
    local ok = ctx.sh("generate " .. #ctx.changed)
    if not ok then return false, "generate failed" end
    ctx.sh({ "compile" })
  end,
  run = "./a",
}
]])
    core.last("generate 0"):exit(0)
    core.last("compile"):exit(0)
    assert.truthy(core.last("./a"))
  end)

  it("reports an error in a user function and keeps running", function()
    local e = start([[
service "a" { build = function() error("hook exploded") end, run = "./a" }
service "b" { run = "./b" }
]])
    assert.matches("hook exploded", text())
    assert.matches("stack traceback", text())
    assert.are.equal("failed", e.by_name.a.state.name)
    assert.truthy(core.last("./b"))
  end)

  it("passes the changed paths in the environment", function()
    start('service "a" { build = "make", run = "./a" }')
    core.last("make"):exit(0)
    core.last("./a"):start()
    core.change("x/y.c", "z.h")
    clock.advance(debounce.storm_quiet_ms)
    local env = table.concat(core.last("make").opts.env, "\n")
    assert.matches("RELOAD_CHANGED=x/y.c\nz.h", env, 1, true)
    assert.matches("RELOAD_CHANGED_FILE=", env, 1, true)
    assert.matches("RELOAD_SERVICE=a", env, 1, true)
  end)

  it("stops every tree on quit and finishes once all are gone", function()
    local e = start([[
service "a" { run = "./a" }
service "b" { run = "./b", stop = { signal = "INT", grace = 1 } }
]])
    local a, b = core.last("./a"), core.last("./b")
    a:start()
    b:start()
    local finished = false
    e:quit(function() finished = true end)
    assert.are.equal(1, a.stops)
    assert.are.equal(1, b.stops)
    assert.is_true(core.watcher.closed)
    a:exit(143)
    assert.is_false(finished)
    b:exit(130)
    assert.is_true(finished)
  end)

  it("reloads the config: restarts only the changed service, keeps the old on error", function()
    local current = [[
service "a" { run = "./a" }
service "b" { run = "./b" }
]]
    local dir = helpers.tmpdir()
    local file = dir .. "/Reloadfile.lua"
    helpers.write_file(file, current)
    local e = engine.new({ config = assert(dsl.load(file)), core = core, clock = clock, env = {},
      loader = function() return dsl.load(file) end })
    assert(e:start())
    local a, b = core.last("./a"), core.last("./b")
    a:start()
    b:start()
    helpers.write_file(file, 'service "a" { run = "./a" }\nservice "b" { run = "./b2" }\n')
    core.change("Reloadfile.lua")
    assert.are.equal(0, a.stops)
    assert.are.equal(1, b.stops)
    b:exit(143)
    assert.truthy(core.last("./b2"))
    clock.advance(100) -- past any debounce: the Reloadfile is not a change of service "a"
    assert.are.equal(0, a.stops)
    -- A broken edit: the error is shown and nothing stops.
    helpers.write_file(file, 'service "a" { run = "./a", bogus = 1 }\n')
    core.change("Reloadfile.lua")
    assert.matches("Reloadfile.lua:1: service \"a\": unknown key 'bogus'", text())
    assert.matches("previous configuration keeps running", text())
    assert.are.equal(0, a.stops)
  end)

  it("treats a removed or moved directory as a change to its whole subtree", function()
    start('service "api" { watch = "**/*.go", build = "go build", run = "./api" }')
    core.last("go build"):exit(0)
    core.last("./api"):start()
    core.watcher.opts.on_events({ { path = "pkg/util", kind = "remove", dir = true } })
    clock.advance(debounce.removal_grace_ms)
    assert.are.equal(2, core.count("go build"))
    assert.matches("pkg/util/ changed", text())
  end)

  it("a removed directory concerns only services whose globs could match below it", function()
    start('service "api" { watch = { "src/**", "!src/gen/**" }, build = "make", ' ..
      'run = "./api" }\nservice "docs" { watch = "*.md", run = "./docs" }')
    core.last("make"):exit(0)
    core.last("./api"):start()
    local docs = core.last("./docs")
    docs:start()
    -- Anchored globs: "src/**" never matches below run/ (reload's own private directory, a
    -- build's temporary one); "*.md" matches at any depth.
    core.watcher.opts.on_events({ { path = "run/reload-1", kind = "remove", dir = true } })
    clock.advance(debounce.removal_grace_ms)
    assert.are.equal(1, core.count("make"))
    assert.are.equal(1, docs.stops)
    core.watcher.opts.on_events({ { path = "src", kind = "remove", dir = true } })
    clock.advance(debounce.removal_grace_ms)
    assert.are.equal(2, core.count("make"))
  end)

  it("starts one new process when changes arrive while the old tree is stopping", function()
    start('service "api" { run = "./api", debounce = 0 }')
    local old = core.last("./api")
    old:start()
    core.change("a.go")
    clock.advance(0)
    core.change("a.go")
    clock.advance(0)
    assert.are.equal(1, old.stops) -- the second change joins the stop under way
    old:exit(143)
    assert.are.equal(2, core.count("./api"), "one old and exactly one new process")
  end)

  it("holds every change while the project root is gone, and restarts once when it is back",
    function()
      local loads = 0
      local cfg_text = 'service "api" { watch = "**/*.go", build = "go build", run = "./api" }'
      start(cfg_text, { loader = function()
        loads = loads + 1
        return config_of(cfg_text)
      end })
      core.last("go build"):exit(0)
      core.last("./api"):start()
      -- rm -rf: the files' removals and the root's in one batch
      core.watcher.opts.on_events({ { path = "a.go", kind = "remove" }, { kind = "root-gone" } })
      assert.matches("project root removed; waiting for it to come back", text())
      core.change("b.go") -- cannot come from the real watcher, which watches nothing now
      clock.advance(1000)
      assert.are.equal(1, core.count("go build"), "nothing is built or started meanwhile")
      core.watcher.opts.on_events({ { kind = "root-back" }, { kind = "overflow" } })
      assert.are.equal(1, loads, "the Reloadfile is loaded again")
      clock.advance(1000)
      assert.are.equal(2, core.count("go build"))
      assert.matches("api: the project root came back: building", text())
      assert.is_nil(text():find("overflowed", 1, true))
    end)

  it("names the processes the keeper could not stop, and says so on the restart line", function()
    start('service "api" { run = "./api", debounce = 0 }')
    local old = core.last("./api")
    old:start()
    core.change("a.go")
    clock.advance(0)
    assert.are.equal(1, old.stops)
    old:give_up({ { pid = 4242, uid = 0, comm = "sudo", error = "EPERM" } })
    local new = core.last("./api")
    assert.are_not.equal(old, new, "the next generation starts: nothing can end the survivor")
    new:start()
    assert.matches("api: cannot stop pid 4242 %(uid 0, 'sudo'%): not permitted; it keeps running",
      text())
    assert.matches("api: restarted in .*; 1 process of the previous run could not be stopped " ..
      "and still runs", text())
    assert.is_nil(text():find("stopped with SIGKILL", 1, true), text())
  end)

  describe("a restart without build steps", function()
    it("stops the old tree during the quiet period, then starts in the spare keeper", function()
      local e = start('service "api" { run = "./api" }')
      local old = core.last("./api")
      old:start()
      assert.are.equal(0, #core.spares())
      clock.advance(service.spare_delay_ms)
      local spare = core.spares()[1] -- spawned a moment after the start, held, no command
      assert.truthy(spare)
      assert.is_true(spare.opts.hold)
      -- a.go is being written: the teardown starts at once, the save is not over yet
      core.watcher.opts.on_events({ { path = "a.go", kind = "modify", settled = false } })
      assert.are.equal(1, old.stops) -- at once: the rest of the save and the teardown overlap
      old:exit(143)
      assert.are.equal(0, spare.gos) -- the burst is not over yet
      core.watcher.opts.on_events({ { path = "a.go", kind = "close", settled = true } })
      assert.are.equal(1, spare.gos)
      assert.are.equal(spare, core.last("./api"))
      assert.matches("RELOAD_CHANGED=a.go", table.concat(spare.opts.env, "\n"), 1, true)
      assert.are.equal(2, core.count("./api"))
      spare:start()
      assert.are.equal("ready", e.by_name.api.state.name)
      clock.advance(service.spare_delay_ms)
      assert.are.equal(1, #core.spares()) -- and the next one
    end)

    it("spawns a spare at once when a change comes before one was ready", function()
      start('service "api" { run = "./api" }')
      local old = core.last("./api")
      old:start()
      core.change("a.go")
      assert.are.equal(1, old.stops)
      local spare = core.last("./api")
      assert.are_not.equal(old, spare)
      assert.are.equal("primed", spare.state) -- spawned during the stop, and primed at once
      old:exit(143)
      clock.advance(5)
      assert.are.equal(spare, core.last("./api"))
      assert.are.equal(1, spare.gos)
    end)

    it("passes every path of the burst to the new process", function()
      start('service "api" { run = "./api" }')
      local old = core.last("./api")
      old:start()
      -- a.go is still being written when b.go comes: one burst
      core.watcher.opts.on_events({ { path = "a.go", kind = "modify", settled = false } })
      clock.advance(2)
      core.change("b.go")
      core.watcher.opts.on_events({ { path = "a.go", kind = "close", settled = true } })
      old:exit(143)
      clock.advance(debounce.storm_quiet_ms)
      local new = core.last("./api")
      assert.matches("RELOAD_CHANGED=a.go\nb.go", table.concat(new.opts.env, "\n"), 1, true)
      assert.are.equal(2, core.count("./api"))
    end)

    it("starts the new process at tree-empty, and the old one's exit changes nothing", function()
      local e = start('service "api" { run = "./api", debounce = 0 }')
      local old = core.last("./api")
      old:start()
      core.change("a.go")
      clock.advance(0)
      old:empty()
      local new = core.last("./api")
      assert.are_not.equal(old, new)
      assert.are.equal(1, new.gos)
      new:start()
      old:exit(143)
      assert.are.equal("ready", e.by_name.api.state.name)
      assert.is_nil(text():find("exited with", 1, true))
      assert.are.equal(2, core.count("./api"))
    end)

    it("calls a run function once per restart", function()
      start([[
local calls = 0
service "api" { run = function() calls = calls + 1; return { "./api", tostring(calls) } end }
]])
      local old = core.last("./api")
      assert.are.same({ "./api", "1" }, old.opts.cmd)
      old:start()
      core.change("a.go")
      old:exit(143)
      clock.advance(5)
      assert.are.same({ "./api", "2" }, core.last("./api").opts.cmd)
    end)

    it("on quit, stops the spare too and finishes once it is gone", function()
      local e = start('service "api" { run = "./api" }')
      local old = core.last("./api")
      old:start()
      clock.advance(service.spare_delay_ms)
      local spare = core.spares()[1]
      local finished = false
      e:quit(function() finished = true end)
      assert.are.equal(1, spare.stops)
      old:exit(143)
      assert.is_false(finished)
      spare:exit(0, { cancelled = true })
      assert.is_true(finished)
      assert.are.equal(0, spare.gos)
    end)

    it("on quit during a restart, stops the primed command too, started or not", function()
      for _, started in ipairs({ false, true }) do
        local e = start('service "api" { run = "./api", debounce = 0 }')
        local old = core.last("./api")
        old:start()
        clock.advance(service.spare_delay_ms)
        core.change("a.go")
        clock.advance(0)
        local primed = core.last("./api")
        assert.are.equal("primed", primed.state)
        if started then
          old:opened() -- its gate: the keeper starts it before reload has read "tree-empty"
          assert.are.equal(1, primed.gos)
          primed:start()
        end
        local finished = false
        e:quit(function() finished = true end)
        assert.are.equal(1, primed.stops, "the primed run is stopped with the old one")
        old:exit(143)
        assert.is_false(finished, "quit waits for the primed run's tree")
        if started then
          primed:exit(143)
        else
          primed:exit(0, { cancelled = true })
        end
        assert.is_true(finished)
        assert.is_nil(text():find("restarted", 1, true),
          "a cancelled run is not a restart: " .. text())
      end
    end)
  end)
end)
