-- What `reload check` accepts, `reload` runs: one schema, validated with the real core, through
-- the real binary. Every bad configuration is refused by both with the user's FILE:LINE and no
-- traceback; every good one that check accepts runs.
local helpers = require("spec.helpers")

local start = helpers.session

local stop = helpers.end_session

local function esc(s)
  return (s:gsub("%p", "%%%0"))
end

local function no_traceback(text)
  assert.is_nil(text:find("traceback", 1, true), text)
  assert.is_nil(text:find("/lua/reload/", 1, true), text)
  assert.is_nil(text:find("dsl.lua", 1, true), text)
end

--- check and reload both refuse the file with the same FILE:LINE message; returns it.
local function refused(files, expected)
  local dir = helpers.project(files)
  local code, out, err = helpers.reload({ "check" }, { cwd = dir })
  assert.are.equal(1, code, out .. err)
  assert.matches(expected, err)
  no_traceback(out .. err)
  local rcode, rout, rerr = helpers.reload({}, { cwd = dir, timeout_ms = 10000 })
  assert.are.equal(1, rcode, rout .. rerr)
  assert.matches(expected, rerr)
  no_traceback(rout .. rerr)
  return err
end

describe("check and reload agree", function()
  it("refuse a malformed watch glob, an empty one and a lone exclusion, at FILE:LINE", function()
    refused({ ["Reloadfile.lua"] = 'service "a" {\n  run = "true",\n' ..
      '  watch = { "*.txt", "src/[" },\n}\n' },
      "Reloadfile.lua:3: service \"a\": 'watch'%[2%]: unterminated '%[' in pattern 'src/%['")
    refused({ ["Reloadfile.lua"] = 'service "a" { run = "true", watch = { "" } }\n' },
      "Reloadfile.lua:1: service \"a\": 'watch'%[1%]: empty pattern")
    refused({ ["Reloadfile.lua"] = 'service "a" { run = "true", watch = { "!x" } }\n' },
      "Reloadfile.lua:1: .*'!x' only excludes")
    refused({ ["Reloadfile.lua"] = 'service "a" { run = "true", ignore = "[z" }\n' },
      "Reloadfile.lua:1: .*'ignore'%[1%]: unterminated")
  end)

  it("refuse a malformed global ignore pattern (check itself used to crash)", function()
    refused({ ["Reloadfile.lua"] = 'ignore { "tmp/", "[" }\nservice "a" { run = "true" }\n' },
      "Reloadfile.lua:1: 'ignore'%[2%]: unterminated '%['")
  end)

  it("refuse a bad Lua ready pattern, a missing cwd, and say where a require failed", function()
    refused({ ["Reloadfile.lua"] = 'service "a" { run = "true",\n' ..
      '  ready = { lua_pattern = "loaded 100%" } }\n' },
      "Reloadfile.lua:2: .*not a valid Lua pattern: malformed pattern %(ends with '%%'%)")
    refused({ ["Reloadfile.lua"] = 'service "a" { run = "true", cwd = "nonexistent" }\n' },
      "Reloadfile.lua:1: service \"a\": 'cwd': .*/nonexistent is not a directory")
    refused({ ["Reloadfile.lua"] = '-- a comment\nlocal x = require("nosuch")\n' },
      "Reloadfile.lua:2: module 'nosuch' not found")
    refused({
      [".reload/team.lua"] = "local t = nil\n\nreturn t.field\n",
      ["Reloadfile.lua"] = 'local team = require("team")\nservice "a" { run = "true" }\n',
    }, "%.reload/team%.lua:3: attempt to index a nil value")
    refused({ ["Reloadfile.lua"] = 'local go = require("reload.recipes.go")\n\n' ..
      'service "a" (go.service { nmae = "x" })\n' },
      "Reloadfile.lua:3: recipes.go: unknown option 'nmae'")
  end)

  it("reload run -w with a malformed glob is a usage error (2)", function()
    local code, _, err = helpers.reload({ "run", "-w", "[", "--", "true" })
    assert.are.equal(2, code)
    assert.matches("%-w: unterminated '%['", err)
    no_traceback(err)
  end)

  it("run what check accepts: a negated watch glob excludes, STKFLT stops", function()
    local dir = helpers.project({
      ["a.go"] = "1", ["a_test.go"] = "1",
      ["Reloadfile.lua"] = [[
service "s" {
  watch = { "**/*.go", "!**/*_test.go" },
  run = { "bash", "-c", "trap 'echo got-stkflt; exit 0' STKFLT; echo run-$$; " ..
    "while :; do sleep 0.05; done" },
  stop = { signal = "STKFLT", grace = 5 },
}
]],
    })
    local code, out, err = helpers.reload({ "check" }, { cwd = dir })
    assert.are.equal(0, code, out .. err)
    assert.matches("SIGSTKFLT", out)
    local proc, marker = start(dir)
    proc:wait_output("run%-%d+")
    helpers.write_file(dir .. "/a_test.go", "2")
    helpers.write_file(dir .. "/a.go", "2")
    proc:wait_output("got%-stkflt")
    helpers.retry(5000, function()
      local _, n = proc:text():gsub("run%-%d+", "")
      return n == 2, proc:text()
    end)
    assert.matches("a%.go changed", proc:text())
    assert.is_nil(proc:text():find("a_test.go", 1, true), proc:text())
    stop(proc, marker)
  end)

  it("ready text is plain: '[INFO] server ready' and 'loaded 100%' both match", function()
    local dir = helpers.project({
      ["Reloadfile.lua"] = [[
service "info" { run = "echo '[INFO] server ready'; sleep 1000", ready = "[INFO] server ready" }
service "pct" { run = "echo 'loaded 100%'; sleep 1000", ready = { pattern = "loaded 100%" } }
service "lua" { run = "echo 'port 8123'; sleep 1000", ready = { lua_pattern = "port %d+" } }
service "after" { run = "echo all-up; sleep 1000", after = { "info", "pct", "lua" } }
]],
    })
    local code, out, err = helpers.reload({ "check" }, { cwd = dir })
    assert.are.equal(0, code, out .. err)
    assert.matches("output containing '%[INFO%] server ready'", out)
    local proc, marker = start(dir)
    proc:wait_output("all%-up")
    no_traceback(proc:text())
    stop(proc, marker)
  end)

  it("a live edit with a bad glob is an error; the old configuration keeps running", function()
    local dir = helpers.project({
      ["Reloadfile.lua"] = 'service "a" { run = "echo v1; sleep 1000", watch = "*.txt" }\n',
    })
    local proc, marker = start(dir)
    proc:wait_output("\nv1\n", 10000, true) -- a line of its own, not the temp dir's name
    helpers.write_file(dir .. "/Reloadfile.lua",
      'service "a" {\n  run = "echo v2; sleep 1000",\n  watch = { "*.txt", "src/[" } }\n')
    proc:wait_output("Reloadfile.lua:3: service \"a\": 'watch'[2]", 5000, true)
    proc:wait_output("previous configuration keeps running", 5000, true)
    assert.is_nil(("\n" .. proc:text()):find("\nv2\n", 1, true), proc:text())
    no_traceback(proc:text())
    stop(proc, marker)
  end)
end)

