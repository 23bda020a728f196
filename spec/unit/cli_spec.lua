local cli = require("reload.cli")

describe("reload.cli", function()
  it("has a usage text that starts with the synopsis", function()
    assert.matches("^Usage: reload", cli.usage)
  end)

  it("returns 2 for an unknown option", function()
    local stderr = cli.stderr
    local captured = {}
    cli.stderr = { write = function(_, s) captured[#captured + 1] = s end, flush = function() end }
    local ok, code = pcall(cli.main, { "--bogus" })
    cli.stderr = stderr
    assert.is_true(ok, code)
    assert.are.equal(2, code)
    assert.matches("%-%-bogus", table.concat(captured))
  end)
end)
