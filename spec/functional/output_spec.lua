-- What reload shows, through the real binary: builds you can see (a start line with its cause,
-- output live once a build takes a moment, a passing build's warnings, a failing build's output
-- in full with its step, every step's duration), names from the file system escaped, the JSON
-- event log, the progress line on a terminal only.
local helpers = require("spec.helpers")

local start = helpers.session

local stop = helpers.end_session

describe("builds you can see", function()
  it("a passing build's warnings are shown, each step timed", function()
    local dir = helpers.project({
      ["a.c"] = "int main(void) { int unused; return 0; }\n",
      ["Reloadfile.lua"] = [[
service "app" {
  watch = "*.c",
  build = steps { "echo generating", "cc -Wall -o app a.c" },
  run = "./app; sleep 1000",
}
]],
    })
    local proc, marker = start(dir)
    proc:wait_output("build ok")
    local text = proc:text()
    assert.matches("app: building %(2 steps%)", text)
    assert.matches("app build | [^\n]*warning: unused variable", text)
    assert.matches("app: build ok in [%d.]+ m?s %(echo generating [%d.]+ m?s, " ..
      "cc %-Wall %-o app a%.c [%d.]+ m?s%)", text)
    stop(proc, marker)
  end)

  it("a long passing output is cut to its first lines and a count", function()
    local dir = helpers.project({
      ["Reloadfile.lua"] = [[
service "app" { build = "seq 1 50", run = "sleep 1000" }
]],
    })
    local proc, marker = start(dir)
    proc:wait_output("build ok")
    local text = proc:text()
    assert.matches("app build | 10\n", text)
    assert.is_nil(text:find("app build | 11\n", 1, true), text)
    assert.matches("%.%.%. 40 more lines of build output", text)
    stop(proc, marker)
  end)

  it("a failing build shows its whole output and names the failing step", function()
    local dir = helpers.project({
      ["Reloadfile.lua"] = [[
service "app" { build = steps { "true", "seq 1 50; exit 3" }, run = "sleep 1000" }
]],
    })
    local proc, marker = start(dir)
    proc:wait_output("build failed")
    local text = proc:text()
    assert.matches("app build | 1\n", text)
    assert.matches("app build | 50\n", text)
    assert.matches("build failed in [%d.]+ m?s at step 2/2 'seq 1 50; exit 3' %(exit status 3%)",
      text)
    stop(proc, marker)
  end)

  it("a build that takes more than a moment shows its output as it comes", function()
    local dir = helpers.project({
      ["Reloadfile.lua"] = [[
service "app" {
  watch = "*.nothing",
  build = "echo early-line; while [ ! -e go.flag ]; do sleep 0.01; done; echo late-line",
  run = "sleep 1000",
}
]],
    })
    local proc, marker = start(dir)
    proc:wait_output("app build | early-line", 15000, true)
    assert.is_nil(proc:text():find("build ok", 1, true), "still building")
    helpers.write_file(dir .. "/go.flag", "")
    proc:wait_output("build ok")
    proc:wait_output("app build | late-line", nil, true)
    stop(proc, marker)
  end)
end)

describe("quitting", function()
  it("a second Ctrl-C kills at once, and says so (not that a grace period ran out)", function()
    local dir = helpers.project({
      ["Reloadfile.lua"] = [[
service "stubborn" { run = "trap '' TERM INT; echo up; while :; do sleep 1; done",
  stop = { grace = 60 } }
]],
    })
    local proc, marker = start(dir)
    proc:wait_output("up\n", nil, true)
    proc:signal("sigint")
    proc:wait_output("stopping", nil, true)
    proc:signal("sigint")
    assert.are.equal(0, proc:wait(20000), proc:text())
    local text = proc:text()
    assert.matches("killing every process tree now", text)
    assert.is_nil(text:find("grace period", 1, true), text)
    local left = helpers.kill_tagged(marker)
    assert.are.same({}, left)
  end)
end)

describe("names from the file system", function()
  it("are printed with their control characters escaped", function()
    local dir = helpers.project({
      ["Reloadfile.lua"] = 'service "app" { run = "sleep 1000" }\n',
    })
    local proc, marker = start(dir)
    proc:wait_output("started in")
    local name = "evil\nreload app: forged line\27[31m.txt"
    helpers.write_file(dir .. "/" .. name, "x")
    proc:wait_output("restarted in")
    local text = proc:text()
    assert.truthy(text:find("app: evil\\nreload app: forged line\\e[31m.txt changed", 1, true),
      text)
    assert.is_nil(text:find("\nreload app: forged line", 1, true), text)
    assert.is_nil(text:find("\27[31m", 1, true), text)
    stop(proc, marker)
  end)
end)

describe("the JSON event log (--json FILE)", function()
  it("has every step of a restart, one JSON object per line", function()
    local dir = helpers.project({
      ["a.txt"] = "1",
      ["Reloadfile.lua"] = [[
service "app" { watch = "*.txt", build = steps { "true", "true" }, run = "sleep 1000" }
]],
    })
    local log = helpers.tmpdir() .. "/events.jsonl"
    local proc, marker = start(dir, { "--json", log })
    proc:wait_output("started in")
    helpers.write_file(dir .. "/a.txt", "2")
    proc:wait_output("restarted in")
    stop(proc, marker)
    local code, out, err = helpers.run({ "python3", "-c", [[
import json, sys
types = []
for line in open(sys.argv[1]):
    ev = json.loads(line)
    types.append(ev["type"] + (" %d" % ev["generation"] if "generation" in ev else ""))
    if ev["type"] == "changed": assert ev["paths"] == ["a.txt"], ev
    if ev["type"] == "build_step": assert ev["ok"] and ev["ms"] >= 0 and ev["label"] == "true", ev
print(" ".join(types))
]], log })
    assert.are.equal(0, code, err)
    for _, want in ipairs({ "reload", "build_step", "build_ok", "generation_started 1",
      "generation_ready 1", "changed", "generation_gone 1", "generation_started 2", "quit" }) do
      assert.truthy(out:find(want, 1, true), want .. " in: " .. out)
    end
  end)
end)

describe("the progress line", function()
  it("shows on a terminal during a long build, then is erased", function()
    local dir = helpers.project({
      ["Reloadfile.lua"] = [[
service "app" {
  watch = "*.nothing",
  build = "while [ ! -e go.flag ]; do sleep 0.01; done",
  run = "sleep 1000",
}
]],
    })
    local marker = helpers.unique("RELOAD_OUT")
    -- script gives reload a pseudo-terminal and copies what it shows to the transcript.
    local transcript = helpers.tmpdir() .. "/typescript"
    local tty = helpers.start({ "script", "-qfec", helpers.reload_bin, transcript },
      { cwd = dir, stdin = true,
        env = helpers.env_with({ NO_COLOR = "1", TERM = "xterm", RELOAD_OUT = marker }) })
    helpers.retry(20000, function()
      local t = helpers.read_file(transcript) or ""
      return t:find("app: building [%d.]+ m?s · step 1/1") ~= nil, "a progress line: " .. t
    end)
    helpers.write_file(dir .. "/go.flag", "")
    helpers.retry(20000, function()
      local t = helpers.read_file(transcript) or ""
      return t:find("build ok") ~= nil, "build ok: " .. t
    end)
    local t = helpers.read_file(transcript)
    local last_progress = 0
    for pos in t:gmatch("()app: building [%d.]+ m?s · step") do last_progress = pos end
    -- erased before the line that says the build passed
    assert.truthy(t:find("\r\27%[K[^\n]*reload app: build ok", last_progress), t)
    tty:write("q")
    assert.are.equal(0, tty:wait(20000), tty:text())
    local left = helpers.kill_tagged("RELOAD_OUT=" .. marker)
    assert.are.same({}, left)
  end)
end)