describe("recipes merge field by field", function()
  it("env, watch and ignore add to the recipe's; replace{} replaces", function()
    local dir = helpers.project({
      ["app.py"] = "", ["keep.log"] = "",
      ["Reloadfile.lua"] = [[
local py = require("reload.recipes.python")
service "merged" (py.app {
  env = { EXTRA = "x" }, watch = { "*.log" }, ignore = { "!keep.log" },
  run = "echo merged:$PYTHONUNBUFFERED:$EXTRA; sleep 1000",
})
service "replaced" (py.app {
  env = replace { EXTRA = "y" }, watch = replace { "*.nothing" },
  run = "echo replaced:$PYTHONUNBUFFERED:$EXTRA; sleep 1000",
})
]],
    })
    local code, out, err = helpers.reload({ "check" }, { cwd = dir })
    assert.are.equal(0, code, out .. err)
    assert.matches("env      EXTRA=x PYTHONUNBUFFERED=1\n", out)
    assert.matches("watch    %*%*/%*%.py pyproject%.toml requirements%*%.txt %*%.log\n", out)
    local proc, marker = start(dir, {}, { PYTHONUNBUFFERED = false, EXTRA = false })
    proc:wait_output("merged:1:x", 10000, true)
    proc:wait_output("replaced::y", 10000, true)
    -- keep.log: watched by "merged" (its ignore takes *.log... back), not by "replaced".
    helpers.write_file(dir .. "/keep.log", "2")
    proc:wait_output("merged: keep.log changed", 10000, true)
    assert.is_nil(proc:text():find("replaced: keep.log", 1, true), proc:text())
    stop(proc, marker)
  end)
end)

