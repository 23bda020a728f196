-- Live reload in a real browser: headless Chromium (Debian's `chromium`, over the DevTools
-- protocol) opens a page through the dev proxy while the server behind it is edited, broken and
-- fixed. Counts every page load and checks what each one shows. With RELOAD_SCREENSHOTS=DIR the
-- screenshots of each state are written there (docs/images/ holds the committed ones).
local helpers = require("spec.helpers")
local cdp = require("spec.support.cdp")

local server_js = helpers.spec_fixtures .. "/httpserve.js"

local function page_state(browser, session)
  return browser:eval(session, [[JSON.stringify({
    msg: (document.getElementById('msg') || {}).textContent || null,
    title: document.title,
    overlay: (function () {
      var o = document.querySelector('reload-overlay');
      return o ? o.shadowRoot.textContent : null;
    })(),
    client: !!window.__reloadClient,
    color: document.getElementById('msg') ?
      getComputedStyle(document.getElementById('msg')).color : null
  })]])
end

describe("live reload in a browser", function()
  it("reloads once per edit, only once the new server answers; overlays a failed build", function()
    if not cdp.available() then
      pending("no /usr/bin/chromium: scripts/setup installs Debian's chromium")
      return
    end
    helpers.budget(240)
    local json = require("dkjson")
    local shots = os.getenv("RELOAD_SCREENSHOTS")
    local p = { listen = helpers.free_port(), to = helpers.free_port() }
    local marker = helpers.unique("RELOAD_BR")
    local dir = helpers.project({
      ["msg.txt"] = "broken",
      ["style.css"] = "body{font:18px sans-serif;margin:40px} h1{color:rgb(0, 90, 160)}",
      ["Reloadfile.lua"] = ([[
service "web" {
  watch = { "msg.txt" },
  build = { "sh", "-c", "if grep -q broken msg.txt; then printf 'msg.txt:1:1: error: " ..
    "this message is broken\n  broken\n  ^~~~~~\n' >&2; exit 1; fi" },
  run = { "sh", "-c", "exec node %s %d \"$(cat msg.txt)\"" },
  proxy = { listen = %d, to = %d, css = "*.css" },
}
]]):format(server_js, p.to, p.listen, p.to),
    })
    local proc = helpers.start_reload({ "-v" }, { cwd = dir,
      env = helpers.env_with({ RELOAD_BR = marker, NO_COLOR = "1" }) })
    proc:wait_output("proxy on http", 10000, true)
    local browser = cdp.start({ tmpdir = dir, width = 900, height = 560 })
    local ok, err = pcall(function()
      local s = browser:open_page()
      local loads, documents, failed_loads, unreachable = 0, {}, {}, {}
      browser:on(function(msg)
        if msg.sessionId ~= s then
          return
        end
        if msg.method == "Page.loadEventFired" then
          loads = loads + 1
        elseif msg.method == "Network.responseReceived" and msg.params.type == "Document" then
          documents[#documents + 1] = msg.params.response.status
        elseif msg.method == "Network.loadingFailed" and msg.params.type == "Document" then
          failed_loads[#failed_loads + 1] = msg.params.errorText
        elseif msg.method == "Page.frameNavigated" and msg.params.frame.unreachableUrl then
          unreachable[#unreachable + 1] = msg.params.frame.unreachableUrl
        end
      end)
      local function state()
        return json.decode(page_state(browser, s) or "null") or {}
      end
      local function shot(name)
        if shots then
          browser:screenshot(s, shots .. "/" .. name)
        end
      end
      local function wait_loads(n, what)
        helpers.wait_until(20000, function() return loads >= n end, function()
          return ("%s: %d page loads (want %d); reload said:\n%s"):format(what, loads, n,
            proc:text())
        end)
        helpers.wait_until(5000, function() return state().client end, "the page's script")
      end

      -- 1. The first build fails: the proxy's 503 page names it, and waits for the fix.
      browser:call("Page.navigate", { url = ("http://127.0.0.1:%d/"):format(p.listen) }, s)
      wait_loads(1, "the 503 page")
      assert.matches("build failed", state().title)
      assert.are.same({ 503 }, documents)
      shot("proxy-503.png")
      helpers.write_file(dir .. "/msg.txt", "Hello from generation 1")
      wait_loads(2, "the fixed build")
      assert.are.equal("Hello from generation 1", state().msg)
      shot("proxy-page.png")

      -- 2. Ten edits: exactly ten reloads, each showing the new text, never an error page.
      for i = 1, 10 do
        local text = ("Edit number %d"):format(i)
        helpers.write_file(dir .. "/msg.txt", text)
        wait_loads(2 + i, "edit " .. i)
        assert.are.equal(text, state().msg)
      end
      helpers.pump(500)
      assert.are.equal(12, loads, "one load per edit")
      local statuses = {}
      for i = 2, #documents do
        statuses[#statuses + 1] = documents[i]
      end
      assert.are.same({ 200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 200 }, statuses)
      assert.are.same({}, failed_loads)
      assert.are.same({}, unreachable)

      -- 3. A broken edit: the page stays, an overlay shows the build output; no reload.
      helpers.write_file(dir .. "/msg.txt", "broken again")
      helpers.wait_until(20000, function() return state().overlay ~= nil end,
        function() return "the overlay; reload said:\n" .. proc:text() end)
      local st = state()
      assert.matches("build failed", st.overlay)
      assert.matches("this message is broken", st.overlay)
      assert.are.equal("Edit number 10", st.msg)
      assert.are.equal(12, loads)
      shot("proxy-overlay.png")

      -- 4. The fix: one reload, the overlay is gone.
      helpers.write_file(dir .. "/msg.txt", "Fixed")
      wait_loads(13, "the fix")
      st = state()
      assert.are.equal("Fixed", st.msg)
      assert.is_nil(st.overlay)

      -- 5. A stylesheet edit: swapped in place, no reload.
      assert.are.equal("rgb(0, 90, 160)", st.color)
      helpers.write_file(dir .. "/style.css",
        "body{font:18px sans-serif;margin:40px} h1{color:rgb(200, 30, 30)}")
      helpers.wait_until(10000, function() return state().color == "rgb(200, 30, 30)" end,
        function() return "the new colour; page: " .. json.encode(state()) end)
      helpers.pump(300)
      assert.are.equal(13, loads)
      shot("proxy-css.png")
      assert.are.same({}, unreachable)
    end)
    browser:close()
    proc:signal("sigint")
    local code = proc:wait(20000)
    helpers.wait_until(10000, function() return #helpers.tagged(marker) == 0 end,
      function() return "the browser's and the server's processes to end: " ..
        helpers.describe(helpers.tagged(marker)) end)
    if not ok then
      error(tostring(err) .. "\nbrowser said:\n" .. browser:text(), 0)
    end
    assert.are.equal(0, code, proc:text())
  end)
end)
