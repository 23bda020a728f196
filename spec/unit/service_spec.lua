-- The service lifecycle against a fake core and clock: every way into a restart, and the two
-- rules it keeps on each (no generation N+1 while N lives; N stopped only once N+1 is runnable).
local engine = require("reload.engine")
local dsl = require("reload.dsl")
local log = require("reload.log")
local service = require("reload.service")
local loopguard = require("reload.loopguard")
local fake = require("spec.support.fake")
local helpers = require("spec.helpers")

describe("reload.service lifecycle", function()
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

  --- An engine on a Reloadfile that the spec can edit: returns the engine and edit(text).
  local function start(cfg_text)
    local dir = helpers.tmpdir()
    local file = dir .. "/Reloadfile.lua"
    helpers.write_file(file, cfg_text)
    local e = engine.new({ config = assert(dsl.load(file)), core = core, clock = clock, env = {},
      loader = function() return dsl.load(file) end })
    assert(e:start())
    local function edit(new_text)
      helpers.write_file(file, new_text)
      core.change("Reloadfile.lua")
    end
    return e, edit
  end

  --- Processes whose command contains text and that may be alive (not exited).
  local function alive(text_)
    local n = 0
    for _, p in ipairs(core.spawned) do
      if p.opts.cmd and table.concat(p.opts.cmd, " "):find(text_, 1, true) and
        p.state ~= "exited" and not p.emptied then
        n = n + 1
      end
    end
    return n
  end

  describe("a Reloadfile edit", function()
    it("builds first, stops the old generation, and starts the new one once it is gone",
      function()
        local e, edit = start('service "api" { build = "make", run = "./api v1" }')
        core.last("make"):exit(0)
        local old = core.last("./api v1")
        old:start()
        edit('service "api" { build = "make", run = "./api v2" }')
        assert.are.equal(0, old.stops, "the old one serves during the build")
        assert.are.equal("preparing", e.by_name.api.state.name)
        core.last("make"):exit(0)
        assert.are.equal(1, old.stops)
        assert.is_nil(core.last("./api v2"), "nothing new while the old tree lives")
        old:empty()
        local new = core.last("./api v2")
        assert.truthy(new)
        new:start()
        assert.are.equal("ready", e.by_name.api.state.name)
        assert.matches("restarted in .* after its definition changed", text())
        assert.are.equal(1, alive("./api"))
      end)

    it("keeps the old generation when the new definition's build fails", function()
      local e, edit = start('service "api" { build = "make", run = "./api v1" }')
      core.last("make"):exit(0)
      local old = core.last("./api v1")
      old:start()
      edit('service "api" { build = "make broken", run = "./api v2" }')
      core.last("make broken"):exit(2, { output = "broken\n" })
      assert.are.equal(0, old.stops)
      assert.are.equal("ready", e.by_name.api.state.name)
      assert.matches("previous version keeps running", text())
    end)

    it("starts a new service only once a removed one is gone (it may take its port)",
      function()
        local _, edit = start('service "a" { run = "./a" }')
        local a = core.last("./a")
        a:start()
        edit('service "b" { run = "./b" }')
        assert.are.equal(1, a.stops)
        assert.is_nil(core.last("./b"))
        a:exit(143)
        assert.truthy(core.last("./b"))
      end)
  end)

  describe("the crash policy", function()
    it("stops what a crashed command left running, then restarts after the backoff",
      function()
        local e = start('service "w" { run = "./w", restart = "on-failure" }')
        local p = core.last("./w")
        p:start()
        p.left = 1
        p:main_exit(1)
        assert.are.equal(1, p.stops)
        assert.matches("stopping the 1 process it left running", text())
        assert.are.equal("stopping", e.by_name.w.state.name)
        p:empty()
        assert.are.equal("backoff", e.by_name.w.state.name)
        clock.advance(service.backoff_base_ms)
        assert.are.equal(2, core.count("./w"))
      end)

    it("follows what a command that exited 0 left running (a daemon)", function()
      local e = start('service "d" { run = "./d --daemon", restart = "on-failure" }')
      local p = core.last("./d")
      p:start()
      p.left = 1
      p:main_exit(0)
      assert.are.equal(0, p.stops)
      assert.are.equal("ready", e.by_name.d.state.name)
      p:exit(0)
      assert.are.equal("exited", e.by_name.d.state.name)
    end)

    it("does not rebuild for a crash restart", function()
      start('service "w" { build = "make", run = "./w", restart = "always" }')
      core.last("make"):exit(0)
      local p = core.last("./w")
      p:start()
      p:exit(1)
      clock.advance(service.backoff_base_ms)
      assert.are.equal(1, core.count("make"))
      assert.are.equal(2, core.count("./w"))
    end)
  end)

  describe("a change", function()
    it("that the run function rejects leaves the old generation serving", function()
      local e = start([[
service "api" {
  watch = "*.go",
  run = function(ctx)
    if ctx.changed[1] == "bad.go" then error("cannot run with bad.go") end
    return { "./api" }
  end,
}
]])
      local old = core.last("./api")
      old:start()
      core.change("bad.go")
      clock.advance(5)
      assert.are.equal(0, old.stops)
      assert.matches("cannot run with bad.go", text())
      assert.matches("previous version keeps running", text())
      assert.are.equal("ready", e.by_name.api.state.name)
      core.change("good.go")
      clock.advance(5)
      assert.are.equal(1, old.stops)
    end)

    it("that sends the run function into an endless loop is an error, not a freeze", function()
      local budget = require("reload.budget")
      local saved = budget.limit
      budget.limit = 1000000
      local ok, err = pcall(function()
        local e = start([[
service "api" {
  watch = "*.go",
  run = function(ctx)
    if ctx.changed[1] == "loop.go" then while true do end end
    return { "./api" }
  end,
  build = function(ctx)
    if ctx.changed[1] == "spin.go" then
      while true do pcall(function() while true do end end) end
    end
  end,
}
]])
        local old = core.last("./api")
        old:start()
        core.change("loop.go")
        clock.advance(0)
        assert.are.equal(0, old.stops)
        assert.matches("ran more than 1000000 Lua instructions", text())
        assert.are.equal("ready", e.by_name.api.state.name)
        core.change("spin.go") -- a pcall in the user's code cannot swallow it
        clock.advance(0)
        assert.are.equal(0, old.stops)
        local _, n = text():gsub("ran more than 1000000 Lua instructions", "")
        assert.are.equal(2, n)
      end)
      budget.limit = saved
      if not ok then error(err, 0) end
    end)

    it("during the stop of a service with a build builds again once the old tree is gone",
      function()
        local e = start('service "api" { build = "make", run = "./api" }')
        core.last("make"):exit(0)
        local old = core.last("./api")
        old:start()
        core.change("a.c")
        clock.advance(5)
        core.last("make"):exit(0)
        assert.are.equal(1, old.stops)
        local primed = core.last("./api") -- the spare, given the command that passed the build
        assert.are.equal("primed", primed.state)
        core.change("b.c") -- newer sources: the build that passed is stale
        clock.advance(5)
        assert.are.equal(1, primed.stops, "the stale command is cancelled")
        old:empty()
        -- The cancelled one may have started at the old tree's end: it is waited for too.
        assert.are.equal("stopping", e.by_name.api.state.name)
        primed:exit(0, { cancelled = true })
        assert.are.equal(0, primed.gos, "the stale command never ran")
        assert.are.equal("preparing", e.by_name.api.state.name)
        assert.are.equal(3, core.count("make"))
        assert.matches("RELOAD_CHANGED=a.c\nb.c", table.concat(core.last("make").opts.env, "\n"),
          1, true)
        core.last("make"):exit(0)
        local new = core.last("./api")
        assert.are_not.equal(primed, new)
        assert.are.equal("starting", new.state)
        assert.are.equal(3, core.count("./api")) -- the old one, the cancelled one, the new one
      end)
  end)

  describe("with a core whose keeper runs the next generation (p:next)", function()
    local saved_level
    before_each(function()
      core = fake.core({ next = true })
      saved_level, log.level = log.level, 2
    end)

    after_each(function()
      log.level = saved_level
    end)

    --- A service running "./api", changed once: generation 2 queued in the old keeper.
    local function changed_once()
      local e = start('service "api" { run = "./api" }')
      local old = core.last("./api")
      old:start()
      assert.are.equal("ready", e.by_name.api.state.name)
      core.change("a.c")
      clock.advance(5)
      assert.are.equal(1, old.nexts)
      return e, old
    end

    it("queues the new command in the old keeper, which runs it only once its tree is gone",
      function()
        local e, old = changed_once()
        assert.are.equal(1, old.stops)
        assert.are.same({ linger = true }, old.stop_opts, "a run may follow: no bye")
        assert.are.equal(0, #core.spares() > 0 and core.spares()[1].gos or 0)
        assert.matches("generation 2 waits in the same keeper for the end of generation 1", text())
        assert.are.equal("stopping", e.by_name.api.state.name)
        old:empty()
        assert.are.equal(2, old.runs, "the keeper ran the next command")
        assert.are.equal(old, core.last("./api"), "in the same handle")
        assert.are.equal(1, alive("./api"))
        assert.are.equal(2, e.by_name.api.generations)
        assert.are.equal("ready", e.by_name.api.state.name)
        -- And again: the keeper that ran generation 2 takes generation 3.
        core.change("b.c")
        clock.advance(5)
        assert.are.equal(2, old.nexts)
        old:empty()
        assert.are.equal(3, old.runs)
        assert.are.equal(3, e.by_name.api.generations)
        assert.are.equal("ready", e.by_name.api.state.name)
      end)

    --- The commands started after the first run: by the old keeper (its next runs) or by a
    --- spare keeper's go.
    local function launched(first)
      local out = {}
      for _, p in ipairs(core.spawned) do
        if p ~= first and p.gos > 0 then
          out[#out + 1] = table.concat(p.opts.cmd, " ")
        end
      end
      if (first.runs or 1) > 1 then
        out[#out + 1] = table.concat(first.opts.cmd, " ")
      end
      return out
    end

    it("drops the queued command when a newer change comes during the stop, and runs the " ..
      "newest once the old tree is gone", function()
        local e = start([[
service "api" { run = function(ctx) return { "./api", table.concat(ctx.changed, ",") } end }
]])
        local old = core.last("./api")
        old:start()
        core.change("a.c")
        clock.advance(5)
        assert.are.equal(1, old.nexts)
        assert.are.equal("./api a.c", table.concat(old.queued.cmd, " "))
        core.change("b.c")
        clock.advance(5)
        assert.is_true(old.queued == nil or table.concat(old.queued.cmd, " ") == "./api a.c,b.c",
          "the stale command is no longer queued")
        assert.are.same({}, launched(old), "nothing starts before the old tree is gone")
        old:empty()
        assert.are.same({ "./api a.c,b.c" }, launched(old), "one run, of the newest command")
        assert.are.equal(1, alive("./api"))
        assert.are.equal("starting", e.by_name.api.state.name)
      end)

    it("on quit during the stop, drops the queued command: nothing runs after the old tree",
      function()
        local e, old = changed_once()
        local finished = false
        e:quit(function() finished = true end)
        assert.is_nil(old.queued, "dropped")
        old:exit(143)
        assert.is_nil(old.runs, "the dropped command never ran")
        assert.is_false(finished, "the spare keeper is still to end")
        for _, p in ipairs(core.spawned) do
          if p ~= old and p.state ~= "exited" then
            assert.are.equal(0, p.gos, "a spare keeper, given no command")
            assert.are.equal(1, p.stops)
            p:exit(0, { cancelled = true })
          end
        end
        assert.is_true(finished)
        assert.are.equal(0, alive("./api"))
      end)
  end)

  describe("stop.to = \"main\"", function()
    local cfg = 'service "web" { run = "gunicorn v1", stop = { signal = "TERM", grace = 4, ' ..
      'to = "main" } }'

    it("signals the main process alone, then stops what is left once it exits", function()
      local e, edit = start(cfg)
      local old = core.last("gunicorn v1")
      old:start()
      edit(cfg:gsub("v1", "v2"))
      assert.are.same({ { sig = "TERM", scope = "main" } }, old.signals)
      assert.are.equal(0, old.stops, "no signal to the workers: the master stops them")
      clock.advance(1500)
      old:main_exit(0)
      assert.are.equal(1, old.stops)
      assert.are.same({ signal = "TERM", grace_ms = 2500, linger = true }, old.stop_opts)
      old:empty()
      core.last("gunicorn v2"):start()
      assert.are.equal("ready", e.by_name.web.state.name)
      assert.are.equal(0, old.kills)
    end)

    it("kills the whole tree when the grace ends before the main process exits", function()
      local _, edit = start(cfg)
      local old = core.last("gunicorn v1")
      old:start()
      edit(cfg:gsub("v1", "v2"))
      clock.advance(3999)
      assert.are.equal(0, old.kills)
      clock.advance(1)
      assert.are.equal(1, old.kills)
      assert.are.equal(0, old.stops)
      old:empty(true)
      assert.matches("stopped with SIGKILL after the 4%.00 s grace period", text())
    end)
  end)

  describe("after", function()
    it("a task that runs again restarts the services that come after it", function()
      start([[
service "gen" { watch = "*.proto", run = "./gen", task = true }
service "api" { watch = "*.go", run = "./api", after = { "gen" } }
service "web" { watch = "*.js", run = "./web", after = { "api" } }
]])
      core.last("./gen"):exit(0)
      local api = core.last("./api")
      api:start()
      local web = core.last("./web")
      web:start()
      core.change("x.proto")
      clock.advance(5)
      core.last("./gen"):exit(0)
      assert.are.equal(1, api.stops)
      assert.matches("api: gen ran again", text())
      -- A server that restarts does not restart the services after it.
      api:empty()
      core.last("./api"):start()
      assert.are.equal(0, web.stops)
    end)

    it("a restart waits while a service it comes after is down", function()
      local e = start([[
service "db" { watch = "*.sql", build = "make db", run = "./db" }
service "api" { watch = "*.go", run = "./api", after = { "db" } }
]])
      core.last("make db"):exit(0)
      local db = core.last("./db")
      db:start()
      local api = core.last("./api")
      api:start()
      core.change("schema.sql")
      clock.advance(5)
      core.last("make db"):exit(0)
      assert.are.equal(1, db.stops) -- db is down now
      core.change("main.go")
      clock.advance(5)
      api:empty()
      assert.are.equal("waiting", e.by_name.api.state.name)
      assert.are.equal(1, core.count("./api"))
      db:empty()
      core.last("./db"):start()
      assert.are.equal(2, core.count("./api"))
    end)
  end)

  describe("a service whose own start writes a watched file", function()
    it("is told once, with the glob to ignore, and its restarts back off", function()
      local e = start('service "web" { run = "./web" }')
      local starts = 0
      local function run_once(stamp)
        local p = core.last("./web")
        p:start()
        starts = starts + 1
        clock.advance(100) -- its start writes the file 100 ms in
        core.change(("vite.config.js.timestamp-%d-9b1e5a.mjs"):format(stamp))
        p:empty()
        clock.advance(0)
      end
      run_once(1732981234001)
      run_once(1732981234002)
      assert.are.equal(3, core.count("./web")) -- two restarts at once: could be the user
      run_once(1732981234003)
      assert.matches("web: restarted 3 times in a row because of vite%.config%.js%.timestamp%-" ..
        "1732981234003%-9b1e5a%.mjs, which its own start wrote: add ignore = " ..
        '{ "vite%.config%.js%.timestamp%-%*%-%*%.mjs" }', text())
      assert.are.equal(3, core.count("./web"), "held back")
      assert.matches("restarting in 2%.00 s", text())
      clock.advance(loopguard.backoff_ms)
      assert.are.equal(4, core.count("./web"))
      run_once(1732981234004)
      assert.matches("restarting in 4%.00 s", text())
      local _, said = text():gsub("which its own start wrote", "")
      assert.are.equal(1, said)
      -- A change long after a start is the user's: at once again.
      clock.advance(loopguard.backoff_ms * 2)
      assert.are.equal(5, core.count("./web"))
      local current = core.last("./web")
      current:start()
      clock.advance(loopguard.window_ms + 1)
      core.change("app.js")
      current:empty()
      clock.advance(0)
      assert.are.equal(6, core.count("./web"))
      assert.are.equal("starting", e.by_name.web.state.name)
    end)
  end)

  it("does not take a user saving the same file as fast as it restarts for a loop", function()
    start('service "web" { run = "./web" }')
    for i = 1, 5 do
      local p = core.last("./web")
      p:start()
      clock.advance(10)
      core.change("app.js")
      p:empty()
      clock.advance(0)
      assert.are.equal(i + 1, core.count("./web"))
    end
    assert.is_nil(text():find("its own start wrote", 1, true))
  end)

  it("refuses to spawn a generation while the previous one is alive (the invariant)", function()
    local e = start('service "api" { run = "./api" }')
    core.last("./api"):start()
    local svc = e.by_name.api
    assert.has_error(function()
      svc:spawn({ argv = { "./api" }, changed = {} })
    end, "api: generation 2 must not start while generation 1 is alive")
  end)

  it("tells listeners each step of a restart, as plain data", function()
    local e = start('service "api" { build = "make", run = "./api" }')
    local seen = {}
    e:listen(function(ev)
      seen[#seen + 1] = ev.type .. (ev.generation and (" " .. ev.generation) or "")
    end)
    core.last("make"):exit(0)
    core.last("./api"):start()
    core.change("a.c")
    clock.advance(0)
    core.last("make"):exit(2, { output = "oops\n" })
    core.change("a.c")
    clock.advance(0)
    core.last("make"):exit(0)
    core.spawned[2]:empty()
    core.last("./api"):start()
    local text_ = table.concat(seen, ", ")
    for _, want in ipairs({ "build_ok", "generation_started 1", "generation_ready 1", "changed",
      "build", "build_failed", "generation_gone 1", "generation_started 2",
      "generation_ready 2" }) do
      assert.truthy(text_:find(want, 1, true), want .. " in " .. text_)
    end
  end)

  it("on quit during a build, finishes once the build step's tree is gone", function()
    local e = start('service "api" { build = "make", run = "./api" }')
    local build = core.last("make")
    local finished = false
    e:quit(function() finished = true end)
    assert.are.equal(1, build.kills)
    assert.is_false(finished)
    build:exit(137)
    assert.is_true(finished)
  end)
end)
