local dsl = require("reload.dsl")
local helpers = require("spec.helpers")

local function load(text, flags)
  local dir = helpers.tmpdir()
  helpers.write_file(dir .. "/Reloadfile.lua", text)
  return dsl.load(dir .. "/Reloadfile.lua", flags)
end

describe("reload.dsl", function()
  it("loads a service with defaults filled in", function()
    local config = assert(load([[
service "api" {
  build = "go build -o tmp/api .",
  run = { "tmp/api", "--port", "8080" },
}
]]))
    local svc = config.by_name.api
    assert.are.same({ "**" }, svc.watch)
    assert.are.equal("shell", svc.build[1].kind)
    assert.are.equal("argv", svc.run.kind)
    assert.are.same({ signal = "TERM", grace = 3 }, svc.stop)
    assert.are.equal("never", svc.restart)
    assert.are.equal(1, svc.line)
  end)

  it("names the unknown key, its line and a suggestion", function()
    local _, err = load([[
service "api" {
  run = "x",

  wacth = { "*.go" },
}
]])
    assert.are.equal("Reloadfile.lua:4: service \"api\": unknown key 'wacth' " ..
      "(did you mean 'watch'?)", err)
  end)

  it("names a wrong type with its line", function()
    local _, err = load([[
service "a" { run = "x" }
service "b" {
  run = "y",
  stop = { signal = "TERM", grace = "soon" },
}
]])
    assert.matches("^Reloadfile.lua:4: service \"b\": 'stop.grace' must be a number", err)
  end)

  it("rejects an unknown signal and an unknown restart policy", function()
    local _, err = load('service "a" { run = "x", stop = { signal = "TREM" } }')
    assert.matches("Reloadfile.lua:1: .*unknown signal 'TREM'", err)
    _, err = load('service "a" {\n run = "x",\n restart = "sometimes" }')
    assert.matches("Reloadfile.lua:3: .*'restart' must be", err)
  end)

  it("names an unknown service in after, with its line", function()
    local _, err = load([[
service "db" { run = "x" }
service "api" {
  run = "y",
  after = { "bd" },
}
]])
    assert.are.equal("Reloadfile.lua:4: service \"api\": 'after' names an unknown service " ..
      "\"bd\" (did you mean 'db'?)", err)
  end)

  it("gives the terminal to one service at most (stdin = true), naming the second's line",
    function()
      local _, err = load([[
service "a" { run = "x", stdin = true }
service "b" {
  run = "y",
  stdin = true,
}
]])
      assert.are.equal("Reloadfile.lua:4: service \"b\": 'stdin' is already given to service " ..
        "\"a\"; one service at most reads the terminal", err)
    end)

  it("takes tty = false (pipes), and refuses a tty that is not a boolean", function()
    local config = assert(load([[service "a" { run = "x", tty = false }
service "b" { run = "y" }]]))
    assert.is_false(config.by_name.a.tty)
    assert.is_true(config.by_name.b.tty)
    local _, err = load([[service "a" { run = "x", tty = 1 }]])
    assert.matches("^Reloadfile.lua:1: .*'tty' must be true or false", err)
  end)

  it("finds a cycle in after", function()
    local _, err = load([[
service "a" { run = "x", after = { "b" } }
service "b" { run = "y", after = { "a" } }
]])
    assert.matches("cycle: a %-> b %-> a", err)
  end)

  it("reports a Lua syntax error and a runtime error with their lines", function()
    local _, err = load('service "a" {\n run = "x"\n watch = 1 }')
    assert.matches("^Reloadfile.lua:3:", err)
    _, err = load('local x = nil\n\nlocal y = x.field\n')
    assert.matches("^Reloadfile.lua:3: attempt to index", err)
  end)

  it("tells a list of steps from an argv table", function()
    local config = assert(load([[
service "a" {
  build = steps { "make gen", "make" },
  run = "x",
}
service "b" {
  build = { { "make", "gen" }, function() end },
  run = "x",
}
]]))
    assert.are.equal(2, #config.by_name.a.build)
    assert.are.equal("shell", config.by_name.a.build[1].kind)
    assert.are.equal("argv", config.by_name.b.build[1].kind)
    assert.are.equal("lua", config.by_name.b.build[2].kind)
    local _, err = load('service "a" {\n build = { "make gen", "make" },\n run = "x" }')
    assert.matches("Reloadfile.lua:2: .*contains a space.*steps", err)
  end)

  it("passes command-line flags to flag()", function()
    local text = [[
service "a" { run = flag("debug") and "dlv exec app" or "app", env = { MODE = flag("mode", "dev") } }
]]
    local plain = assert(load(text))
    assert.are.equal("app", plain.by_name.a.run.cmd)
    assert.are.equal("dev", plain.by_name.a.env.MODE)
    local debug = assert(load(text, { debug = true, mode = "prod" }))
    assert.are.equal("dlv exec app", debug.by_name.a.run.cmd)
    assert.are.equal("prod", debug.by_name.a.env.MODE)
  end)

  it("requires project modules from .reload/ and records them to be watched", function()
    local dir = helpers.tmpdir()
    assert(os.execute("mkdir -p " .. dir .. "/.reload"))
    helpers.write_file(dir .. "/.reload/team.lua", 'return { cmd = "team-run" }')
    helpers.write_file(dir .. "/Reloadfile.lua",
      'local team = require("team")\nservice "a" { run = team.cmd }\n')
    local config = assert(dsl.load(dir .. "/Reloadfile.lua"))
    assert.are.equal("team-run", config.by_name.a.run.cmd)
    assert.are.same({ dir .. "/.reload/team.lua" }, config.modules)
    -- A second load sees an edit of the module (it is not cached across loads).
    helpers.write_file(dir .. "/.reload/team.lua", 'return { cmd = "edited" }')
    config = assert(dsl.load(dir .. "/Reloadfile.lua"))
    assert.are.equal("edited", config.by_name.a.run.cmd)
  end)

  it("gives equal fingerprints to equal definitions and different ones otherwise", function()
    local a = assert(load('service "a" { run = "x", build = function() return 1 end }'))
    local b = assert(load('service "a" { run = "x", build = function() return 1 end }'))
    local c = assert(load('service "a" { run = "x", build = function() return 2 end }'))
    assert.are.equal(a.by_name.a.fingerprint, b.by_name.a.fingerprint)
    assert.are_not.equal(a.by_name.a.fingerprint, c.by_name.a.fingerprint)
  end)

  it("stops a runaway Reloadfile at its budget, even one that catches the error", function()
    local budget = dsl.budget
    dsl.budget = 1000000
    local _, err = load('local function f() while true do end end\n' ..
      'while true do pcall(f) end\n')
    local _, err2 = load('coroutine.wrap(function()\n  while true do end\nend)()\n')
    dsl.budget = budget
    assert.matches("^Reloadfile.lua:[12]: the Reloadfile ran more than 1000000 Lua", err)
    assert.matches("^Reloadfile.lua:2: the Reloadfile ran more than", err2)
    -- The hook is gone once the load is over.
    assert.is_nil(debug.gethook())
  end)

  it("has no os.exit, and a module's error names the module", function()
    local _, err = load('service "a" { run = "x" }\nos.exit(1)\n')
    assert.matches("^Reloadfile.lua:2: os.exit is not available", err)
    local dir = helpers.tmpdir()
    assert(os.execute("mkdir -p " .. dir .. "/.reload/team"))
    helpers.write_file(dir .. "/.reload/team/init.lua", "\nreturn nil + 1\n")
    helpers.write_file(dir .. "/Reloadfile.lua", 'require("team")\n')
    _, err = dsl.load(dir .. "/Reloadfile.lua")
    assert.matches("^%.reload/team/init%.lua:2: attempt to perform arithmetic", err)
  end)

  it("finds the nearest Reloadfile in a parent", function()
    local dir = helpers.tmpdir()
    assert(os.execute("mkdir -p " .. dir .. "/a/b"))
    helpers.write_file(dir .. "/Reloadfile.lua", "")
    assert.are.equal(dir .. "/Reloadfile.lua", dsl.find(dir .. "/a/b"))
  end)
end)
