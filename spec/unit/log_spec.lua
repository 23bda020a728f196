-- reload's own output: escaping of names from the file system, the progress line.
local log = require("reload.log")

describe("reload.log", function()
  local written, saved

  before_each(function()
    written = {}
    saved = { log.out, log.tty, log.level }
    log.out = { write = function(_, s) written[#written + 1] = s end, flush = function() end }
    log.level = 1
  end)

  after_each(function()
    log.out, log.tty, log.level = saved[1], saved[2], saved[3]
    log.clear_status("x")
  end)

  it("escapes control characters in names: no forged line, no terminal escape", function()
    assert.are.equal("a\\nb\\e[31mc\\x01d\\x7f", log.escape("a\nb\27[31mc\1d\127"))
    assert.are.equal("é.txt", log.escape("é.txt"))
    assert.are.equal("x\\n.go, y.go and 1 more", log.paths({ "x\n.go", "y.go", "z.go" }, 2))
  end)

  it("shows no progress line when stderr is not a terminal", function()
    log.tty = false
    log.status("x", "building 3 s")
    log.info("a line")
    assert.are.equal("reload a line\n", table.concat(written))
  end)

  it("erases the progress line before each line and draws it again after", function()
    log.tty = true
    log.status("x", "building 3 s")
    log.info("a line")
    log.clear_status("x")
    local text = table.concat(written)
    assert.matches("^\r\27%[Kbuilding 3 s\r\27%[Kreload a line\n" ..
      "\r\27%[Kbuilding 3 s\r\27%[K$", text)
  end)

  it("strips colour from a stream, a sequence cut between chunks included", function()
    local strip = log.sgr_stripper()
    assert.are.equal("red ", strip("\27[31mred\27[0m "))
    assert.are.equal("a", strip("a\27[1;3"))
    assert.are.equal("b\27[2K", strip("1mb\27[2K")) -- not a colour: kept
    assert.are.equal("c", strip("c\27"))
    assert.are.equal("d", strip("[0md"))
    assert.are.equal("e", strip("e\27["))
    assert.are.equal("\27[", strip(nil)) -- the end: an unfinished sequence is given back
  end)

  it("passes a lone service's output through as it comes, ending its last line", function()
    local out = {}
    local stream = { write = function(_, s) out[#out + 1] = s end, flush = function() end }
    local write = log.passthrough(stream)
    write("prompt> ")
    assert.are.equal("prompt> ", table.concat(out))
    write("answer\n")
    write(nil)
    assert.are.equal("prompt> answer\n", table.concat(out))
    write("partial")
    write(nil)
    assert.are.equal("prompt> answer\npartial\n", table.concat(out))
  end)
end)
