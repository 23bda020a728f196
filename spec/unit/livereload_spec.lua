-- The pure parts of the dev proxy: where the script goes into a page however the page is
-- split, the JSON of its events, and the `proxy` key's validation.
local livereload = require("reload.livereload")
local proxy = require("reload.proxy")

local TAG = "<script x></script>"

local function inject(page, size)
  local inj = livereload.injector(TAG)
  local out = {}
  for i = 1, #page, size do
    out[#out + 1] = inj:push(page:sub(i, i + size - 1))
  end
  out[#out + 1] = inj:finish()
  return table.concat(out)
end

describe("livereload", function()
  it("inserts the tag once, before </head> or <body (any case), else at the end", function()
    local cases = {
      { "<html><head><title>t</title></head><body>x</body></html>",
        "<html><head><title>t</title>" .. TAG .. "</head><body>x</body></html>" },
      { "<!doctype html><BODY>x</BODY>", "<!doctype html>" .. TAG .. "<BODY>x</BODY>" },
      { "<p>fragment", "<p>fragment" .. TAG },
      { "", TAG },
    }
    for _, c in ipairs(cases) do
      for size = 1, 9 do
        assert.are.equal(c[2], inject(c[1], size), ("%q in pieces of %d"):format(c[1], size))
      end
    end
  end)

  it("passes bytes before the insertion point on as they come", function()
    local inj = livereload.injector(TAG)
    local out = inj:push(("x"):rep(100))
    assert.are.equal(100 - (#"</head>" - 1), #out)
  end)

  it("writes the events' JSON", function()
    assert.are.equal('{"gen":3}', livereload.json({ gen = 3 }))
    assert.are.equal('{"output":"a\\u000a\\"b\\"","title":"t"}',
      livereload.json({ title = "t", output = 'a\n"b"' }))
    assert.are.equal('{"paths":["a.css","b/c.css"]}',
      livereload.json({ paths = { "a.css", "b/c.css" } }))
  end)
end)

describe("the proxy key", function()
  local function bad(v, msg)
    local ok, err = pcall(proxy.validate, "proxy", v)
    assert.is_false(ok)
    assert.matches(msg, err.dsl, 1, true)
  end

  it("takes ports or IPv4:port, and defaults the rest", function()
    local p = proxy.validate("proxy", { listen = 8080, to = "localhost:8081" })
    assert.are.same({ host = "127.0.0.1", port = 8080 }, p.listen)
    assert.are.same({ host = "127.0.0.1", port = 8081 }, p.to)
    assert.are.same({ {}, 30, 1000, true }, { p.css, p.hold, p.queue, p.live })
    p = proxy.validate("proxy", { listen = "0.0.0.0:80", to = 81, css = "*.css", hold = 2,
      live = false })
    assert.are.same({ "*.css" }, p.css)
    assert.are.equal("0.0.0.0", p.listen.host)
    assert.are.same({ port = 81, timeout = 30 }, proxy.implied_ready(p))
  end)

  it("says what is wrong", function()
    bad(8080, "must be a table")
    bad({ listen = 8080 }, "needs listen")
    bad({ listen = 8080, to = 8080 }, "the same address")
    bad({ listen = 70000, to = 1 }, "'proxy.listen' must be a port number")
    bad({ listen = "example.com:80", to = 1 }, "'proxy.listen' must be a port or")
    bad({ listen = 1, to = 2, colour = true }, "unknown key 'colour'")
    bad({ listen = 1, to = 2, css = { 3 } }, "'proxy.css'[1] must be a string")
    bad({ listen = 1, to = 2, hold = -1 }, "'proxy.hold' must be")
  end)
end)
