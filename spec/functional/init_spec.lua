-- `reload init` reads the project in front of it: for a small project of each stack, the
-- Reloadfile it writes passes `reload check` and runs the project (the server answers).
local helpers = require("spec.helpers")

local function have(cmd)
  return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true
end

local debian_python = "/usr/bin/python3"

--- True when Debian's python3 can import every module named.
local function python_has(...)
  if not have(debian_python) then
    return false
  end
  local code = helpers.run({ debian_python, "-c", "import " .. table.concat({ ... }, ", ") })
  return code == 0
end

--- A virtualenv of Debian's python3 that sees its packages (scripts/setup installs
--- python3-flask, python3-django, python3-fastapi and uvicorn there): what `reload init`
--- finds as .venv/bin/python.
local function venv(dir)
  local code, out, err = helpers.run({ debian_python, "-m", "venv", "--without-pip",
    "--system-site-packages", dir .. "/.venv" })
  assert.are.equal(0, code, out .. err)
end

local go_env = {
  GOCACHE = helpers.build_dir .. "/gocache", GOPATH = helpers.build_dir .. "/gopath",
  GOFLAGS = "-mod=mod", GOPROXY = "off", GOTOOLCHAIN = "local",
}

--- `reload init` (args) in dir; then `reload check`; returns the Reloadfile's text.
local function init(dir, args, expect)
  local cmd = { "init" }
  for _, a in ipairs(args or {}) do
    cmd[#cmd + 1] = a
  end
  local code, out, err = helpers.reload(cmd, { cwd = dir })
  assert.are.equal(0, code, out .. err)
  local text = helpers.read_file(dir .. "/Reloadfile.lua")
  for _, pattern in ipairs(expect or {}) do
    assert.truthy(text:find(pattern, 1, true), ("no %q in:\n%s"):format(pattern, text))
  end
  code, out, err = helpers.reload({ "check" }, { cwd = dir })
  assert.are.equal(0, code, out .. err)
  return text, out
end

--- Starts reload in dir with PORT, waits for the answer, edits, waits for the new answer.
local function runs(dir, port, expected, edit, extra_env)
  local marker = helpers.unique("RELOAD_INIT")
  -- The project's toolchain is not ours to instrument: under scripts/test --sanitize the
  -- preloaded ASan runtime would reach cargo and rustc (rustc crashes with it). reload itself
  -- is linked with it and needs no preload.
  local env = { RELOAD_INIT = marker, NO_COLOR = "1", PORT = tostring(port), LD_PRELOAD = false }
  for k, v in pairs(extra_env or {}) do
    env[k] = v
  end
  local proc = helpers.start_reload({}, { cwd = dir, env = helpers.env_with(env) })
  local function answers(text)
    helpers.retry(120000, function()
      local body, err = helpers.http_get(port)
      return body and body:find(text, 1, true) ~= nil,
        ("port %d answered %s\nreload said:\n%s"):format(port, tostring(body or err),
          proc:text():sub(-3000))
    end)
  end
  answers(expected)
  if edit then
    local path = dir .. "/" .. edit[1]
    helpers.write_file(path, (helpers.read_file(path):gsub(edit[2], edit[3])))
    answers(edit[3])
  end
  proc:signal("sigint")
  assert.are.equal(0, proc:wait(30000), proc:text())
  local left = helpers.kill_tagged("RELOAD_INIT=" .. marker)
  assert.are.same({}, left, "left: " .. helpers.describe(left))
end

local go_main = [[
package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "go api v1")
	})
	http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil)
}
]]

