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

--- Runs examples/NAME under reload (args, env) through EDITS edits of t.file; returns reload's
--- process, or nil when t.skip() says the test is pending (t.setup made it so).
local function through_edits(name, t)
  local dir = ex.copy(name)
  if t.setup then
    t.setup(dir)
  end
  if t.skip and t.skip() then
    return nil
  end
  local port = helpers.free_port()
  local env = { PORT = tostring(port) }
  for k, v in pairs(t.env or {}) do
    env[k] = v
  end
  local proc, marker = ex.start(dir, t.args, env)
  ex.answers(port, t.first, t.first_ms or 30000, proc, t.path)
  if t.after_start then
    t.after_start(proc, port, marker)
  end
  ex.quiet(proc, QUIET_MS, "after the start")
  ex.edit_loop({ proc = proc, marker = marker, dir = dir, file = t.file, from = t.from,
    port = port, path = t.path, n = EDITS, comms = t.comms, restart = t.restart,
    after_each = t.after_each and function(i) t.after_each(i, proc, port) end })
  if t.more then
    t.more({ proc = proc, marker = marker, dir = dir, port = port })
  end
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
    -- A TERM that reaches a worker still booting is swallowed by the master's handler it
    -- inherited, and the master then waits its graceful timeout for that worker and SIGKILLs
    -- it (gunicorn's behaviour). Each edit waits until both workers have set their own
    -- handlers: a booted worker catches SIGTERM but no longer SIGHUP, which the master and a
    -- worker not yet booted catch.
    local marker
    local function booted(proc)
      helpers.wait_until(20000, function()
        local pids, workers = ex.alive(marker, "python3"), 0
        for _, pid in ipairs(pids) do
          local status = helpers.read_file("/proc/" .. pid .. "/status") or ""
          local caught = tonumber(status:match("SigCgt:%s*(%x+)") or "0", 16)
          if caught & 1 == 0 and caught & (1 << 14) ~= 0 then -- not SIGHUP (1), SIGTERM (15)
            workers = workers + 1
          end
        end
        return #pids == 3 and workers == 2
      end, function() return "gunicorn's 2 workers to be booted (their own signal handlers)\n"
        .. proc:text():sub(-2000) end)
    end
    local proc = through_edits("python-gunicorn", { env = { PATH = path },
      first = "hello from gunicorn", file = "message.py", from = "hello from gunicorn",
      comms = { python3 = 3 },
      after_start = function(p, _, m) marker = m; booted(p) end,
      after_each = function(_, p) booted(p) end })
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

--- The example's node_modules, installed by scripts/npm-examples (npm ci, into the build
--- directory), copied into dir; false, and the test pending, when npm cannot install them.
local function npm_modules(name, dir)
  if not (ex.have("node") and ex.have("npm")) then
    pending("node and npm are not installed (scripts/setup installs nodejs and npm)")
    return false
  end
  -- A first install downloads the packages.
  helpers.budget(helpers.default_budget_s + 300)
  local code, out, err = helpers.run({ helpers.root .. "/scripts/npm-examples", name },
    { cwd = helpers.root, timeout_ms = 280000,
      env = helpers.env_with({ RELOAD_BUILD_DIR = helpers.build_dir }) })
  if code ~= 0 then
    pending(("npm could not install examples/%s's packages (scripts/npm-examples %s): %s")
      :format(name, name, (out .. err):sub(-400)))
    return false
  end
  local modules = helpers.build_dir .. "/npm/" .. name .. "/node_modules"
  assert(os.execute(("cp -a %s %s/node_modules"):format(helpers.shell_quote(modules),
    helpers.shell_quote(dir))))
  return true
end

