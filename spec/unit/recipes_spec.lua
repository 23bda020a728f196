-- Each recipe's generated commands, and that every template is a valid Reloadfile.
local dsl = require("reload.dsl")
local helpers = require("spec.helpers")
local log = require("reload.log")

local go = require("reload.recipes.go")
local node = require("reload.recipes.node")
local python = require("reload.recipes.python")
local c = require("reload.recipes.c")
local rust = require("reload.recipes.rust")

local function quietly(fn, ...)
  local out = log.out
  log.out = { write = function() end, flush = function() end }
  local res = table.pack(pcall(fn, ...))
  log.out = out
  assert(res[1], res[2])
  return table.unpack(res, 2, res.n)
end

describe("recipes", function()
  describe("go", function()
    it("wraps a command in dlv exec, headless, continuing, multi-client", function()
      assert.are.same({ "dlv", "exec", "--headless", "--continue", "--accept-multiclient",
        "--listen", "127.0.0.1:4000", "--api-version", "2", "tmp/api", "--", "-port", "80" },
        go.dlv({ "tmp/api", "-port", "80" }, { listen = "127.0.0.1:4000" }))
      assert.are.same({ "dlv", "exec", "--headless", "--continue", "--accept-multiclient",
        "--listen", "127.0.0.1:2345", "--api-version", "2", "tmp/api" }, go.dlv("tmp/api"))
    end)

    it("builds into tmp/NAME and ignores tests unless asked", function()
      local svc = go.service({ name = "api", pkg = "./cmd/api" })
      assert.are.same({ "go", "build", "-o", "tmp/api", "./cmd/api" }, svc.build)
      assert.are.same({ "tmp/api" }, svc.run)
      assert.truthy(table.concat(svc.ignore, " "):find("*_test.go", 1, true))
      assert.falsy(table.concat(go.service({ tests = true }).ignore, " "):find("_test", 1, true))
      assert.is_nil(svc.wrap)
    end)

    it("wraps go run in dlv debug, its build flags and the program's arguments kept", function()
      assert.are.same({ "dlv", "debug", "--headless", "--continue", "--accept-multiclient",
        "--listen", "127.0.0.1:2345", "--api-version", "2", "--build-flags=-race -tags=dev",
        "./cmd/api", "--", "-port", "80" },
        go.dlv({ "go", "run", "-race", "-tags=dev", "./cmd/api", "-port", "80" }))
      assert.are.same({ "dlv", "debug", "--headless", "--continue", "--accept-multiclient",
        "--listen", "127.0.0.1:2345", "--api-version", "2", "." }, go.dlv("go run ."))
    end)

    it("run: a check build then go run; under Delve dlv debug, stopped with SIGKILL", function()
      local svc = go.run({ pkg = "./cmd/tool", args = { "-v" }, flags = { "-race" } })
      assert.are.same({ "go", "build", "-race", "-o", "/dev/null", "./cmd/tool" }, svc.build)
      assert.are.same({ "go", "run", "-race", "./cmd/tool", "-v" }, svc.run)
      assert.is_nil(svc.stop)
      assert.is_nil(go.run({ check = false }).build)
      local dbg = go.run({ debug = true })
      assert.are.same({ "go", "build", "-gcflags=all=-N -l", "-o", "/dev/null", "." }, dbg.build)
      assert.are.same({ signal = "KILL" }, dbg.stop)
      assert.are.same({ port = 2345 }, dbg.ready)
      assert.are.equal("debug", quietly(dbg.wrap, dbg.run)[2])
      assert.has_error(function() go.run({ name = "x" }) end,
        "recipes.go.run: unknown option 'name'")
    end)

    it("in debug mode builds unoptimised, wraps in Delve and waits on its port", function()
      local svc = go.service({ name = "api", debug = { listen = "127.0.0.1:2999" } })
      assert.are.equal("-gcflags=all=-N -l", svc.build[3])
      assert.are.same({ port = 2999 }, svc.ready)
      assert.are.same({ signal = "KILL" }, svc.stop, "Delve's own TERM costs 0.5-0.9 s")
      assert.is_nil(go.service({ name = "api" }).stop)
      local argv = quietly(svc.wrap, { "tmp/api" })
      assert.are.same({ "dlv", "exec", "--headless", "--continue", "--accept-multiclient",
        "--listen", "127.0.0.1:2999", "--api-version", "2", "tmp/api" }, argv)
    end)

    it("prints how to attach the first time the wrapper runs", function()
      local said = {}
      local out = log.out
      log.out = { write = function(_, s) said[#said + 1] = s end, flush = function() end }
      local wrap = go.debugger({ listen = "127.0.0.1:2345" })
      wrap({ "x" })
      wrap({ "x" })
      log.out = out
      assert.matches("dlv connect 127.0.0.1:2345", said[1])
      assert.matches('"mode": "remote"', said[1])
      assert.falsy(said[2]:find("connect", 1, true))
    end)

    it("lets any service key override and rejects an unknown option", function()
      local svc = go.service({ name = "api", restart = "always", watch = { "**/*.go" } })
      assert.are.equal("always", svc.restart)
      assert.are.same({ "**/*.go", "go.mod", "go.sum" }, svc.watch)
      assert.has_error(function() go.service({ nmae = "api" }) end,
        "recipes.go: unknown option 'nmae'")
    end)
  end)

  describe("node", function()
    it("runs a file or an npm script, and inserts --inspect for node, not for npm", function()
      assert.are.same({ "node", "server.js" }, node.app({ main = "server.js" }).run)
      assert.are.same({ "npm", "run", "dev" }, node.app({ script = "dev" }).run)
      assert.are.same({ "node", "--inspect=127.0.0.1:9229", "server.js" },
        node.inspect({ "node", "server.js" }))
      -- npm passes --node-options to the scripts it runs, not to itself.
      assert.are.same({ "npm", "--node-options=--inspect=127.0.0.1:9000", "run", "dev" },
        node.inspect({ "npm", "run", "dev" }, "127.0.0.1:9000"))
      assert.are.same({ "env", "NODE_OPTIONS=--inspect-brk=127.0.0.1:9229", "yarn", "dev" },
        node.inspect({ "yarn", "dev" }, nil, true))
      assert.truthy(table.concat(node.app({}).ignore, " "):find("node_modules/", 1, true))
    end)

    it("never watches Vite's bundled config, which Vite 5 writes at every start", function()
      local core = require("reload.core")
      for _, svc in ipairs({ node.app({}), node.vite({}), node.express({}) }) do
        local ig = core.ignore({ patterns = svc.ignore, defaults = false, gitignore = false })
        assert.is_true(ig:ignored("vite.config.js.timestamp-1796058472322-03a9ff6c2d286.mjs"))
        assert.is_true(ig:ignored(".svelte-kit/ambient.d.ts"))
      end
    end)

    it("vite: npm run dev on a strict port, restarted only for what Vite reads at start",
      function()
        local svc = node.vite({ port = 5180 })
        assert.are.same({ "npm", "run", "dev", "--", "--port", "5180", "--strictPort", "--host",
          "127.0.0.1", "--clearScreen", "false" }, svc.run)
        assert.are.same({ port = 5180 }, svc.ready)
        local watch = require("reload.core").glob(svc.watch)
        assert.is_true(watch:match("vite.config.ts"))
        assert.is_true(watch:match(".env.local"))
        assert.is_false(watch:match("src/main.js"), "Vite serves src/ itself")
      end)

    it("express: npm run start with PORT, up once it listens", function()
      local svc = node.express({ port = 3001 })
      assert.are.same({ "npm", "run", "start" }, svc.run)
      assert.are.same({ PORT = "3001" }, svc.env)
      assert.are.same({ port = 3001 }, svc.ready)
      assert.are.same({ "node", "app.js" }, node.express({ main = "app.js" }).run)
      assert.has_error(function() node.express({ port = 0 }) end,
        "recipes.node.express: 'port' must be a port number, not 0")
    end)

    it("debugger: a wrapper that says how to attach", function()
      local said = {}
      local out = log.out
      log.out = { write = function(_, s) said[#said + 1] = s end, flush = function() end }
      local argv = node.debugger("127.0.0.1:9300")({ "npm", "run", "start" })
      log.out = out
      assert.are.same({ "npm", "--node-options=--inspect=127.0.0.1:9300", "run", "start" }, argv)
      assert.matches('"request": "attach"', said[1])
    end)
  end)

  describe("python", function()
    it("runs a module or a script, and wraps in debugpy", function()
      assert.are.same({ "python3", "-m", "app", "--x" },
        python.app({ module = "app", args = { "--x" } }).run)
      assert.are.same({ "python3", "-m", "debugpy", "--listen", "127.0.0.1:5678", "main.py" },
        python.debugpy({ "python3", "main.py" }))
      assert.truthy(table.concat(python.app({}).ignore, " "):find("__pycache__/", 1, true))
    end)

    it("django: runserver without Django's reloader, up on its port, templates watched",
      function()
        local svc = python.django({ port = 8001, settings = "site.dev",
          python = ".venv/bin/python" })
        assert.are.same({ ".venv/bin/python", "manage.py", "runserver", "--noreload",
          "127.0.0.1:8001" }, svc.run)
        assert.are.same({ port = 8001 }, svc.ready)
        assert.are.same({ PYTHONUNBUFFERED = "1", DJANGO_SETTINGS_MODULE = "site.dev" }, svc.env)
        assert.truthy(table.concat(svc.watch, " "):find("**/templates/**", 1, true))
        assert.has_error(function() python.django({ port = "web" }) end,
          "recipes.python.django: 'port' must be a port number, not web")
      end)

    it("flask: flask run --no-reload with FLASK_APP; debug is the debugger, not the reloader",
      function()
        local svc = python.flask({ app = "web:app", port = 5001, debug = true })
        assert.are.same({ "python3", "-m", "flask", "run", "--no-reload", "--host", "127.0.0.1",
          "--port", "5001" }, svc.run)
        assert.are.same({ PYTHONUNBUFFERED = "1", FLASK_APP = "web:app", FLASK_DEBUG = "1" },
          svc.env)
        assert.is_nil(python.flask({}).env.FLASK_DEBUG)
      end)

    it("fastapi: uvicorn without --reload", function()
      local svc = python.fastapi({ app = "main:api", args = { "--log-level", "warning" } })
      assert.are.same({ "python3", "-m", "uvicorn", "main:api", "--host", "127.0.0.1", "--port",
        "8000", "--log-level", "warning" }, svc.run)
      assert.are.same({ port = 8000 }, svc.ready)
      assert.are.equal(python.fastapi, python.uvicorn)
    end)

    it("gunicorn: workers, TERM to the master alone, reload's grace beyond gunicorn's",
      function()
        local svc = python.gunicorn({ app = "web:app", workers = 4, graceful = 5,
          args = { "--access-logfile", "-" } })
        assert.are.same({ "python3", "-m", "gunicorn", "--bind", "127.0.0.1:8000", "--workers",
          "4", "--graceful-timeout", "5", "--access-logfile", "-", "web:app" }, svc.run)
        assert.are.same({ signal = "TERM", grace = 7, to = "main" }, svc.stop)
        assert.has_error(function() python.gunicorn({ debugpy = true }) end)
      end)

    it("debugger: a wrapper that says how to attach", function()
      local wrap = python.debugger({ listen = "127.0.0.1:5999", wait = true })
      assert.are.same({ "python3", "-m", "debugpy", "--listen", "127.0.0.1:5999",
        "--wait-for-client", "-m", "flask", "run" },
        quietly(wrap, { "python3", "-m", "flask", "run" }))
      assert.are.equal("function", type(python.django({ debugpy = true }).wrap))
    end)
  end)

  it("c builds with make or cmake, and wraps in gdbserver", function()
    assert.are.same({ "make", "-s", "-j4", "srv" }, c.make({ target = "srv", jobs = 4,
      run = "./srv" })
      .build)
    local cm = c.cmake({ run = "build/app", target = "app" })
    assert.are.equal(2, #cm.build)
    assert.are.same({ "cmake", "--build", "build", "--target", "app" }, cm.build[2])
    assert.are.same({ "gdbserver", "127.0.0.1:2159", "./srv", "-v" }, c.gdbserver("./srv -v"))
  end)

  it("rust builds with cargo build -q, then cargo run -q", function()
    local svc = rust.cargo({ bin = "api", args = { "--port", "1" } })
    assert.are.same({ "cargo", "build", "-q", "--bin", "api" }, svc.build)
    assert.are.same({ "cargo", "run", "-q", "--bin", "api", "--", "--port", "1" }, svc.run)
    assert.are.same({ "cargo", "run", "-q", "--bin", "api", "--release", "--features=a,b" },
      rust.cargo({ bin = "api", release = true, features = { "a", "b" } }).run)
    assert.are.same({ "cargo", "run", "-q" }, rust.cargo().run)
    assert.has_error(function() rust.cargo({ bin = true }) end)
  end)

  it("every template is a Reloadfile that loads, plain and with --debug", function()
    for _, name in ipairs({ "go", "node", "python", "c", "rust" }) do
      local dir = helpers.tmpdir()
      helpers.write_file(dir .. "/Reloadfile.lua", require("reload.recipes." .. name).template())
      for _, flags in ipairs({ {}, { debug = true } }) do
        local config, err = dsl.load(dir .. "/Reloadfile.lua", flags)
        assert.is_nil(err, name .. ": " .. tostring(err))
        assert.are.equal(1, #config.services, name)
      end
    end
  end)

  it("dsl validates what a recipe returns like any service", function()
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/Reloadfile.lua", [[
local go = require("reload.recipes.go")
service "api" (go.service { name = "api", restart = "sometimes" })
]])
    local _, err = dsl.load(dir .. "/Reloadfile.lua")
    assert.matches("Reloadfile.lua:2: service \"api\": 'restart' must be", err)
  end)
end)
