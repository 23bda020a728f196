-- The examples end to end with the real tools (make, node, go, Delve), and a recipe shared as
-- a rock. Each edit loop checks that no process of an earlier generation survives and that the
-- new one never hits "address already in use".
local helpers = require("spec.helpers")
local uv = require("luv")

local function have(cmd)
  return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true
end

--- Copies examples/NAME into a temporary directory.
local function example(name)
  local dir = helpers.tmpdir() .. "/" .. name
  assert(os.execute(("cp -r %s %s"):format(helpers.shell_quote(helpers.root .. "/examples/" ..
    name), helpers.shell_quote(dir))))
  return dir
end

local start = helpers.session

local stop = helpers.end_session

local function answers(port, expected, max_ms, proc)
  return helpers.answers(port, expected, { plain = true, max_ms = max_ms, proc = proc })
end

--- Processes of this run whose command name is comm.
local function alive(marker, comm)
  local found = {}
  for _, st in ipairs(helpers.tagged(marker)) do
    if st.comm == comm then
      found[#found + 1] = st.pid
    end
  end
  return found
end

--- Edits `file` n times (replacing `from` with a numbered text) and checks after each edit
--- that the new text answers on `port` and exactly one process of each listed comm lives.
local function edit_loop(proc, marker, dir, file, from, port, n, comms)
  local path = dir .. "/" .. file
  local original = helpers.read_file(path)
  for i = 1, n do
    local text = ("edit number %d"):format(i)
    helpers.write_file(path, (original:gsub(from, text)))
    answers(port, text, 30000, proc)
    for _, comm in ipairs(comms) do
      local pids = helpers.retry(5000, function()
        local p = alive(marker, comm)
        return #p == 1 and p, ("%d processes named %s: %s"):format(#p, comm,
          table.concat(p, " "))
      end)
      assert.are.equal(1, #pids)
    end
  end
  assert.is_nil(proc:text():find("address already in use", 1, true), proc:text())
  assert.is_nil(proc:text():find("EADDRINUSE", 1, true), proc:text())
end

describe("examples", function()
  it("c-make: 20 edits, each answered by a new build, no earlier generation left", function()
    local dir = example("c-make")
    local port = helpers.free_port()
    local proc, marker = start(dir, {}, { PORT = tostring(port) })
    answers(port, "hello from c-make", 30000, proc)
    edit_loop(proc, marker, dir, "message.h", "hello from c%-make", port, 20, { "server" })
    stop(proc, marker)
  end)

  it("node: 20 edits, each answered by the new code", function()
    if not have("node") then
      pending("node is not installed (scripts/setup installs nodejs)")
      return
    end
    local dir = example("node")
    local port = helpers.free_port()
    local proc, marker = start(dir, {}, { PORT = tostring(port) })
    answers(port, "hello from node", 30000, proc)
    edit_loop(proc, marker, dir, "message.js", "hello from node", port, 20, { "node" })
    stop(proc, marker)
  end)

  it("multi: the task, then the API once seeded, then the front once the API listens", function()
    if not have("node") then
      pending("node is not installed (scripts/setup installs nodejs)")
      return
    end
    local dir = example("multi")
    local api, web = helpers.free_port(), helpers.free_port()
    local proc, marker = start(dir, {}, { API_PORT = tostring(api), WEB_PORT = tostring(web) })
    answers(web, "web v1 -> api v1 seed", 30000, proc)
    -- The front can answer before reload has read its line: wait for the lines judged.
    for _, line in ipairs({ "seeded", "api listening", "web listening" }) do
      proc:wait_output(line, 10000, true)
    end
    local text = proc:text()
    local seeded = text:find("seeded", 1, true)
    local api_up = text:find("api listening", 1, true)
    local web_up = text:find("web listening", 1, true)
    assert.truthy(seeded and api_up and web_up, text)
    assert.is_true(seeded < api_up and api_up < web_up, text)
    -- Editing the front restarts only the front.
    local js = helpers.read_file(dir .. "/web.js")
    helpers.write_file(dir .. "/web.js", (js:gsub("web v1", "web v2")))
    answers(web, "web v2 -> api v1", 30000, proc)
    local _, api_starts = proc:text():gsub("api listening", "")
    assert.are.equal(1, api_starts, proc:text())
    stop(proc, marker)
  end)

  it("go-dlv under --debug: 20 edits, Delve and the new build listen again each time", function()
    if not (have("go") and have("dlv")) then
      pending("go and dlv are not installed (scripts/setup installs golang-go and delve)")
      return
    end
    -- The first debug build compiles the standard library without optimisations: over a
    -- minute on a fresh machine.
    helpers.budget(300)
    local dir = example("go-dlv")
    require("spec.support.examples").delve_any_user(dir)
    local port, dlv_port = helpers.free_port(), helpers.free_port()
    local cache = helpers.build_dir .. "/gocache"
    local proc, marker = start(dir, { "--debug" }, {
      PORT = tostring(port), DLV_LISTEN = "127.0.0.1:" .. dlv_port,
      GOCACHE = cache, GOPATH = helpers.build_dir .. "/gopath", GOFLAGS = "-mod=mod",
      GOPROXY = "off", GOTOOLCHAIN = "local",
    })
    answers(port, "hello from go", 600000, proc)
    proc:wait_output("dlv connect 127.0.0.1:" .. dlv_port, 5000, true)
    edit_loop(proc, marker, dir, "cmd/api/message.go", "hello from go", port, 20,
      { "dlv", "api" })
    assert.is_true(helpers.port_listening(dlv_port))
    stop(proc, marker)
    assert.is_true(helpers.port_bindable(port))
    assert.is_true(helpers.port_bindable(dlv_port))
  end)
end)

describe("a recipe shared as a rock", function()
  it("installs into a local tree with luarocks and is required by a Reloadfile", function()
    if not have("luarocks") then
      pending("luarocks is not installed (scripts/setup installs it)")
      return
    end
    local tree = helpers.tmpdir()
    local code, out, err = helpers.run({ "luarocks", "--lua-version", "5.4", "--tree", tree,
      "make", "reload-recipe-webapp-0.1-1.rockspec" },
      { cwd = helpers.root .. "/examples/recipe-rock" })
    assert.are.equal(0, code, out .. err)
    local project = helpers.tmpdir()
    local env = helpers.env_with({ LUA_PATH = tree .. "/share/lua/5.4/?.lua;;" })
    code, out, err = helpers.reload({ "init", "teamrecipes.webapp" }, { cwd = project, env = env })
    assert.are.equal(0, code, out .. err)
    assert.matches('require%("teamrecipes.webapp"%)', helpers.read_file(project ..
      "/Reloadfile.lua"))
    code, out, err = helpers.reload({ "check" }, { cwd = project, env = env })
    assert.are.equal(0, code, out .. err)
    assert.matches("build 1  make app", out)
    assert.matches("ready    port 8080", out)
    -- Without the tree on the path the module is not found, and the error says so.
    local _
    code, _, err = helpers.reload({ "check" }, { cwd = project })
    assert.are.equal(1, code)
    assert.matches("module 'teamrecipes.webapp' not found", err)
  end)

  it("the project's .reload/ folder comes before the user's folder and the built-ins", function()
    local project = helpers.project({
      [".reload/reload/recipes/go.lua"] = 'return { service = function() ' ..
        'return { run = "project-go" } end }',
      ["Reloadfile.lua"] = 'local go = require("reload.recipes.go")\n' ..
        'service "a" (go.service {})\n',
    })
    local xdg = helpers.tmpdir()
    assert(os.execute("mkdir -p " .. xdg .. "/reload/reload/recipes"))
    helpers.write_file(xdg .. "/reload/reload/recipes/go.lua",
      'return { service = function() return { run = "user-go" } end }')
    local env = helpers.env_with({ XDG_CONFIG_HOME = xdg })
    local code, out, err = helpers.reload({ "check" }, { cwd = project, env = env })
    assert.are.equal(0, code, err)
    assert.matches("run      project%-go", out)
    os.remove(project .. "/.reload/reload/recipes/go.lua")
    code, out, err = helpers.reload({ "check" }, { cwd = project, env = env })
    assert.are.equal(0, code, err)
    assert.matches("run      user%-go", out)
    code, out, err = helpers.reload({ "check" }, { cwd = project })
    assert.are.equal(0, code, err)
    assert.matches("run      tmp/app", out)
  end)

  it("reload's own Lua modules install as a rock", function()
    if not have("luarocks") then
      pending("luarocks is not installed (scripts/setup installs it)")
      return
    end
    local tree = helpers.tmpdir()
    local code, out, err = helpers.run({ "luarocks", "--lua-version", "5.4", "--tree", tree,
      "make", "reload-dev-1.rockspec" }, { cwd = helpers.root })
    assert.are.equal(0, code, out .. err)
    assert.truthy(uv.fs_stat(tree .. "/share/lua/5.4/reload/recipes/go.lua"))
    assert.truthy(uv.fs_stat(tree .. "/share/lua/5.4/reload/engine.lua"))
  end)
end)