describe("node recipes", function()
  it("node.vite: restarts for its config (10 edits), serves src/ itself (5 edits, no restart)",
    function()
      local installed
      local proc = through_edits("node-vite", {
        setup = function(dir) installed = npm_modules("node-vite", dir) end,
        skip = function() return not installed end,
        first = "hello from the vite config", file = "vite.config.js",
        from = "hello from the vite config", comms = { node = 1 },
        after_start = function(p, port)
          ex.answers(port, "hello from vite src", 10000, p, "/src/message.js")
        end,
        more = function(t)
          -- Vite serves a source edit itself (hot module replacement): no restart. Its watcher
          -- (chokidar) drops a save that replaces a file renamed into place less than ~100 ms
          -- earlier: these edits come 300 ms apart, as a person's saves do.
          ex.edit_loop({ proc = t.proc, marker = t.marker, dir = t.dir, file = "src/message.js",
            from = "hello from vite src", port = t.port, path = "/src/message.js", n = 5,
            comms = { node = 1 }, restart = false, gap_ms = 300 })
        end,
      })
      if not proc then
        return
      end
      -- --clearScreen false: Vite cleared none of reload's lines.
      assert.is_nil(proc:text():find("\27[2J", 1, true), proc:text())
    end)

  it("reload run -- npm run dev with no -w: Vite 5's bundled config restarts nothing", function()
    local dir = ex.copy("node-vite")
    if not npm_modules("node-vite", dir) then
      return
    end
    local port = helpers.free_port()
    local proc, marker = ex.start(dir, { "run", "--ready", tostring(port), "--", "npm", "run",
      "dev", "--", "--port", tostring(port), "--strictPort", "--clearScreen", "false" })
    ex.answers(port, "hello from the vite config", 30000, proc)
    ex.quiet(proc, QUIET_MS, "after the start: vite.config.js.timestamp-*.mjs")
    ex.edit_loop({ proc = proc, marker = marker, dir = dir, file = "vite.config.js",
      from = "hello from the vite config", port = port, n = 3, comms = { node = 1 } })
    ex.stop(proc, marker)
  end)

  it("node.express: npm run start, 10 edits, one restart each", function()
    local installed
    through_edits("node-express", {
      setup = function(dir) installed = npm_modules("node-express", dir) end,
      skip = function() return not installed end,
      first = "hello from express", file = "message.js", from = "hello from express",
      comms = { node = 1, ["npm run start"] = 1 },
    })
  end)

  it("node.debugger: Express under --debug, the inspector given to node and not npm", function()
    local installed
    local inspector = helpers.free_port()
    local proc = through_edits("node-express", {
      setup = function(dir) installed = npm_modules("node-express", dir) end,
      skip = function() return not installed end,
      args = { "--debug" }, env = { INSPECT_LISTEN = "127.0.0.1:" .. inspector },
      first = "hello from express", file = "message.js", from = "hello from express",
      comms = { node = 1, ["npm run start"] = 1 },
      after_each = function()
        helpers.wait_until(10000, function() return helpers.port_listening(inspector) end,
          "the inspector listening on " .. inspector)
      end,
    })
    if not proc then
      return
    end
    assert.is_nil(proc:text():find("Starting inspector", 1, true), proc:text())
    local _, n = proc:text():gsub("Debugger listening on ws://127%.0%.0%.1:" .. inspector, "")
    assert.are.equal(EDITS + 1, n, proc:text())
    assert.is_true(helpers.port_bindable(inspector))
  end)
end)

