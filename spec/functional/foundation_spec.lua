-- The executable, the module, the shared loop, the install: issue 2's guarantees.
local helpers = require("spec.helpers")
local uv = require("luv")

describe("the reload executable", function()
  it("prints its version", function()
    local code, out = helpers.reload({ "--version" })
    assert.are.equal(0, code)
    assert.matches("^reload %d+%.%d+%.%d+\n$", out)
  end)

  it("prints help that names every command and option it has", function()
    local code, out = helpers.reload({ "--help" })
    assert.are.equal(0, code)
    assert.matches("Usage: reload", out)
    assert.matches("%-%-version", out)
    assert.matches("script FILE", out)
  end)

  it("rejects an unknown option with exit status 2 and the usage", function()
    local code, _, err = helpers.reload({ "--no-such-option" })
    assert.are.equal(2, code)
    assert.matches("unknown option '%-%-no%-such%-option'", err)
    assert.matches("Usage:", err)
  end)

  it("takes global options before the command as after it", function()
    -- The issue's two commands: refused before ("no Reloadfile.lua", "unknown option").
    local dir = helpers.tmpdir()
    for _, args in ipairs({ { "-v", "run", "--", "true" },
      { "--no-color", "run", "--ready", tostring(helpers.free_port()), "--", "true" } }) do
      local proc = helpers.start_reload(args, { cwd = dir })
      proc:wait_output("main: started in", 10000, true)
      proc:signal("sigint")
      assert.are.equal(0, proc:wait(10000), proc:text())
      assert.truthy(proc:text():find("watching " .. dir, 1, true), proc:text())
    end
    helpers.write_file(dir .. "/Reloadfile.lua", 'service "a" { run = "true" }\n')
    for _, args in ipairs({ { "-q", "check" }, { "check", "-q" }, { "-f", "Reloadfile.lua",
      "check" }, { "check", "--file", "Reloadfile.lua" } }) do
      local code, out, err = helpers.reload(args, { cwd = dir })
      assert.are.equal(0, code, table.concat(args, " ") .. ": " .. out .. err)
    end
    local code, _, err = helpers.reload({ "--ready", "1234", "run", "--", "true" }, { cwd = dir })
    assert.are.equal(2, code)
    assert.matches("'%-%-ready' is an option of 'reload run': write it after 'run'", err)
  end)

  it("reports an error raised in a luv callback with its traceback and keeps running", function()
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/script.lua", [[
      local uv = require("luv")
      local function explode() error("boom from a timer") end
      local t1 = uv.new_timer()
      t1:start(1, 0, function() t1:close(); explode() end)
      local t2 = uv.new_timer()
      t2:start(30, 0, function() t2:close(); io.stdout:write("still alive\n") end)
    ]])
    local code, out, err = helpers.reload({ "script", dir .. "/script.lua" })
    assert.are.equal(0, code, err)
    assert.matches("still alive", out)
    assert.matches("boom from a timer", err)
    assert.matches("stack traceback", err)
    assert.matches("explode", err)
  end)

  it("runs a core handle and a luv timer on one loop", function()
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/script.lua", [[
      local uv = require("luv")
      local core = require("reload.core")
      local fired = {}
      core._timer_probe(5, function() fired[#fired + 1] = "core" end)
      local t = uv.new_timer()
      t:start(5, 0, function() t:close(); fired[#fired + 1] = "luv" end)
      uv.run()
      table.sort(fired)
      io.stdout:write(table.concat(fired, ","), "\n")
    ]])
    local code, out, err = helpers.reload({ "script", dir .. "/script.lua" })
    assert.are.equal(0, code, err)
    assert.are.equal("core,luv\n", out)
  end)
end)

describe("reload.core loaded by stock lua5.4", function()
  it("is found on the build tree's cpath and shares luv's loop", function()
    local core = require("reload.core")
    assert.matches("^%d+%.%d+%.%d+$", core.version)
    local fired = {}
    core._timer_probe(5, function() fired[#fired + 1] = "core" end)
    local t = uv.new_timer()
    t:start(5, 0, function() t:close(); fired[#fired + 1] = "luv" end)
    -- One uv.run() drives both: if the core had a loop of its own, its timer would never fire.
    uv.run()
    table.sort(fired)
    assert.are.same({ "core", "luv" }, fired)
    assert.are.same({ handles = 0, refs = 0 }, core._stats())
  end)

  it("exports luaopen_reload_core alone, and carries no keeper", function()
    local code, out, err = helpers.run({ "nm", "-D", "--defined-only",
      helpers.build_dir .. "/lib/reload/core.so" })
    assert.are.equal(0, code, err)
    local exported = {}
    for kind, name in out:gmatch("%x+ (%u) ([%w_]+)") do
      if kind ~= "A" and kind ~= "W" then
        exported[#exported + 1] = name
      end
    end
    assert.are.same({ "luaopen_reload_core" }, exported)
    local _, all = helpers.run({ "nm", helpers.build_dir .. "/lib/reload/core.so" })
    assert.is_nil(all:find("rl_keeper_main", 1, true))
  end)

  it("reports a callback error without ending the process", function()
    -- Run in a child lua5.4 so that the message on stderr can be checked.
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/probe.lua", [[
      package.cpath = ]] .. ("%q"):format(helpers.build_dir .. "/lib/?.so;") .. [[ .. package.cpath
      local uv = require("luv")
      local core = require("reload.core")
      core._timer_probe(1, function() error("core callback failed") end)
      uv.run()
      io.stdout:write("after\n")
    ]])
    local code, out, err = helpers.run(helpers.lua(dir .. "/probe.lua"))
    assert.are.equal(0, code, err)
    assert.are.equal("after\n", out)
    assert.matches("core callback failed", err)
  end)
end)

describe("cmake --install", function()
  it("installs a reload that finds its own Lua modules from any directory", function()
    local prefix = helpers.tmpdir() .. "/prefix"
    local code, out, err = helpers.run({ "cmake", "--install", helpers.build_dir,
      "--prefix", prefix })
    assert.are.equal(0, code, out .. err)
    local elsewhere = helpers.tmpdir()
    code, out, err = helpers.run({ prefix .. "/bin/reload", "--version" }, { cwd = elsewhere })
    assert.are.equal(0, code, err)
    assert.matches("^reload %d", out)
    -- The installed modules, not the source tree's, are the ones it loads.
    helpers.write_file(elsewhere .. "/where.lua",
      'io.stdout:write(package.searchpath("reload.cli", package.path), "\\n")')
    code, out, err = helpers.run({ prefix .. "/bin/reload", "script", "where.lua" },
      { cwd = elsewhere })
    assert.are.equal(0, code, err)
    assert.are.equal(prefix, out:sub(1, #prefix), "loaded " .. out)
    -- And the installed module loads in stock lua5.4 from the install tree.
    local probe = "package.cpath = %q .. package.cpath; io.write(require('reload.core').version)"
    code, out, err = helpers.run(helpers.lua("-e", probe:format(prefix .. "/lib/?.so;")))
    assert.are.equal(0, code, err)
    assert.matches("^%d+%.%d+%.%d+$", out)
  end)
end)