describe("reload init", function()
  it("go: finds cmd/api in a go.mod project and runs it", function()
    if not have("go") then
      pending("go is not installed (scripts/setup installs golang-go)")
      return
    end
    local dir = helpers.project({
      ["go.mod"] = "module example.com/shop\n\ngo 1.19\n",
      ["cmd/api/main.go"] = go_main,
      ["internal/util/util.go"] = "package util\n",
    })
    init(dir, {}, { 'pkg   = "./cmd/api"', 'service "api"' })
    runs(dir, helpers.free_port(), "go api v1", { "cmd/api/main.go", "go api v1", "go api v2" },
      go_env)
  end)

  it("node: runs package.json's scripts.dev, not index.js", function()
    if not (have("node") and have("npm")) then
      pending("node and npm are not installed (scripts/setup installs nodejs and npm)")
      return
    end
    local dir = helpers.project({
      ["package.json"] = [[{
  "name": "@team/web",
  "main": "index.js",
  "scripts": { "dev": "node src/server.js", "test": "true" }
}]],
      ["src/server.js"] = [[
const http = require("http");
const msg = require("./msg");
http.createServer((req, res) => res.end(msg)).listen(+process.env.PORT, "127.0.0.1");
]],
      ["src/msg.js"] = 'module.exports = "node web v1";\n',
    })
    init(dir, {}, { 'script  = "dev"', 'service "web"' })
    runs(dir, helpers.free_port(), "node web v1", { "src/msg.js", "node web v1", "node web v2" })
  end)

  it("node: without scripts, runs package.json's main", function()
    local dir = helpers.project({
      ["package.json"] = '{ "name": "srv", "main": "lib/main.js" }',
      ["lib/main.js"] = "",
    })
    init(dir, { "node" }, { 'main    = "lib/main.js"' })
  end)

  it("rust: builds Cargo.toml's binary and runs it", function()
    if not have("cargo") then
      pending("cargo is not installed (rustup, or Debian's cargo)")
      return
    end
    local dir = helpers.project({
      ["Cargo.toml"] = '[package]\nname = "hello-srv"\nversion = "0.1.0"\nedition = "2021"\n',
      ["src/main.rs"] = [[
use std::io::{Read, Write};
fn main() {
    let port = std::env::var("PORT").unwrap();
    let l = std::net::TcpListener::bind(format!("127.0.0.1:{}", port)).unwrap();
    for s in l.incoming() {
        let mut s = s.unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nrust srv v1");
    }
}
]],
    })
    init(dir, {}, { 'bin = "hello-srv"' })
    runs(dir, helpers.free_port(), "rust srv v1", nil,
      { CARGO_TARGET_DIR = false, CARGO_NET_OFFLINE = "true" })
  end)

  it("c: a CMake project builds its add_executable target with cmake, not make", function()
    local dir = helpers.project({
      ["CMakeLists.txt"] = "cmake_minimum_required(VERSION 3.13)\nproject(demo C)\n" ..
        "add_executable(srv server.c)\n",
      ["server.c"] = helpers.read_file(helpers.root .. "/examples/c-make/server.c"),
      ["message.h"] = '#define MESSAGE "cmake srv v1"\n',
    })
    init(dir, {}, { "c.cmake", 'target    = "srv"', 'run       = "build/srv"' })
    runs(dir, helpers.free_port(), "cmake srv v1", { "message.h", "cmake srv v1", "cmake srv v2" })
  end)

  it("c: a Makefile project builds its first target", function()
    local dir = helpers.tmpdir()
    assert(os.execute(("cp -r %s/examples/c-make/. %s && rm %s/Reloadfile.lua"):format(
      helpers.root, dir, dir)))
    init(dir, {}, { "c.make", 'target    = "server"', 'run       = "./server"' })
    runs(dir, helpers.free_port(), "hello from c-make")
  end)

  it("python: Django's manage.py runserver, without Django's own reloader", function()
    if not python_has("django") then
      pending("Debian's python3-django is not installed (scripts/setup installs it)")
      return
    end
    local dir = helpers.project({
      ["manage.py"] = [[
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_settings")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
]],
      ["site_settings.py"] = [[
SECRET_KEY = "spec"
DEBUG = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "urls"
INSTALLED_APPS = []
DATABASES = {}
]],
      ["urls.py"] = [[
from django.http import HttpResponse
from django.urls import path
urlpatterns = [path("", lambda request: HttpResponse("django v1"))]
]],
    })
    venv(dir)
    init(dir, {}, { "py.django", "runserver --noreload", 'python  = ".venv/bin/python"' })
    runs(dir, helpers.free_port(), "django v1", { "urls.py", "django v1", "django v2" })
  end)

  it("python: a Flask app with flask run", function()
    if not python_has("flask") then
      pending("Debian's python3-flask is not installed (scripts/setup installs it)")
      return
    end
    local dir = helpers.project({
      ["app.py"] = [[
from flask import Flask
server = Flask(__name__)

@server.route("/")
def index():
    return "flask v1"
]],
    })
    venv(dir)
    init(dir, { "python" }, { "py.flask", 'app     = "app:server"', "--no-reload" })
    runs(dir, helpers.free_port(), "flask v1", { "app.py", "flask v1", "flask v2" })
  end)

  it("python: a FastAPI app with uvicorn", function()
    if not python_has("fastapi", "uvicorn") then
      pending("Debian's python3-fastapi and uvicorn are not installed (scripts/setup)")
      return
    end
    local dir = helpers.project({
      ["main.py"] = [[
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
api = FastAPI()

@api.get("/", response_class=PlainTextResponse)
def index():
    return "fastapi v1"
]],
    })
    venv(dir)
    init(dir, {}, { "py.fastapi", 'app     = "main:api"' })
    runs(dir, helpers.free_port(), "fastapi v1", { "main.py", "fastapi v1", "fastapi v2" })
  end)

  it("with nothing to detect, writes the generic Reloadfile, and it passes check", function()
    local dir = helpers.tmpdir()
    local text = init(dir, {}, { 'service "app"' })
    assert.truthy(text:find("Keys of a service: watch", 1, true), text)
  end)
end)
