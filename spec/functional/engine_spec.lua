-- The real `reload` binary in temporary projects: real files, real processes, real ports.
local helpers = require("spec.helpers")

local tcpserve = helpers.fixture("tcpserve")

--- Starts reload in dir with a unique marker in its environment (every process it starts
--- inherits it), returns the process and the marker.
local start = helpers.session

--- Stops reload with a signal, expects exit 0 and no process of its left.
local stop = helpers.end_session

local answers = helpers.answers

local function server_project(port, message, extra)
  return helpers.project({
    ["msg.txt"] = message,
    ["Reloadfile.lua"] = ([[
service "srv" {
  watch = { "*.txt" },
  build = "test -s msg.txt",
  run = function() return { %q, "%d", (io.open("msg.txt"):read("a")) } end,
  ready = { port = %d },
  stop = { grace = 2 },
  %s
}
]]):format(tcpserve, port, port, extra or ""),
  })
end

describe("reload (functional)", function()
  it("rebuilds and restarts on a change: the new code answers on the same port", function()
    local port = helpers.free_port()
    local dir = server_project(port, "one")
    local proc, marker = start(dir)
    answers(port, "one")
    helpers.write_file(dir .. "/msg.txt", "two")
    answers(port, "two")
    proc:wait_output("restarted in")
    helpers.write_file(dir .. "/notes.md", "not watched")
    helpers.write_file(dir .. "/msg.txt", "three")
    answers(port, "three")
    stop(proc, marker)
  end)

  it("keeps the old process serving when the build fails, and shows why", function()
    local port = helpers.free_port()
    local dir = server_project(port, "good")
    local proc, marker = start(dir)
    answers(port, "good")
    helpers.write_file(dir .. "/msg.txt", "") -- `test -s` fails on an empty file
    proc:wait_output("build failed")
    proc:wait_output("previous version keeps running", nil, true)
    assert.are.equal("good", helpers.http_get(port))
    helpers.write_file(dir .. "/msg.txt", "fixed")
    answers(port, "fixed")
    stop(proc, marker)
  end)

  it("cancels a build, whole tree, when a change arrives during it", function()
    local dir = helpers.project({
      ["a.txt"] = "1",
      ["Reloadfile.lua"] = [[
service "s" {
  watch = { "*.txt" },
  build = "echo started >> builds.log; sh -c 'sleep 30; echo slow-done'",
  run = { "sleep", "1000" },
}
]],
    })
    local proc, marker = start(dir)
    helpers.retry(5000, function()
      return helpers.read_file(dir .. "/builds.log") == "started\n", "no build started yet"
    end)
    -- The first build hangs in `sleep 30`, a grandchild of the build step.
    local function sleepers()
      local found = {}
      for _, st in ipairs(helpers.tagged(marker)) do
        local cmd = helpers.read_file("/proc/" .. st.pid .. "/cmdline") or ""
        if cmd:find("sleep\0" .. "30", 1, true) then
          found[#found + 1] = st.pid
        end
      end
      return found
    end
    local first = helpers.retry(5000, function()
      local s = sleepers()
      return #s == 1 and s[1], "sleepers: " .. #s
    end)
    helpers.write_file(dir .. "/a.txt", "2")
    proc:wait_output("cancelling", 5000, true)
    helpers.retry(5000, function()
      return helpers.proc_stat(first) == nil or helpers.proc_stat(first).state == "Z",
        "the first build's sleep " .. first .. " is still alive"
    end)
    stop(proc, marker)
  end)

  it("backs off a crash loop: increasing delays between restarts", function()
    local dir = helpers.project({
      ["Reloadfile.lua"] = [[
service "crash" {
  watch = "*.nothing", -- starts.log is written in the project: it must not count as a change
  run = "date +%s%N >> starts.log; exit 1",
  restart = "on-failure",
}
]],
    })
    local proc, marker = start(dir)
    local times = helpers.retry(10000, function()
      local text = helpers.read_file(dir .. "/starts.log") or ""
      local t = {}
      for n in text:gmatch("%d+") do
        t[#t + 1] = tonumber(n) / 1e6
      end
      return #t >= 4 and t, "starts so far: " .. #t
    end)
    local gaps = {}
    for i = 2, 4 do
      gaps[#gaps + 1] = times[i] - times[i - 1]
    end
    -- Ordering and bounds, not exact times: each wait is longer than the one before, the first
    -- at least the base delay (250 ms).
    assert.is_true(gaps[1] >= 200, "first gap " .. gaps[1])
    assert.is_true(gaps[2] > gaps[1] and gaps[3] > gaps[2], table.concat(gaps, ", "))
    proc:wait_output("restarting in")
    stop(proc, marker)
  end)

  it("ready.host: a service that listens on ::1 alone is up once ::1 accepts", function()
    local port = helpers.free_port()
    local dir = helpers.project({
      ["db.py"] = [[
import socket, sys, time
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::1", int(sys.argv[1])))
s.listen()
print("db listening", flush=True)
time.sleep(1000)
]],
      ["Reloadfile.lua"] = ([[
service "db" {
  run = { "python3", "db.py", "%d" },
  ready = { port = %d, host = "::1" },
}
service "api" {
  run = "echo api-start; sleep 1000",
  after = { "db" },
}
]]):format(port, port),
    })
    local proc, marker = start(dir)
    -- Probed on 127.0.0.1, db would never be up and api never start.
    proc:wait_output("api%-start", 10000)
    local text = proc:text()
    assert.is_true(text:find("db listening", 1, true) < text:find("api-start", 1, true), text)
    stop(proc, marker)
  end)

  it("starts a service `after` another only once that one is ready on its port", function()
    local port = helpers.free_port()
    local dir = helpers.project({
      ["Reloadfile.lua"] = ([[
service "db" {
  run = { %q, "%d", "db", "400" },
  ready = { port = %d },
}
service "api" {
  run = "echo api-start; sleep 1000",
  after = { "db" },
}
]]):format(tcpserve, port, port),
    })
    local proc, marker = start(dir)
    proc:wait_output("api%-start", 10000)
    local text = proc:text()
    -- db listened (printed by tcpserve, prefixed) before api started.
    local listened = text:find("listening " .. port, 1, true)
    local api = text:find("api-start", 1, true)
    assert.truthy(listened, "no 'listening " .. port .. "' in:\n" .. text)
    assert.is_true(listened < api, text)
    assert.matches("api%s+| api%-start", text)
    stop(proc, marker)
  end)

  it("reloads the Reloadfile: restarts what changed, keeps going on a broken edit", function()
    local dir = helpers.project({
      ["Reloadfile.lua"] = [[
service "a" { run = "echo a-v1; sleep 1000", watch = "*.nothing" }
service "b" { run = "echo b-v1; sleep 1000", watch = "*.nothing" }
]],
    })
    local proc, marker = start(dir)
    proc:wait_output("a%-v1")
    proc:wait_output("b%-v1")
    helpers.write_file(dir .. "/Reloadfile.lua", [[
service "a" { run = "echo a-v1; sleep 1000", watch = "*.nothing" }
service "b" { run = "echo b-v2; sleep 1000", watch = "*.nothing" }
]])
    proc:wait_output("b%-v2")
    proc:wait_output("restarting b")
    local _, a_count = proc:text():gsub("a%-v1", "")
    assert.are.equal(1, a_count, "a must not restart:\n" .. proc:text())
    helpers.write_file(dir .. "/Reloadfile.lua", 'service "a" {\n  run = "x",\n  bogus = 1 }\n')
    proc:wait_output("Reloadfile.lua:3: service \"a\": unknown key 'bogus'", 5000, true)
    proc:wait_output("previous configuration keeps running", 5000, true)
    stop(proc, marker)
  end)

  for _, sig in ipairs({ "sigint", "sigterm", "sighup" }) do
    it("leaves no process behind on " .. sig:upper(), function()
      local port = helpers.free_port()
      local dir = helpers.project({
        ["Reloadfile.lua"] = ([[
service "tree" {
  -- a shell whose child calls setsid: the classic escapee
  run = "setsid %s %d tree & sleep 1000",
  ready = { port = %d },
}
]]):format(tcpserve, port, port),
      })
      local proc, marker = start(dir)
      answers(port, "tree")
      stop(proc, marker, sig)
      assert.is_true(helpers.port_bindable(port))
    end)
  end

  it("exits 1 with FILE:LINE for a bad Reloadfile at start, and check says the same", function()
    local dir = helpers.project({
      ["Reloadfile.lua"] = 'service "a" {\n  run = "x",\n  restart = "sometimes",\n}\n',
    })
    local code, _, err = helpers.reload({}, { cwd = dir })
    assert.are.equal(1, code)
    assert.matches("Reloadfile.lua:3: service \"a\": 'restart' must be", err)
    local ccode, cout, cerr = helpers.reload({ "check" }, { cwd = dir })
    assert.are.equal(1, ccode, cout)
    assert.matches("Reloadfile.lua:3:", cerr)
  end)

  it("check prints the plan with the directories it would watch", function()
    local dir = helpers.project({
      ["src/a.c"] = "",
      ["Reloadfile.lua"] = 'ignore { "tmp/" }\nservice "app" { build = "make", run = "./app" }\n',
    })
    local code, out, err = helpers.reload({ "check" }, { cwd = dir })
    assert.are.equal(0, code, err)
    assert.matches("service app", out)
    assert.matches("build 1  make", out)
    assert.matches("watching %d+ directories", out)
  end)

  it("exits 2 for a usage error", function()
    local code, _, err = helpers.reload({ "run", "--grace", "soon", "--", "true" })
    assert.are.equal(2, code)
    assert.matches("%-%-grace needs a number", err)
    code = helpers.reload({ "run" })
    assert.are.equal(2, code)
  end)

  it("init writes a Reloadfile that check accepts, and never overwrites", function()
    local dir = helpers.tmpdir()
    local code, _, err = helpers.reload({ "init", "go" }, { cwd = dir })
    assert.are.equal(0, code, err)
    assert.matches("recipes.go", helpers.read_file(dir .. "/Reloadfile.lua"))
    code, _, err = helpers.reload({ "check" }, { cwd = dir })
    assert.are.equal(0, code, err)
    code, _, err = helpers.reload({ "init" }, { cwd = dir })
    assert.are.equal(1, code)
    assert.matches("already exists", err)
  end)

  it("reload run: -w selects what restarts, -i ignores, no Reloadfile needed", function()
    local dir = helpers.project({ ["src/a.c"] = "1", ["src/skip.c"] = "1", ["doc.md"] = "1" })
    local proc, marker = start(dir, { "run", "-w", "src/*.c", "-i", "src/skip.c", "--",
      "sh", "-c", "echo run-$$; sleep 1000" })
    proc:wait_output("run%-%d+")
    local function runs()
      local _, n = proc:text():gsub("run%-%d+", "")
      return n
    end
    helpers.write_file(dir .. "/doc.md", "2")
    helpers.write_file(dir .. "/src/skip.c", "2")
    helpers.write_file(dir .. "/src/a.c", "2")
    helpers.retry(5000, function()
      return runs() == 2, "runs: " .. runs() .. "\n" .. proc:text()
    end)
    -- Only src/a.c caused it.
    assert.matches("src/a%.c changed", proc:text())
    assert.is_nil(proc:text():find("doc.md", 1, true))
    assert.is_nil(proc:text():find("skip.c", 1, true))
    stop(proc, marker)
  end)

  it("reload run with no -w: a change to any file that is not ignored restarts", function()
    local dir = helpers.project({ ["src/a.c"] = "1", ["doc.md"] = "1", [".gitignore"] = "out/\n",
      ["out/x"] = "1" })
    local proc, marker = start(dir, { "run", "--", "sh", "-c", "echo run-$$; sleep 1000" })
    proc:wait_output("run%-%d+")
    local function runs()
      local _, n = proc:text():gsub("run%-%d+", "")
      return n
    end
    helpers.write_file(dir .. "/out/x", "2")
    helpers.write_file(dir .. "/src/a.c", "2")
    helpers.retry(5000, function()
      return runs() == 2, "runs: " .. runs() .. "\n" .. proc:text()
    end)
    helpers.write_file(dir .. "/doc.md", "2")
    helpers.retry(5000, function()
      return runs() == 3, "runs: " .. runs() .. "\n" .. proc:text()
    end)
    assert.is_nil(proc:text():find("out/x", 1, true), proc:text())
    stop(proc, marker)
  end)

  it("applies a debugger wrapper (command -> command) to the run command", function()
    local dir = helpers.project({
      ["Reloadfile.lua"] = [[
local function traced(cmd)
  local out = { "sh", "-c", 'echo "wrapped: $*"; exec "$@"', "sh" }
  for _, a in ipairs(cmd) do out[#out + 1] = a end
  return out
end
service "app" { run = { "sh", "-c", "echo inner-ran; sleep 1000" },
  wrap = flag("debug") and traced or nil }
]],
    })
    local proc, marker = start(dir, { "--debug" })
    proc:wait_output("wrapped: sh %-c")
    proc:wait_output("inner%-ran")
    stop(proc, marker)
  end)

  it("answers keys from a terminal: q quits after stopping every tree", function()
    local dir = helpers.project({
      ["Reloadfile.lua"] = 'service "app" { run = "echo app-up; sleep 1000" }\n',
    })
    local marker = helpers.unique("RELOAD_E2E")
    -- script(1) gives reload a pseudo-terminal; what we write to script's stdin is typed there.
    local proc = helpers.start({ "script", "-qfec", helpers.reload_bin, "/dev/null" },
      { cwd = dir, stdin = true, env = helpers.env_with({ RELOAD_E2E = marker, NO_COLOR = "1" }) })
    proc:wait_output("app%-up")
    proc:write("?")
    proc:wait_output("keys: r rebuild")
    proc:write("r")
    helpers.retry(5000, function()
      local _, n = proc:text():gsub("app%-up", "")
      return n == 2, "starts: " .. n
    end)
    proc:write("q")
    assert.are.equal(0, proc:wait(10000), proc:text())
    proc:wait_output("every process tree is gone")
    local left = helpers.kill_tagged("RELOAD_E2E=" .. marker)
    assert.are.same({}, left)
  end)

  it("accepts the project's own Reloadfile and every example's, plain and with --debug", function()
    local files = { helpers.root .. "/Reloadfile.lua" }
    for _, name in ipairs({ "c-make", "node", "go-dlv", "multi" }) do
      files[#files + 1] = helpers.root .. "/examples/" .. name .. "/Reloadfile.lua"
    end
    for _, file in ipairs(files) do
      for _, extra in ipairs({ {}, { "--debug" } }) do
        local args = { "check", "-f", file }
        for _, a in ipairs(extra) do
          args[#args + 1] = a
        end
        local code, out, err = helpers.reload(args)
        assert.are.equal(0, code, file .. ": " .. out .. err)
      end
    end
  end)
end)
