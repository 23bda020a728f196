local cli = require("reload.cli")

--- cli.main(argv) with stdout and stderr captured: code, stdout, stderr.
local function main(argv)
  local saved_out, saved_err = cli.stdout, cli.stderr
  local out, err = {}, {}
  local function sink(buf)
    return { write = function(_, s) buf[#buf + 1] = s end, flush = function() end }
  end
  cli.stdout, cli.stderr = sink(out), sink(err)
  local ok, code = pcall(cli.main, argv)
  cli.stdout, cli.stderr = saved_out, saved_err
  assert(ok, code)
  return code, table.concat(out), table.concat(err)
end

describe("reload.cli", function()
  it("has a usage text that starts with the synopsis", function()
    assert.matches("^Usage: reload", cli.usage)
  end)

  it("returns 2 for an unknown option", function()
    local code, _, err = main({ "--bogus" })
    assert.are.equal(2, code)
    assert.matches("%-%-bogus", err)
  end)

  describe("finds the command word", function()
    local cases = {
      { { "run", "--", "true" }, "run", 1 },
      { { "-v", "run", "--", "true" }, "run", 2 },
      { { "--no-color", "run", "--ready", "1234", "--", "true" }, "run", 2 },
      { { "-f", "x.lua", "-D", "mode=dev", "check" }, "check", 5 },
      { { "--file=x.lua", "check" }, "check", 2 },
      { { "--json", "-", "-q", "init", "go" }, "init", 4 },
      -- An option's value is never the command: -f run names a file called run.
      { { "-f", "run" }, nil },
      -- A word that is no command is a service of the default command, and so is all after --.
      { { "api", "run" }, nil },
      { { "-v", "--", "run" }, nil },
      { {}, nil },
      -- A run option before run is skipped with its value, so that the error can say where it
      -- belongs.
      { { "--ready", "1234", "run", "--", "true" }, "run", 3 },
    }
    for _, c in ipairs(cases) do
      it(table.concat(c[1], " "), function()
        local name, at = cli.find_command(c[1])
        assert.are.equal(c[2], name)
        assert.are.equal(c[3], at)
      end)
    end
  end)

  it("takes global options before or after the command", function()
    for _, argv in ipairs({ { "-V", "check" }, { "check", "-V" }, { "--no-color", "run", "-V" },
      { "run", "--version", "--", "true" }, { "-q", "--version" } }) do
      local code, out = main(argv)
      assert.are.equal(0, code, table.concat(argv, " "))
      assert.matches("^reload %d", out)
    end
    local code, out = main({ "--help", "run" })
    assert.are.equal(0, code)
    assert.matches("^Usage: reload run", out)
    code, out = main({ "init", "-h" })
    assert.are.equal(0, code)
    assert.matches("^Usage: reload init", out)
  end)

  it("says where a command's own option belongs, with exit status 2", function()
    local code, _, err = main({ "--ready", "1234", "run", "--", "true" })
    assert.are.equal(2, code)
    assert.matches("option '%-%-ready' is an option of 'reload run': write it after 'run'", err)
    assert.matches("Usage: reload run", err)
    code, _, err = main({ "--ready", "1234" })
    assert.are.equal(2, code)
    assert.matches("unknown option '%-%-ready' %(an option of 'reload run'", err)
    code, _, err = main({ "check", "-w", "*.c" })
    assert.are.equal(2, code)
    assert.matches("unknown option '%-w'", err)
    code, _, err = main({ "-v", "run", "--grace" })
    assert.are.equal(2, code)
    assert.matches("option '%-%-grace' needs a value", err)
    code, _, err = main({ "--no-color=yes", "run", "--", "true" })
    assert.are.equal(2, code)
    assert.matches("option '%-%-no%-color' takes no value", err)
  end)

  it("after --, every word is the command's", function()
    local code, _, err = main({ "-v", "run", "--" })
    assert.are.equal(2, code)
    assert.matches("run: missing COMMAND", err)
  end)
end)
