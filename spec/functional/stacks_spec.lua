-- The named recipes through their examples, with the real tools: each example starts, stays
-- quiet with no edit (nothing its toolchain writes at start restarts it), answers 10 edits with
-- one restart each and one process of each kind, and leaves nothing when reload quits. Also
-- `reload run` with no -w on the same projects: the built-in defaults alone keep it quiet.
-- A stack whose Debian or npm packages are missing is skipped, saying which (scripts/setup,
-- scripts/npm-examples install them).
local helpers = require("spec.helpers")
local ex = require("spec.support.examples")

local EDITS = 10
local QUIET_MS = 2500

--- Runs examples/NAME under reload (args, env) through EDITS edits of t.file.
local function through_edits(name, t)
  local dir = ex.copy(name)
  if t.setup then
    t.setup(dir)
  end
  local port = helpers.free_port()
  local env = { PORT = tostring(port) }
  for k, v in pairs(t.env or {}) do
    env[k] = v
  end
  local proc, marker = ex.start(dir, t.args, env)
  ex.answers(port, t.first, t.first_ms or 30000, proc, t.path)
  if t.after_start then
    t.after_start(proc, port)
  end
  ex.quiet(proc, QUIET_MS, "after the start")
  ex.edit_loop({ proc = proc, marker = marker, dir = dir, file = t.file, from = t.from,
    port = port, path = t.path, n = EDITS, comms = t.comms, restart = t.restart,
    after_each = t.after_each and function(i) t.after_each(i, proc, port) end })
  ex.stop(proc, marker)
  assert.is_true(helpers.port_bindable(port))
  return proc
end

local function need_python(...)
  if not ex.python_has(...) then
    pending(("Debian's python3 cannot import %s (scripts/setup installs it)"):format(
      table.concat({ ... }, ", ")))
    return false
  end
  return true
end

describe("python recipes", function()
  local path = ex.debian_path()

  it("python.django: runserver --noreload, 10 edits, one restart each", function()
    if not need_python("django") then
      return
    end
    local proc = through_edits("python-django", {
      env = { PATH = path }, first = "hello from django", file = "hello/message.py",
      from = "hello from django", comms = { python3 = 1 },
    })
    -- Django's own reloader is off: it would say so, and restart a child on every save.
    assert.is_nil(proc:text():find("Watching for file changes", 1, true), proc:text())
  end)

  it("python.flask: flask run --no-reload, 10 edits, one restart each", function()
    if not need_python("flask") then
      return
    end
    local proc = through_edits("python-flask", { env = { PATH = path },
      first = "hello from flask", file = "message.py", from = "hello from flask",
      comms = { python3 = 1 } })
    assert.is_nil(proc:text():find("Restarting with", 1, true), proc:text())
  end)

  it("python.fastapi: uvicorn without --reload, 10 edits, one restart each", function()
    if not need_python("fastapi", "uvicorn") then
      return
    end
    local proc = through_edits("python-fastapi", { env = { PATH = path },
      first = "hello from fastapi", file = "message.py", from = "hello from fastapi",
      comms = { python3 = 1 } })
    assert.is_nil(proc:text():find("reloader", 1, true), proc:text())
  end)

  it("python.gunicorn: a master and 2 workers, TERM to the master, 10 edits", function()
    if not need_python("gunicorn") then
      return
    end
    local proc = through_edits("python-gunicorn", { env = { PATH = path },
      first = "hello from gunicorn", file = "message.py", from = "hello from gunicorn",
      comms = { python3 = 3 } })
    -- The master stopped its workers itself: none died of a signal it did not send, and none
    -- was forked during a stop.
    local text = proc:text()
    assert.is_nil(text:find("was terminated due to signal", 1, true), text)
    local _, boots = text:gsub("Booting worker with pid", "")
    assert.are.equal(2 * (EDITS + 1), boots, text)
    assert.is_nil(text:find("stopped with SIGKILL", 1, true), text)
  end)

  it("python.debugpy: Flask under debugpy with --debug, which listens again after each edit",
    function()
      if not need_python("flask", "debugpy") then
        return
      end
      local dbg = helpers.free_port()
      local proc = through_edits("python-flask", {
        args = { "--debug" }, env = { PATH = path, DEBUGPY_LISTEN = "127.0.0.1:" .. dbg },
        first = "hello from flask", file = "message.py", from = "hello from flask",
        -- the program and debugpy's adapter, which it starts in a session of its own
        comms = { python3 = 2 },
        after_start = function(p)
          p:wait_output("debugpy listens on 127.0.0.1:" .. dbg, 5000, true)
        end,
        after_each = function()
          helpers.wait_until(10000, function() return helpers.port_listening(dbg) end,
            "debugpy listening on " .. dbg)
        end,
      })
      assert.is_true(helpers.port_bindable(dbg))
      assert.truthy(proc:text():find('"request": "attach"', 1, true), proc:text())
    end)
end)

describe("reload run with no -w on a Python project", function()
  local path = ex.debian_path()

  for _, case in ipairs({
    { "python-django", "django", "hello/message.py", "hello from django",
      { "manage.py", "runserver", "--noreload" } },
    { "python-flask", "flask", "message.py", "hello from flask",
      { "-m", "flask", "run", "--no-reload" } },
  }) do
    local name, module, file, text, cmd = table.unpack(case)
    it(name .. ": one restart per save (the bytecode python writes is a default ignore)",
      function()
        if not need_python(module) then
          return
        end
        local dir = ex.copy(name)
        local port = helpers.free_port()
        local args = { "run", "--ready", tostring(port), "--", ex.python }
        table.move(cmd, 1, #cmd, #args + 1, args)
        if module == "django" then
          args[#args + 1] = "127.0.0.1:" .. port
        else
          table.move({ "--port", tostring(port) }, 1, 2, #args + 1, args)
        end
        local proc, marker = ex.start(dir, args, { PATH = path, FLASK_APP = "app" })
        ex.answers(port, text, 30000, proc)
        ex.quiet(proc, QUIET_MS, "after the start")
        ex.edit_loop({ proc = proc, marker = marker, dir = dir, file = file, from = text,
          port = port, n = EDITS, comms = { python3 = 1 } })
        ex.stop(proc, marker)
      end)
  end
end)
