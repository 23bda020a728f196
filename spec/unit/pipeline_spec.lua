local pipeline = require("reload.pipeline")

describe("reload.pipeline", function()
  it("exec_form: one simple command gets exec (LISTEN_PID names the program), nothing else",
    function()
      assert.are.equal("exec tmp/api --port $PORT", pipeline.exec_form("tmp/api --port $PORT"))
      assert.are.equal("exec node x \"$(cat m)\" >log 2>&1",
        pipeline.exec_form("node x \"$(cat m)\" >log 2>&1"))
      for _, cmd in ipairs({ "make && ./a", "a; b", "a | b", "a &", "a\nb", "FOO=1 a",
        "(a)", "if x; then y; fi", "exec a", "{ a; }", "! a", "   " }) do
        assert.is_nil(pipeline.exec_form(cmd), cmd)
      end
    end)

  it("command: a shell string of a service with listen runs with exec, others as written",
    function()
      local cfg = { run = { kind = "shell", cmd = "tmp/api" }, wrap = {} }
      assert.are.same({ "/bin/sh", "-c", "tmp/api" }, pipeline.command(cfg, {}))
      cfg.listen = { { port = 1, host = "127.0.0.1", name = "x" } }
      assert.are.same({ "/bin/sh", "-c", "exec tmp/api" }, pipeline.command(cfg, {}))
      cfg.run.cmd = "a && b"
      assert.are.same({ "/bin/sh", "-c", "a && b" }, pipeline.command(cfg, {}))
    end)
end)
