-- The dev proxy through the real binary: a Node server (spec/fixtures/httpserve.js) behind
-- `proxy = { listen =, to = }`, real loopback ports, edits that restart it.
local helpers = require("spec.helpers")
local httpc = require("spec.support.httpc")

local server_js = helpers.spec_fixtures .. "/httpserve.js"

local function reloadfile(ports, extra)
  return ([[
service "web" {
  watch = { "msg.txt", "Reloadfile.lua" },
  run = { "sh", "-c", "exec node %s %d \"$(cat msg.txt)\"" },
  proxy = { listen = %d, to = %d%s },
%s}
]]):format(server_js, ports.to, ports.listen, ports.to, extra and extra.proxy or "",
    extra and extra.service or "")
end

local function start(files, args)
  local marker = helpers.unique("RELOAD_PX")
  local dir = helpers.project(files)
  local proc = helpers.start_reload(args or { "-v" }, { cwd = dir,
    env = helpers.env_with({ RELOAD_PX = marker, NO_COLOR = "1" }) })
  -- Connections are refused only until reload itself has started.
  proc:wait_output("proxy on http", 10000, true)
  return dir, proc, "RELOAD_PX=" .. marker
end

local stop = helpers.end_session

local function ports()
  return { listen = helpers.free_port(), to = helpers.free_port() }
end

--- One request on a new connection; returns the response (or fails saying what happened).
local function request(port, raw, opts)
  local res, err, conn
  conn = httpc.connect(port, function(c, cerr)
    if not c then
      err = cerr
      return
    end
    c:request(raw, function(r, rerr)
      res, err = r, rerr
    end, opts)
  end)
  helpers.wait_until(15000, function() return res ~= nil or err ~= nil end,
    "an answer to " .. raw:match("^[^\r]*"))
  conn:close()
  assert(res, "request failed: " .. tostring(err))
  return res
end

local function edit(dir, name, content)
  helpers.write_file(dir .. "/" .. name, content)
end

local function page_request(path)
  return httpc.get(path or "/", { "Accept: text/html,application/xhtml+xml",
    "Sec-Fetch-Dest: document", "Accept-Encoding: gzip, deflate" })
end

