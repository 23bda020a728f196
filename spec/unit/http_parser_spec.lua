-- core.http_parser: where heads, bodies and messages end, however the bytes are split.
local core = require("reload.core")

--- Feeds data in pieces of `size` bytes; returns the events with offsets made absolute and
--- body bytes resolved, so that any split must give the same list.
local function parse(kind, data, size, opts)
  local p = core.http_parser(kind)
  if opts and opts.no_body then
    p:no_body()
  end
  local out, body = {}, nil
  local pos = 0
  while pos < #data do
    local piece = data:sub(pos + 1, pos + size)
    local evs = assert(p:execute(piece))
    for _, e in ipairs(evs) do
      if e.type == "body" then
        body = (body or "") .. piece:sub(e.from, e.to)
      else
        if e.type ~= "head" and body then
          out[#out + 1] = { type = "body", data = body }
          body = nil
        end
        local copy = {}
        for k, v in pairs(e) do
          copy[k] = v
        end
        if copy.at then
          copy.at = pos + copy.at
        end
        out[#out + 1] = copy
      end
    end
    if #evs > 0 and evs[#evs].type == "upgrade" then
      break
    end
    pos = pos + #piece
  end
  if opts and opts.finish then
    for _, e in ipairs(assert(p:finish())) do
      if body then
        out[#out + 1] = { type = "body", data = body }
        body = nil
      end
      e.at = #data
      out[#out + 1] = e
    end
  end
  p:close()
  return out
end

local function same_for_every_split(kind, data, opts)
  local whole = parse(kind, data, #data, opts)
  for size = 1, 7 do
    assert.are.same(whole, parse(kind, data, size, opts), "pieces of " .. size)
  end
  return whole
end

describe("core.http_parser", function()
  it("finds the end of each head and message of a keep-alive stream", function()
    local a = "GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    local b = "POST /b?q=1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" ..
      "3\r\nxyz\r\n2\r\n12\r\n0\r\n\r\n"
    local c = "HEAD /c HTTP/1.1\r\nConnection: close\r\n\r\n"
    local evs = same_for_every_split("request", a .. b .. c)
    local heads, dones = {}, {}
    for _, e in ipairs(evs) do
      if e.type == "head" then heads[#heads + 1] = e end
      if e.type == "done" then dones[#dones + 1] = e end
    end
    assert.are.equal(3, #heads)
    assert.are.same({ "GET", "/a", 1, 1 }, { heads[1].method, heads[1].url, heads[1].major,
      heads[1].minor })
    assert.are.same({ { "Host", "x" }, { "Content-Length", "3" } }, heads[1].headers)
    assert.are.equal(3, heads[1].length)
    assert.are.equal(#a - 3, heads[1].at)
    assert.are.equal(#a, dones[1].at)
    assert.is_true(heads[2].chunked)
    assert.is_nil(heads[2].length)
    assert.are.equal(#a + #b, dones[2].at)
    assert.are.equal("HEAD", heads[3].method)
    assert.is_false(heads[3].keep_alive)
    assert.are.equal(#a + #b + #c, dones[3].at)
    assert.are.same({ type = "body", data = "abc" }, evs[2])
    assert.are.same({ type = "body", data = "xyz12" }, evs[5])
  end)

  it("stops where a connection stops speaking HTTP (an upgrade)", function()
    local head = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    local evs = same_for_every_split("request", head .. "\129\5hello")
    assert.is_true(evs[1].upgrade)
    assert.are.equal("upgrade", evs[#evs].type)
    assert.are.equal(#head, evs[#evs].at)
  end)

  it("reads responses: status, a HEAD response's missing body, a body up to the end", function()
    local evs = same_for_every_split("response",
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", { no_body = true })
    assert.are.same({ 200, "OK", true }, { evs[1].status, evs[1].reason, evs[1].no_body })
    assert.are.equal("done", evs[2].type)
    evs = same_for_every_split("response", "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<p>x",
      { finish = true })
    assert.are.same({ "head", "body", "done" }, { evs[1].type, evs[2].type, evs[3].type })
    assert.are.equal("<p>x", evs[2].data)
    evs = same_for_every_split("response", "HTTP/1.1 100 Continue\r\n\r\n" ..
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nraw")
    assert.are.same({ 100, 101 }, { evs[1].status, evs[3].status })
    assert.are.equal("upgrade", evs[#evs].type)
  end)

  it("says what is wrong with bad input, and a cut-short message at the end of the stream",
    function()
      local p = core.http_parser("request")
      local ok, err, code = p:execute("BREW / HTTP/1.1\r\n\r\n")
      assert.is_nil(ok)
      assert.are.equal("HPE_INVALID_METHOD", code)
      assert.matches("^HPE_INVALID_METHOD: ", err)
      p:reset()
      assert(p:execute("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"))
      ok, err, code = p:finish()
      assert.is_nil(ok)
      assert.are.equal("HPE_INVALID_EOF_STATE", code, err)
      p:close()
    end)

  it("is a handle: counted while open, closed once however often close is called", function()
    local before = core._stats().handles
    local p = core.http_parser("response")
    assert.are.equal(before + 1, core._stats().handles)
    assert.is_true(p:close())
    assert.is_true(p:close())
    assert.are.equal(before, core._stats().handles)
    assert.has_error(function() p:execute("x") end)
    assert.has_error(function() core.http_parser("both") end)
  end)
end)
