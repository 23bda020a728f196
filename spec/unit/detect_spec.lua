-- What `reload init` reads from a project, stack by stack, and that every template it writes
-- from what it read is a valid Reloadfile.
local detect = require("reload.detect")
local dsl = require("reload.dsl")
local helpers = require("spec.helpers")

--- The stack and project detected in a new project made of files.
local function detected(files, stack)
  local dir = helpers.project(files)
  stack = stack or detect.stack(dir)
  local project, what = detect.project(stack, dir)
  -- The template made from it loads, plain and with --debug.
  helpers.write_file(dir .. "/Reloadfile.lua", require("reload.recipes." .. stack)
    .template(project))
  for _, flags in ipairs({ {}, { debug = true } }) do
    local config, err = dsl.load(dir .. "/Reloadfile.lua", flags)
    assert(config, tostring(err) .. "\n" .. helpers.read_file(dir .. "/Reloadfile.lua"))
  end
  return stack, project, what
end

describe("reload.detect", function()
  it("ignores Cargo's target/ beside a Cargo.toml only, before the Reloadfile's ignores", function()
    local rust = helpers.project({ ["Cargo.toml"] = "[package]\nname = \"api\"\n",
      ["Reloadfile.lua"] = 'ignore { "tmp/" }\nservice "a" { run = "true" }\n' })
    local cargo = { "/target/", "/" .. detect.cargo_target_tmp }
    assert.are.same(cargo, detect.ignores(rust))
    assert.are.same({ cargo[1], cargo[2], "tmp/" }, dsl.load(rust .. "/Reloadfile.lua").ignore)
    assert.are.same({ cargo[1], cargo[2], "x/" },
      dsl.from_table(rust, { run = "true" }, { "x/" }).ignore)
    local ig = require("reload.core").ignore({ root = rust, patterns = cargo, defaults = false,
      gitignore = false })
    assert.is_true(ig:ignored("targetuGKwkh", true))
    assert.is_false(ig:ignored("targets", true))
    assert.is_false(ig:ignored("src/target", true))
    local go = helpers.project({ ["go.mod"] = "module x\n", ["target/main.go"] = "package main\n" })
    assert.are.same({}, detect.ignores(go))
    assert.are.same({}, dsl.from_table(go, { run = "true" }).ignore)
  end)

  it("go: every main package, at the root and under cmd/", function()
    local stack, p, what = detected({
      ["go.mod"] = "module example.com/shop\n",
      ["cmd/api/main.go"] = "package main\n",
      ["cmd/worker/main.go"] = "// worker\npackage main\n",
      ["cmd/lib/lib.go"] = "package lib\n",
      ["cmd/api/main_test.go"] = "package main\n",
    })
    assert.are.equal("go", stack)
    assert.are.same({ { name = "api", pkg = "./cmd/api" }, { name = "worker",
      pkg = "./cmd/worker" } }, p.services)
    assert.matches("example.com/shop", what)
    local _, root = detected({ ["go.mod"] = "module x/y/tool\n", ["main.go"] = "package main" })
    assert.are.same({ { name = "tool", pkg = "." } }, root.services)
  end)

  it("node: scripts.dev, then scripts.start, then main, skipping dev watchers", function()
    local _, p = detected({ ["package.json"] = '{"scripts":{"dev":"node a.js","start":"x"}}' })
    local _
    assert.are.equal("dev", p.script)
    _, p = detected({ ["package.json"] =
      '{"name":"w","scripts":{"dev":"nodemon a.js","start":"node a.js"}}' })
    assert.are.equal("start", p.script)
    assert.are.equal("w", p.name)
    _, p = detected({ ["package.json"] = '{"main":"srv/main.js"}', ["srv/main.js"] = "" })
    assert.are.equal("srv/main.js", p.main)
    _, p = detected({ ["package.json"] = '{"main":"gone.js"}', ["server.js"] = "" })
    assert.are.equal("server.js", p.main)
  end)

  it("node: a Vite app (node.vite), an Express server (node.express)", function()
    local dir = helpers.project({ ["package.json"] =
      '{"scripts":{"dev":"vite","build":"vite build"},"devDependencies":{"vite":"^5.4.0"}}' })
    local p, what = detect.project("node", dir)
    assert.are.same({ "vite", "dev" }, { p.kind, p.script })
    assert.matches("^a Vite app", what)
    helpers.write_file(dir .. "/Reloadfile.lua", require("reload.recipes.node").template(p))
    local config = assert(dsl.load(dir .. "/Reloadfile.lua"))
    assert.are.same({ "npm", "run", "dev", "--", "--port", "5173", "--strictPort", "--host",
      "127.0.0.1", "--clearScreen", "false" }, config.services[1].run.cmd)
    local _
    _, p = detected({ ["package.json"] =
      '{"scripts":{"start":"node server.js"},"dependencies":{"express":"^4.21.2"}}' })
    assert.are.same({ "express", "start" }, { p.kind, p.script })
    _, p = detected({ ["package.json"] = '{"scripts":{"dev":"node scripts/invite.js"}}' })
    assert.is_nil(p.kind)
  end)

  it("rust: [package].name with src/main.rs, else [[bin]], else src/bin", function()
    local stack, p = detected({ ["Cargo.toml"] = '[package]\nname = "my-api"\n',
      ["src/main.rs"] = "", ["src/bin/tool.rs"] = "" })
    assert.are.equal("rust", stack)
    assert.are.equal("my-api", p.bin)
    assert.are.same({ "tool" }, p.others)
    local _
    _, p = detected({ ["Cargo.toml"] = '[package]\nname = "lib"\n\n[[bin]]\nname = "srv"\n' ..
      'path = "x.rs"\n' })
    assert.are.equal("srv", p.bin)
    _, p = detected({ ["Cargo.toml"] = '[workspace]\nmembers = [\n  "crates/web",\n]\n',
      ["crates/web/Cargo.toml"] = '[package]\nname = "web"\n', ["crates/web/src/main.rs"] = "" })
    assert.are.equal("web", p.bin)
  end)

  it("python: Django, Flask, FastAPI (with the app object), a .venv, or a script", function()
    local stack, p = detected({ ["manage.py"] = "", ["requirements.txt"] = "" })
    assert.are.equal("python", stack)
    assert.are.equal("django", p.kind)
    stack, p = detected({ ["wsgi.py"] = "import flask\napplication = flask.Flask(__name__)\n",
      [".venv/bin/python"] = "" })
    assert.are.equal("python", stack)
    assert.are.same({ "flask", "wsgi:application", ".venv/bin/python" }, { p.kind, p.app,
      p.python })
    local _
    _, p = detected({ ["main.py"] = "from fastapi import FastAPI\napp = FastAPI()\n" })
    assert.are.same({ "fastapi", "main:app" }, { p.kind, p.app })
    _, p = detected({ ["pyproject.toml"] = "", ["tool.py"] = "print(1)" })
    assert.are.same({ "script", "tool.py" }, { p.kind, p.script })
  end)

  it("c: CMake's add_executable before a Makefile; else the Makefile's first target", function()
    local stack, p = detected({ ["CMakeLists.txt"] = "PROJECT(Demo C)\nADD_EXECUTABLE(Demo_1 " ..
      "m.c)\n", ["Makefile"] = "app:\n" })
    assert.are.equal("c", stack)
    assert.are.same({ "cmake", "Demo_1", "build/Demo_1" }, { p.build, p.target, p.run })
    local _
    _, p = detected({ ["CMakeLists.txt"] = "project(tool)\nadd_executable(${PROJECT_NAME} m.c)\n" })
    assert.are.equal("tool", p.target)
    _, p = detected({ ["Makefile"] = "CC = cc\n.PHONY: all clean\nall: bin/server\n\n" ..
      "bin/server: s.c\n\tcc -o $@ s.c\nclean:\n\trm -f bin/server\n" })
    assert.are.same({ "make", "bin/server", "./bin/server", "server" }, { p.build, p.target,
      p.run, p.name })
  end)

  it("tells the stacks apart in order, and finds none in an empty directory", function()
    assert.are.equal("go", detect.stack(helpers.project({ ["go.mod"] = "", ["Makefile"] = "" })))
    assert.are.equal("python", detect.stack(helpers.project({ ["package.json"] = "{}",
      ["manage.py"] = "" })))
    assert.are.equal("node", detect.stack(helpers.project({ ["package.json"] = "{}",
      ["Makefile"] = "" })))
    assert.is_nil(detect.stack(helpers.tmpdir()))
  end)
end)
