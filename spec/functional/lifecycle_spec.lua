-- Every way into a restart goes through one lifecycle, through the real binary: a Reloadfile
-- edit, the crash policy, a change that the run function rejects, a plain file change. On each
-- path: no process of the next generation while one of the previous lives, and the previous
-- one stopped only once the next command is known to be runnable.
local helpers = require("spec.helpers")

local tcpserve = helpers.fixture("tcpserve")

local start = helpers.session

local stop = helpers.end_session

local function answers(port, expected, proc)
  return helpers.answers(port, expected, { proc = proc })
end

local function count(text, pattern)
  local _, n = text:gsub(pattern, "")
  return n
end

describe("one lifecycle for every restart", function()
  it("a Reloadfile edit starts the new generation only once the old tree is gone", function()
    -- No `ready` port (so no port-free wait), and a server that drains for 1 s on SIGTERM: a
    -- new generation started early would find its port taken.
    local port = helpers.free_port()
    local function reloadfile(msg)
      return ([[
service "srv" {
  watch = "*.nothing",
  run = { %q, "%d", %q },
  env = { TCPSERVE_DRAIN_MS = "1000" },
}
]]):format(tcpserve, port, msg)
    end
    local dir = helpers.project({ ["Reloadfile.lua"] = reloadfile("v1") })
    local proc, marker = start(dir)
    answers(port, "v1", proc)
    helpers.write_file(dir .. "/Reloadfile.lua", reloadfile("v2"))
    answers(port, "v2", proc)
    -- The new server answers before reload has necessarily read its output, or the keeper's
    -- "started": wait for both lines, then judge the whole text.
    proc:wait_output("draining 1000 ms.*listening " .. port)
    proc:wait_output("restarted in [%d.]+ m?s %(pid %d+%) after its definition changed")
    local text = proc:text()
    assert.is_nil(text:find("in use", 1, true), text)
    assert.are.equal(1, count(text, "draining 1000 ms"), text)
    stop(proc, marker)
  end)

  it("a file change starts the new generation in the old keeper itself, without reload",
    function()
      -- The old server drains until `release` exists. reload is stopped (SIGSTOP) before that:
      -- the new server can then only have been started by the old keeper itself, at the end of
      -- its tree (keeper_proto.h, the next run), and it must find the port free.
      local port = helpers.free_port()
      local dir = helpers.project({
        ["Reloadfile.lua"] = ([[
service "srv" {
  watch = "msg.txt",
  run = { "/bin/sh", "-c", 'exec "$0" "$1" "$(cat msg.txt)"', %q, "%d" },
  env = { TCPSERVE_DRAIN_UNTIL = "release" },
}
]]):format(tcpserve, port),
        ["msg.txt"] = "v1",
      })
      local proc, marker = start(dir, { "-v" })
      answers(port, "v1", proc)
      local function server() -- its pid and its parent, the keeper
        for _, st in ipairs(helpers.tagged(marker)) do
          if st.comm == "tcpserve" then
            return st.pid, st.ppid
          end
        end
      end
      local old_pid, keeper = server()
      assert.is_truthy(keeper, helpers.process_tree())
      helpers.write_file(dir .. "/msg.txt", "v2")
      proc:wait_output("draining until release exists")
      proc:wait_output("generation 2 waits in the same keeper for the end of generation 1")
      proc:signal("sigstop")
      local ok, err = pcall(function()
        helpers.write_file(dir .. "/release", "")
        answers(port, "v2", proc)
      end)
      local new_pid, parent = server()
      proc:signal("sigcont")
      assert(ok, err)
      assert.are_not.equal(old_pid, new_pid)
      assert.are.equal(keeper, parent, "the new server's parent is the old one's keeper")
      proc:wait_output("restarted in [%d.]+ m?s %(pid %d+%) after msg%.txt changed")
      proc:wait_output("listening " .. port .. ".*listening " .. port)
      local text = proc:text()
      assert.is_nil(text:find("in use", 1, true), text)
      assert.is_nil(text:find("exited with", 1, true), text)
      assert.are.equal(2, count(text, "listening " .. port), text) -- v1, then v2 once
      stop(proc, marker)
    end)

  it("restarts a crash under on-failure even when it left a helper, once the helper is gone",
    function()
      -- Each start logs how many helpers of earlier generations it sees: always 0. Counted
      -- from /proc without pgrep, which hangs under the sanitizers' preloaded runtime
      -- (scripts/test --sanitize); "[.]" keeps grep's own argument from matching itself. The
      -- shell's exit hangs up its terminal's group (docs/output.md), which could take the helper
      -- before its setsid: it ignores SIGHUP, as a helper that must outlive its parent does.
      local n = math.random(100000, 999999)
      local tag = ("999.%d"):format(n)
      local dir = helpers.project({ ["Reloadfile.lua"] = ([[
service "crashy" {
  watch = "*.nothing",
  run = "echo start $(cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' '\\n' | " ..
    "grep -cx '999[.]%d') >> starts.log; trap '' HUP; setsid sleep %s & exit 1",
  restart = "on-failure",
}
]]):format(n, tag) })
      local proc, marker = start(dir)
      local log = helpers.retry(20000, function()
        local text = helpers.read_file(dir .. "/starts.log") or ""
        return count(text, "start") >= 3 and text, "starts so far: " .. text .. "\n" ..
          proc:text()
      end)
      assert.are.equal(3, count(log:sub(1, #"start 0\nstart 0\nstart 0\n"), "start 0\n"), log)
      assert.matches("crashy: exited with status 1; stopping the 1 process it left running",
        proc:text())
      assert.matches("crashy: exited with status 1; restarting in", proc:text())
      stop(proc, marker)
    end)

  it("keeps the old generation serving when the run function rejects an edit", function()
    local port = helpers.free_port()
    local dir = helpers.project({
      ["msg.txt"] = "good",
      ["Reloadfile.lua"] = ([[
service "srv" {
  watch = "*.txt",
  run = function()
    local msg = io.open("msg.txt"):read("a")
    if msg:find("bad") then error("refusing " .. msg) end
    return { %q, "%d", msg }
  end,
  ready = { port = %d },
}
]]):format(tcpserve, port, port),
    })
    local proc, marker = start(dir)
    answers(port, "good", proc)
    local pid = helpers.retry(5000, function()
      for _, st in ipairs(helpers.tagged(marker)) do
        if st.comm == "tcpserve" then return st.pid end
      end
    end)
    helpers.write_file(dir .. "/msg.txt", "bad")
    proc:wait_output("refusing bad")
    proc:wait_output("the previous version keeps running", nil, true)
    assert.are.equal("good", (helpers.http_get(port)))
    assert.truthy(helpers.proc_stat(pid), "the old generation still runs")
    helpers.write_file(dir .. "/msg.txt", "fixed")
    answers(port, "fixed", proc)
    stop(proc, marker)
  end)

  it("says once when its own start writes a watched file, and backs its restarts off",
    function()
      -- Like Vite 5 writing vite.config.js.timestamp-<ms>-<hash>.mjs at every start.
      local dir = helpers.project({ ["Reloadfile.lua"] = [[
service "web" { run = "touch stamp-$(date +%s%N).mjs; exec sleep 1000" }
]] })
      local proc, marker = start(dir)
      proc:wait_output("restarting in 2.00 s", 30000, true)
      proc:wait_output("restarting in 4.00 s", 30000, true)
      local text = proc:text()
      assert.matches("web: restarted 3 times in a row because of stamp%-%d+%.mjs, which its own " ..
        'start wrote: add ignore = { "stamp%-%*%.mjs" }', text)
      assert.are.equal(1, count(text, "which its own start wrote"))
      stop(proc, marker)
    end)

  it("says, on every restart, what caused it and how long build, stop and start took",
    function()
      local port = helpers.free_port()
      local dir = helpers.project({
        ["msg.txt"] = "v0",
        ["Reloadfile.lua"] = ([[
service "srv" {
  watch = "*.txt",
  run = { "sh", "-c", "exec %s %d \"$(cat msg.txt)\"" },
  ready = { port = %d },
}
]]):format(tcpserve, port, port),
      })
      local proc, marker = start(dir)
      answers(port, "v0", proc)
      for i = 1, 10 do
        helpers.write_file(dir .. "/msg.txt", "v" .. i)
        answers(port, "v" .. i, proc)
        helpers.retry(5000, function()
          local n = count(proc:text(), "srv: restarted in [%d.]+ m?s %(pid %d+%) after " ..
            "msg%.txt changed; stop [%d.]+ m?s, start [%d.]+ m?s")
          return n == i, ("%d restart lines after %d edits:\n%s"):format(n, i, proc:text())
        end)
      end
      assert.is_nil(proc:text():find("started (pid", 1, true), proc:text())
      stop(proc, marker)
    end)
end)
