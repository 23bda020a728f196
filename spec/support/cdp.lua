--- Headless Chromium driven over the DevTools protocol, for the browser spec: Debian's
--- `chromium` started with --remote-debugging-pipe (commands in on fd 3, answers and events out
--- on fd 4, each a JSON text ending in a NUL byte), so no WebSocket client and no npm package is
--- needed. It runs under the deathsig guard (it dies with the test runner) and is ended by
--- close(), which waits until its whole process tree is gone.
local uv = require("luv")
local json = require("dkjson")
local helpers = require("spec.helpers")

local M = {}
M.__index = M

M.binary = "/usr/bin/chromium"

--- Is a browser there to drive?
function M.available()
  return uv.fs_access(M.binary, "X") == true
end

--- Starts the browser (headless, a fresh profile under tmpdir, window w x h).
---@param opts { tmpdir: string, width?: integer, height?: integer }
function M.start(opts)
  local self = setmetatable({ next_id = 0, waiting = {}, events = {}, buf = "", output = {},
    listeners = {} }, M)
  local to_browser, from_browser = uv.new_pipe(false), uv.new_pipe(false)
  local out, err = uv.new_pipe(false), uv.new_pipe(false)
  local args = { tostring(helpers.pid), M.binary,
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
    "--disable-dev-shm-usage", "--no-default-browser-check", "--hide-scrollbars",
    "--user-data-dir=" .. opts.tmpdir .. "/chromium-profile",
    ("--window-size=%d,%d"):format(opts.width or 1000, opts.height or 640),
    "--remote-debugging-pipe", "about:blank" }
  local handle, pid
  handle, pid = uv.spawn(helpers.fixture("deathsig"), {
    args = args,
    stdio = { nil, out, err, to_browser, from_browser },
    -- Not under the sanitizers' preloaded runtime (scripts/test --sanitize): the browser is
    -- not what is tested, and its own allocator does not mix with it.
    env = helpers.env_with({ LD_PRELOAD = false, ASAN_OPTIONS = false, UBSAN_OPTIONS = false }),
  }, function(code, sig)
    self.exit = sig ~= 0 and 128 + sig or code
    handle:close()
  end)
  assert(handle, pid)
  self.pid = pid
  self.pipes = { to_browser, from_browser, out, err }
  self.to_browser = to_browser
  for _, p in ipairs({ out, err }) do
    p:read_start(function(_, chunk)
      if chunk and #self.output < 200 then
        self.output[#self.output + 1] = chunk
      end
    end)
  end
  from_browser:read_start(function(_, chunk)
    if not chunk then
      return
    end
    self.buf = self.buf .. chunk
    while true do
      local at = self.buf:find("\0", 1, true)
      if not at then
        break
      end
      local text = self.buf:sub(1, at - 1)
      self.buf = self.buf:sub(at + 1)
      local msg = json.decode(text)
      if msg and msg.id then
        self.waiting[msg.id] = msg
      elseif msg and msg.method then
        self.events[#self.events + 1] = msg
        for _, fn in ipairs(self.listeners) do
          fn(msg)
        end
      end
    end
  end)
  return self
end

--- What the browser printed (for failure messages).
function M:text()
  return table.concat(self.output)
end

--- Sends a command and waits for its answer; returns result or raises with the error.
---@param method string
---@param params? table
---@param session? string
---@param max_ms? number
function M:call(method, params, session, max_ms)
  self.next_id = self.next_id + 1
  local id = self.next_id
  local msg = { id = id, method = method, params = params or json.null, sessionId = session }
  self.to_browser:write(json.encode(msg) .. "\0")
  helpers.wait_until(max_ms or 20000, function() return self.waiting[id] ~= nil end,
    function() return ("an answer to %s; browser said:\n%s"):format(method, self:text()) end)
  local answer = self.waiting[id]
  self.waiting[id] = nil
  if answer.error then
    error(("%s: %s"):format(method, json.encode(answer.error)), 2)
  end
  return answer.result
end

--- Calls fn(msg) for every event from now on.
function M:on(fn)
  self.listeners[#self.listeners + 1] = fn
end

--- Opens a page (a new target, attached with a flat session) with Page, Runtime and Network
--- events on; returns its session id.
function M:open_page()
  local target = self:call("Target.createTarget", { url = "about:blank" })
  local attached = self:call("Target.attachToTarget", { targetId = target.targetId,
    flatten = true })
  local s = attached.sessionId
  self:call("Page.enable", nil, s)
  self:call("Runtime.enable", nil, s)
  self:call("Network.enable", nil, s)
  return s
end

--- Evaluates a JavaScript expression in the page; returns its value.
function M:eval(session, expression)
  local r = self:call("Runtime.evaluate", { expression = expression, returnByValue = true },
    session)
  if r.exceptionDetails then
    return nil, json.encode(r.exceptionDetails)
  end
  return r.result.value
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64_decode(s)
  local map = {}
  for i = 1, #B64 do
    map[B64:sub(i, i)] = i - 1
  end
  s = s:gsub("[^%w%+/]", "")
  local out = {}
  for i = 1, #s, 4 do
    local a, b, c, d = map[s:sub(i, i)], map[s:sub(i + 1, i + 1)], map[s:sub(i + 2, i + 2)],
      map[s:sub(i + 3, i + 3)]
    local n = (a << 18) | ((b or 0) << 12) | ((c or 0) << 6) | (d or 0)
    out[#out + 1] = string.char((n >> 16) & 255)
    if c then
      out[#out + 1] = string.char((n >> 8) & 255)
    end
    if d then
      out[#out + 1] = string.char(n & 255)
    end
  end
  return table.concat(out)
end

--- Writes a PNG of what the page shows.
function M:screenshot(session, path)
  local r = self:call("Page.captureScreenshot", { format = "png" }, session)
  local f = assert(io.open(path, "wb"))
  f:write(base64_decode(r.data))
  f:close()
end

--- Ends the browser and waits until every process of it is gone.
function M:close()
  if not self.exit then
    pcall(function()
      self.next_id = self.next_id + 1
      self.to_browser:write(json.encode({ id = self.next_id, method = "Browser.close" }) .. "\0")
    end)
    if not helpers.pump(10000, function() return self.exit ~= nil end) then
      pcall(uv.kill, self.pid, "sigkill")
      helpers.pump(5000, function() return self.exit ~= nil end)
    end
  end
  for _, p in ipairs(self.pipes) do
    if not p:is_closing() then
      p:close()
    end
  end
  helpers.pump(50)
end

return M