describe("the dev proxy", function()
  it("holds requests while the server restarts: no refused connection, no failed request",
    function()
      local p = ports()
      local dir, proc, marker = start({ ["msg.txt"] = "v0", ["Reloadfile.lua"] = reloadfile(p) })
      -- The first request comes before the server listens: it waits for it.
      local first = request(p.listen, httpc.get("/text"))
      assert.are.equal(200, first.status)
      assert.are.equal("v0", first.body)
      local load = httpc.load(p.listen, { connections = 8, path = "/text",
        check = function(res) return res.body:match("^v%d+$") ~= nil end })
      for i = 1, 5 do
        helpers.retry(15000, function()
          return load.ok > i * 50, ("%d answers so far"):format(load.ok)
        end)
        edit(dir, "msg.txt", "v" .. i)
        helpers.retry(15000, function()
          local res = request(p.listen, httpc.get("/text"))
          return res.body == "v" .. i, "answered " .. res.body
        end)
      end
      load.stop()
      helpers.pump(200)
      assert.are.same({ 0, 0, 0 }, { load.refused, load.failed, load.bad },
        table.concat(load.errors, "\n"))
      assert.is_true(load.ok > 250)
      helpers.retry(5000, function()
        local _, n = proc:text():gsub("restarted in", "")
        return n == 5, proc:text()
      end)
      stop(proc, marker)
    end)

  it("passes keep-alive, chunked and streamed bodies and WebSocket upgrades through untouched",
    function()
      local p = ports()
      local _, proc, marker = start({ ["msg.txt"] = "hi", ["Reloadfile.lua"] = reloadfile(p) })
      request(p.listen, httpc.get("/text")) -- up
      -- One kept-alive connection, several requests: the same bytes as straight from the server
      -- (but the Date header).
      local function strip(raw)
        return (raw:gsub("Date: [^\r]*\r\n", ""))
      end
      local direct, proxied = {}, {}
      for _, target in ipairs({ { p.to, direct }, { p.listen, proxied } }) do
        local conn, done = nil, false
        local reqs = {
          httpc.get("/text"),
          httpc.get("/chunked"),
          "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" ..
            "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
          "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody",
          httpc.get("/stream"),
          "HEAD /text HTTP/1.1\r\nHost: x\r\n\r\n",
        }
        local i = 0
        local function next_one()
          i = i + 1
          if i > #reqs then
            done = true
            return
          end
          conn:request(reqs[i], function(res, err)
            assert(res, err)
            target[2][i] = strip(res.raw)
            next_one()
          end, { head = reqs[i]:sub(1, 4) == "HEAD" })
        end
        conn = httpc.connect(target[1], function(c, err)
          assert(c, err)
          next_one()
        end)
        helpers.wait_until(10000, function() return done end, "six answers on one connection")
        conn:close()
      end
      assert.are.same(direct, proxied)
      assert.matches("\r\n\r\nhello world$", proxied[3])
      assert.matches("tick 5", proxied[5])
      -- WebSocket: the 101 answer, then bytes both ways.
      local got, tcp = "", require("luv").new_tcp()
      tcp:connect("127.0.0.1", p.listen, function(err)
        assert(not err, err)
        tcp:read_start(function(_, chunk)
          if chunk then got = got .. chunk end
        end)
        tcp:write("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
          "Sec-WebSocket-Version: 13\r\n\r\nearly")
      end)
      helpers.wait_until(5000, function() return got:find("early", 1, true) ~= nil end,
        function() return "the upgrade and the echo; got " .. got end)
      tcp:write("\0\1\2 binary \255")
      helpers.wait_until(5000, function() return got:find("\0\1\2 binary \255", 1, true) ~= nil end,
        function() return "binary bytes back; got " .. got end)
      assert.matches("^HTTP/1.1 101 Switching Protocols\r\n", got)
      tcp:close()
      stop(proc, marker)
    end)

  it("injects the live reload script into pages only, with correct lengths", function()
    local p = ports()
    local _, proc, marker = start({ ["msg.txt"] = "page", ["Reloadfile.lua"] = reloadfile(p) })
    local tag = '<script src="/__reload/client.js" data%-gen="1" data%-service="web" defer>' ..
      '</script>'
    local res = request(p.listen, page_request("/"))
    assert.matches(tag .. "</head>", res.body)
    assert.are.equal(#res.body, tonumber(res.headers["content-length"]))
    local plain = request(p.to, page_request("/"))
    assert.are.equal(#plain.body + #tag:gsub("%%", ""), #res.body)
    -- Chunked: re-framed chunks that a parser accepts, the tag before the first </HEAD>.
    res = request(p.listen, page_request("/chunked"))
    assert.is_true(res.chunked)
    assert.matches("<title>c</title>" .. tag .. "</HEAD><body>page", res.body)
    -- Not a page a browser navigates to, or not HTML: untouched.
    res = request(p.listen, httpc.get("/"))
    assert.is_nil(res.body:find("__reload", 1, true))
    res = request(p.listen, httpc.get("/text", { "Sec-Fetch-Dest: document" }))
    assert.are.equal("page", res.body)
    -- A page compressed although identity was asked: untouched, and said once.
    res = request(p.listen, page_request("/gzip"))
    assert.are.equal("gzip", res.headers["content-encoding"])
    assert.are.equal(#res.body, tonumber(res.headers["content-length"]))
    proc:wait_output("served without the live reload script", 5000, true)
    -- The script itself comes from the proxy.
    res = request(p.listen, httpc.get("/__reload/client.js"))
    assert.are.equal(200, res.status)
    assert.matches("EventSource", res.body)
    stop(proc, marker)
  end)

  it("tells pages to reload once per change, once the new generation answers", function()
    local p = ports()
    local dir, proc, marker = start({ ["msg.txt"] = "g1", ["Reloadfile.lua"] = reloadfile(p) })
    request(p.listen, httpc.get("/text"))
    local sse = httpc.events(p.listen)
    helpers.wait_until(5000, function() return #sse.named("hello") == 1 end, "hello")
    assert.are.equal('{"gen":1}', sse.named("hello")[1].data)
    for i = 2, 4 do
      local seen = #sse.named("reload")
      edit(dir, "msg.txt", "g" .. i)
      helpers.wait_until(15000, function() return #sse.named("reload") > seen end,
        function() return "a reload event; reload said:\n" .. proc:text() end)
      -- The moment a page hears it, the new generation answers.
      local res = request(p.listen, httpc.get("/text"))
      assert.are.equal("g" .. i, res.body)
    end
    local reloads = sse.named("reload")
    assert.are.same({ '{"gen":2}', '{"gen":3}', '{"gen":4}' },
      { reloads[1].data, reloads[2].data, reloads[3].data })
    helpers.pump(300)
    assert.are.equal(3, #sse.named("reload"), "no event but one per change")
    sse.close()
    stop(proc, marker)
  end)

  it("answers a 503 page naming the failed build, shows it to pages, and serves the fix",
    function()
      local p = ports()
      local service = [[
  build = { "sh", "-c", "if grep -q bad msg.txt; then echo 'msg.txt:1: syntax error near bad' >&2; exit 2; fi" },
]]
      local dir, proc, marker = start({ ["msg.txt"] = "bad", ["Reloadfile.lua"] =
        reloadfile(p, { service = service }) })
      -- Nothing runs: a page says why, with the build output.
      local res = helpers.retry(10000, function()
        local r = request(p.listen, page_request("/"))
        return r.status == 503 and r, "status " .. r.status
      end)
      assert.matches("build failed", res.body)
      assert.matches("msg.txt:1: syntax error near bad", res.body, 1, true)
      assert.matches('data%-gen="0" data%-service="web" data%-overlay="off"', res.body)
      assert.are.equal("1", res.headers["retry-after"])
      res = request(p.listen, httpc.get("/text"))
      assert.are.equal(503, res.status)
      assert.matches("^web: the build failed", res.body)
      -- The fix: served again, and a page that waited is told to reload.
      local sse = httpc.events(p.listen)
      helpers.wait_until(5000, function() return #sse.named("hello") == 1 end, "hello")
      assert.matches('"failure":{"output":"msg.txt:1: syntax error', sse.named("hello")[1].data,
        1, true)
      edit(dir, "msg.txt", "good")
      helpers.wait_until(15000, function() return #sse.named("reload") == 1 end,
        function() return "a reload event; reload said:\n" .. proc:text() end)
      assert.are.equal("good", request(p.listen, httpc.get("/text")).body)
      -- A broken edit while it runs: the old generation keeps answering; pages get the output.
      edit(dir, "msg.txt", "bad again")
      helpers.wait_until(15000, function() return #sse.named("failed") == 1 end, "failed")
      assert.matches("syntax error near bad", sse.named("failed")[1].data, 1, true)
      assert.are.equal("good", request(p.listen, httpc.get("/text")).body)
      sse.close()
      stop(proc, marker)
    end)

  it("gives up holding after `hold` seconds with a 503 that says so", function()
    local p = ports()
    local dir, proc, marker = start({ ["msg.txt"] = "x", ["Reloadfile.lua"] = ([[
service "web" {
  run = { "sleep", "1000" },
  ready = { port = %d, timeout = 60 },
  proxy = { listen = %d, to = %d, hold = 0.3 },
}
]]):format(p.to, p.listen, p.to) })
    local t0 = helpers.now_ms()
    local res = request(p.listen, httpc.get("/"))
    assert.are.equal(503, res.status)
    assert.matches("not ready within 0.30 s", res.body)
    assert.is_true(helpers.now_ms() - t0 >= 300)
    assert.truthy(dir)
    stop(proc, marker)
  end)

  it("swaps stylesheets for a change to the css globs, without a restart", function()
    local p = ports()
    local dir, proc, marker = start({ ["msg.txt"] = "css", ["style.css"] = "h1{color:red}",
      ["Reloadfile.lua"] = reloadfile(p, { proxy = ', css = "*.css"' }) })
    request(p.listen, httpc.get("/text"))
    local sse = httpc.events(p.listen)
    helpers.wait_until(5000, function() return #sse.named("hello") == 1 end, "hello")
    edit(dir, "style.css", "h1{color:blue}")
    helpers.wait_until(5000, function() return #sse.named("css") == 1 end,
      function() return "a css event; reload said:\n" .. proc:text() end)
    assert.are.equal('{"paths":["style.css"]}', sse.named("css")[1].data)
    assert.are.equal("h1{color:blue}", request(p.listen, httpc.get("/style.css")).body)
    helpers.pump(200)
    assert.are.equal(0, #sse.named("reload"))
    assert.is_nil(proc:text():find("restarted", 1, true), proc:text())
    sse.close()
    stop(proc, marker)
  end)

  it("is offered by reload run --proxy LISTEN:TO, and checked by reload check", function()
    local p = ports()
    local dir, proc, marker = start({ ["msg.txt"] = "run" }, { "run", "--proxy",
      ("%d:%d"):format(p.listen, p.to), "-w", "msg.txt", "--", "node", server_js,
      tostring(p.to), "run" })
    assert.are.equal("run", request(p.listen, httpc.get("/text")).body)
    stop(proc, marker)
    helpers.write_file(dir .. "/Reloadfile.lua", reloadfile(p))
    local code, out = helpers.reload({ "check" }, { cwd = dir })
    assert.are.equal(0, code, out)
    assert.matches(("proxy    127.0.0.1:%d -> 127.0.0.1:%d, live reload"):format(p.listen,
      p.to), out, 1, true)
    assert.matches("ready    port " .. p.to, out, 1, true)
    helpers.write_file(dir .. "/Reloadfile.lua", [[
service "web" { run = "true", proxy = { listen = 8080 } }
]])
    local code2, _, err = helpers.reload({ "check" }, { cwd = dir })
    assert.are.equal(1, code2)
    assert.matches("Reloadfile.lua:1: service \"web\": 'proxy' needs listen", err)
  end)
end)