describe("what cannot be validated before start is said in words", function()
  it("names a missing program, and a run function that returned nil", function()
    local dir = helpers.project({
      ["Reloadfile.lua"] = [[
service "argv" { run = { "no-such-program-x", "arg" }, watch = "*.none" }
service "fn" { run = function() return nil end, watch = "*.none" }
]],
    })
    local code, out, err = helpers.reload({ "check" }, { cwd = dir })
    assert.are.equal(0, code, out .. err)
    local proc, marker = start(dir)
    proc:wait_output("no-such-program-x: program not found in PATH", 10000, true)
    proc:wait_output("the run function (function at line 2) returned nil", 10000, true)
    no_traceback(proc:text())
    stop(proc, marker)
  end)
end)

describe("a Reloadfile is evaluated safely", function()
  local function live_edit(text, expected)
    local dir = helpers.project({
      ["Reloadfile.lua"] = 'service "a" { run = "echo v1; sleep 1000", watch = "*.txt" }\n',
    })
    local proc, marker = start(dir)
    proc:wait_output("\nv1\n", 10000, true) -- a line of its own, not the temp dir's name
    helpers.write_file(dir .. "/Reloadfile.lua", text)
    proc:wait_output(expected, 15000, true)
    proc:wait_output("previous configuration keeps running", 5000, true)
    -- Still alive and answering signals: SIGTERM quits cleanly.
    stop(proc, marker, "sigterm")
    assert.is_nil(("\n" .. proc:text()):find("\nv2\n", 1, true), proc:text())
  end

  it("an edit with an endless loop is an error, not a freeze", function()
    live_edit('service "a" { run = "echo v2; sleep 1000" }\nwhile true do end\n',
      "Reloadfile.lua:2: the Reloadfile ran more than")
  end)

  it("an edit that calls os.exit is an error, not the end of the session", function()
    live_edit('service "a" { run = "echo v2; sleep 1000" }\nos.exit(0)\n',
      "Reloadfile.lua:2: os.exit is not available")
  end)

  it("refuses a Reloadfile writable by others, or owned by another user; trusted on request",
    function()
      local dir = helpers.project({
        ["Reloadfile.lua"] = 'service "a" { run = "true" }\n',
        ["sub/.keep"] = "",
      })
      local xdg = helpers.tmpdir()
      local env = helpers.env_with({ XDG_CONFIG_HOME = xdg })
      assert(os.execute("chmod o+w " .. dir .. "/Reloadfile.lua"))
      -- Found in a parent directory, as /tmp/Reloadfile.lua would be.
      local code, out, err = helpers.reload({ "check" }, { cwd = dir .. "/sub", env = env })
      assert.are.equal(1, code, out .. err)
      assert.matches("refusing to run " .. esc(dir) .. "/Reloadfile.lua: every user can write it",
        err)
      assert.matches("echo " .. dir .. " >> " .. xdg .. "/reload/trusted", err, 1, true)
      code = helpers.reload({}, { cwd = dir .. "/sub", env = env })
      assert.are.equal(1, code)
      assert(os.execute("chmod o-w " .. dir .. "/Reloadfile.lua"))
      -- Owned by nobody. (As root, as here, root's own files are trusted, nobody's are not.)
      assert(os.execute("chown nobody " .. dir .. "/Reloadfile.lua"))
      code, out, err = helpers.reload({ "check" }, { cwd = dir .. "/sub", env = env })
      assert.are.equal(1, code, out .. err)
      assert.matches("it is owned by nobody %(uid %d+%), not by you", err)
      -- The way the message says allows it.
      assert(os.execute(("mkdir -p %s/reload && echo %s >> %s/reload/trusted"):format(xdg, dir,
        xdg)))
      code, out, err = helpers.reload({ "check" }, { cwd = dir .. "/sub", env = env })
      assert.are.equal(0, code, out .. err)
    end)

  it("refuses a required module writable by others", function()
    local dir = helpers.project({
      [".reload/team.lua"] = 'return { cmd = "true" }\n',
      ["Reloadfile.lua"] = 'local team = require("team")\nservice "a" { run = team.cmd }\n',
    })
    assert(os.execute("chmod o+w " .. dir .. "/.reload/team.lua"))
    local code, out, err = helpers.reload({ "check" }, { cwd = dir })
    assert.are.equal(1, code, out .. err)
    assert.matches("^Reloadfile.lua:1: refusing to run " .. esc(dir) .. "/%.reload/team%.lua",
      err)
  end)
end)