describe("go recipes", function()
  local go_env = {
    GOCACHE = helpers.build_dir .. "/gocache", GOPATH = helpers.build_dir .. "/gopath",
    GOFLAGS = "-mod=mod", GOPROXY = "off", GOTOOLCHAIN = "local",
  }
  local function need(...)
    for _, cmd in ipairs({ ... }) do
      if not ex.have(cmd) then
        pending(("%s is not installed (scripts/setup installs golang-go and delve)"):format(cmd))
        return false
      end
    end
    return true
  end
  local function env(extra)
    local out = {}
    for k, v in pairs(go_env) do
      out[k] = v
    end
    for k, v in pairs(extra or {}) do
      out[k] = v
    end
    return out
  end

  it("go.run: a check build, then go run, 10 edits, one restart each", function()
    if not need("go") then
      return
    end
    helpers.budget(600) -- a first build on a fresh machine compiles the standard library
    through_edits("go-run", { env = env(), first = "hello from go run", first_ms = 300000,
      file = "message.go", from = "hello from go run", comms = { go = 1, gorun = 1 } })
  end)

  it("go.run under --debug: dlv debug, stopped with SIGKILL, listening again after each edit",
    function()
      if not need("go", "dlv") then
        return
      end
      helpers.budget(900)
      local dlv = helpers.free_port()
      local proc = through_edits("go-run", {
        args = { "--debug" }, env = env({ DLV_LISTEN = "127.0.0.1:" .. dlv }),
        setup = ex.delve_any_user,
        first = "hello from go run", first_ms = 600000, file = "message.go",
        from = "hello from go run", comms = { dlv = 1, __debug_bin = 1 },
        after_start = function(p)
          p:wait_output("dlv connect 127.0.0.1:" .. dlv, 5000, true)
        end,
        after_each = function()
          helpers.wait_until(10000, function() return helpers.port_listening(dlv) end,
            "Delve listening on " .. dlv)
        end,
      })
      if proc then
        assert.is_true(helpers.port_bindable(dlv))
        -- SIGKILL: no grace period to wait out.
        assert.is_nil(proc:text():find("after the %d+%.?%d* s grace period"), proc:text())
      end
    end)

  it("go.service under --debug (examples/go-dlv): dlv exec, 10 edits, no restart without one",
    function()
      if not need("go", "dlv") then
        return
      end
      helpers.budget(900)
      local dlv = helpers.free_port()
      through_edits("go-dlv", {
        args = { "--debug" }, env = env({ DLV_LISTEN = "127.0.0.1:" .. dlv }),
        setup = ex.delve_any_user,
        first = "hello from go", first_ms = 600000, file = "cmd/api/message.go",
        from = "hello from go", comms = { dlv = 1, api = 1 },
        after_each = function()
          helpers.wait_until(10000, function() return helpers.port_listening(dlv) end,
            "Delve listening on " .. dlv)
        end,
      })
    end)
end)

describe("rust recipe", function()
  it("rust.cargo: cargo build -q, then cargo run -q, 10 edits; warnings shown, not compiles",
    function()
      if not ex.have("cargo") then
        pending("cargo is not installed (scripts/setup installs Debian's cargo)")
        return
      end
      helpers.budget(600)
      local proc = through_edits("rust-cargo", { first = "hello from cargo", first_ms = 300000,
        file = "src/message.rs", from = "hello from cargo",
        -- cargo run execs the program: no cargo process is left beside it.
        comms = { ["hello-cargo"] = 1, cargo = 0 },
        more = function(t)
          local path = t.dir .. "/src/message.rs"
          helpers.write_file(path, helpers.read_file(path) .. "\npub fn unused_here() {}\n")
          t.proc:wait_output("unused_here", 120000, true)
        end,
      })
      if proc then
        assert.is_nil(proc:text():find("Compiling hello-cargo", 1, true), proc:text())
      end
    end)

  it("reload run -- cargo run with no -w: target/ is ignored beside a Cargo.toml", function()
    if not ex.have("cargo") then
      pending("cargo is not installed (scripts/setup installs Debian's cargo)")
      return
    end
    helpers.budget(600)
    local dir = ex.copy("rust-cargo")
    -- Without cargo new's .gitignore: the default alone must keep target/ out.
    os.remove(dir .. "/.gitignore")
    local port = helpers.free_port()
    local proc, marker = ex.start(dir, { "run", "--ready", tostring(port), "--", "cargo", "run",
      "-q" }, { PORT = tostring(port) })
    ex.answers(port, "hello from cargo", 300000, proc)
    ex.quiet(proc, QUIET_MS, "after the start: cargo wrote target/")
    ex.edit_loop({ proc = proc, marker = marker, dir = dir, file = "src/message.rs",
      from = "hello from cargo", port = port, n = 3, comms = { ["hello-cargo"] = 1 } })
    ex.stop(proc, marker)
  end)
end)

describe("the first examples", function()
  it("c-make (c.make, make -s): quiet without an edit, one restart per edit", function()
    through_edits("c-make", { first = "hello from c-make", file = "message.h",
      from = "hello from c%-make", comms = { server = 1 } })
  end)

  it("node (node.app): quiet without an edit, one restart per edit", function()
    if not ex.have("node") then
      pending("node is not installed (scripts/setup installs nodejs)")
      return
    end
    through_edits("node", { first = "hello from node", file = "message.js",
      from = "hello from node", comms = { node = 1 } })
  end)
end)
