--- Browser live reload through the dev proxy: the script injected into pages, the stream of
--- server-sent events it listens to, and what each lifecycle event tells the browsers.
---
--- Theory of operation. A page served through the proxy carries one script tag, inserted before
--- `</head>` (or `<body`, or at the end) and stamped with the generation that answered
--- (`data-gen`). The script opens /__reload/events (server-sent events, answered by the proxy
--- itself, never the backend). The proxy says:
---
---   hello{gen, failure?}   on connect: the newest generation that became ready, and the failed
---                          build that the current sources have, if any
---   reload{gen}            a generation became ready (its port accepts connections)
---   failed{title, output}  a build (or the run function) failed: the overlay shows the output
---   building{cause}        a build started (the overlay says so, when it is shown)
---   css{paths}             only files named by the `css` globs changed: swap stylesheets
---
--- The page reloads when it hears of a generation newer than its own: once per change (the new
--- page carries the new number, so its hello asks nothing), and never before the new generation
--- answers (reload{} is sent on `generation_ready`; a request that comes earlier is held by the
--- proxy anyway). A page that missed the event while it loaded catches up at hello.
local M = {}
M.__index = M

M.prefix = "/__reload/"
M.ping_ms = 15000

--- The browser side. Plain ES5 in an IIFE, no globals but a guard; its overlay lives in a
--- shadow root so that the page's styles neither hide nor restyle it.
M.client_js = [==[
(function () {
  if (window.__reloadClient) return;
  window.__reloadClient = true;
  var me = document.currentScript;
  var gen = Number((me && me.getAttribute('data-gen')) || 0);
  var service = (me && me.getAttribute('data-service')) || '';
  var overlays = !(me && me.getAttribute('data-overlay') === 'off');
  var reloading = false, host = null, es = null;
  function reload() {
    if (reloading) return;
    reloading = true;
    if (es) es.close();
    location.reload();
  }
  function stripAnsi(s) { return String(s || '').replace(/\x1b\[[0-9;?]*[ -\/]*[@-~]/g, ''); }
  function overlay(d) {
    if (!overlays) return;
    if (!document.body) {
      document.addEventListener('DOMContentLoaded', function () { overlay(d); });
      return;
    }
    if (!host) {
      host = document.createElement('reload-overlay');
      host.setAttribute('style', 'position:fixed;inset:0;z-index:2147483647;display:block');
      var root = host.attachShadow({ mode: 'open' });
      root.innerHTML = '<style>' +
        '.b{position:fixed;inset:0;background:rgba(20,20,24,.86);color:#eee;' +
        'font:14px/1.45 ui-monospace,DejaVu Sans Mono,monospace;overflow:auto;padding:32px}' +
        '.t{color:#ff6b6b;font-weight:bold;font-size:16px;margin:0 0 4px}' +
        '.s{color:#aaa;margin:0 0 16px}' +
        'pre{white-space:pre-wrap;background:#000;padding:16px;' +
        'border-left:4px solid #ff6b6b;margin:0}' +
        'button{position:fixed;top:12px;right:16px;background:none;border:0;color:#aaa;' +
        'font-size:22px;cursor:pointer}' +
        '</style><div class="b" role="alertdialog"><button title="hide">\u00d7</button>' +
        '<p class="t"></p><p class="s"></p><pre></pre></div>';
      root.querySelector('button').onclick = function () { host.remove(); host = null; };
      document.body.appendChild(host);
    }
    var r = host.shadowRoot;
    if (d.title) r.querySelector('.t').textContent = d.title;
    r.querySelector('.s').textContent = d.status || 'the page shows the last version that built; ' +
      'it reloads once a fixed build is up';
    if (d.output !== undefined) {
      r.querySelector('pre').textContent = stripAnsi(d.output) || '(no output)';
    }
  }
  function hide() { if (host) { host.remove(); host = null; } }
  function swapCss(paths) {
    var names = paths.map(function (p) { return p.split('/').pop(); });
    var links = [].slice.call(document.querySelectorAll('link[rel~="stylesheet"][href]'));
    var hit = links.filter(function (l) {
      var n = new URL(l.href, location.href).pathname.split('/').pop();
      return names.indexOf(n) >= 0;
    });
    (hit.length ? hit : links).forEach(function (l) {
      var u = new URL(l.href, location.href);
      u.searchParams.set('reload', String(Date.now()));
      var n = l.cloneNode(false);
      n.href = u.href;
      n.onload = n.onerror = function () { l.remove(); };
      l.parentNode.insertBefore(n, l.nextSibling);
    });
  }
  function on(name, fn) {
    es.addEventListener(name, function (e) { fn(JSON.parse(e.data)); });
  }
  function connect() {
    var q = service ? '?service=' + encodeURIComponent(service) : '';
    es = new EventSource('/__reload/events' + q);
    on('hello', function (d) {
      if (d.gen > gen) return reload();
      if (d.failure) overlay(d.failure); else hide();
    });
    on('reload', function (d) { if (d.gen > gen) reload(); });
    on('failed', overlay);
    on('building', function (d) {
      if (host) overlay({ status: 'rebuilding: ' + d.cause + '\u2026' });
    });
    on('css', function (d) { swapCss(d.paths); });
  }
  connect();
})();
]==]

--- A JSON text for plain data (strings, numbers, booleans, arrays, string-keyed tables).
local function json(v)
  local t = type(v)
  if t == "string" then
    return '"' .. v:gsub('[%c"\\\128-\255]', function(c)
      local b = c:byte()
      if c == '"' or c == "\\" then
        return "\\" .. c
      elseif b >= 128 then
        return c -- UTF-8 passes as is
      end
      return ("\\u%04x"):format(b)
    end) .. '"'
  elseif t == "number" then
    return math.type(v) == "integer" and tostring(v) or ("%.17g"):format(v)
  elseif t == "boolean" then
    return tostring(v)
  elseif t == "table" then
    if #v > 0 or next(v) == nil then
      local parts = {}
      for i = 1, #v do
        parts[i] = json(v[i])
      end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do
      keys[#keys + 1] = k
    end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do
      parts[#parts + 1] = json(tostring(k)) .. ":" .. json(v[k])
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return "null"
end
M.json = json

---@class reload.LiveReload
---@field service string
---@field clients table<table, boolean> open event streams: { write = fn(data), close = fn() }
---@field gen integer the newest generation that became ready (0: none yet)
---@field failure table|nil { title, output } while the current sources do not build

---@param opts { service: string, clock: table }
---@return reload.LiveReload
function M.new(opts)
  return setmetatable({
    service = opts.service,
    clock = opts.clock,
    clients = {},
    gen = 0,
    failure = nil,
  }, M)
end

--- The tag inserted into a page that generation `gen` served (gen 0: the proxy's own error
--- page, which shows the failure itself and wants no overlay on top).
---@param gen integer
---@return string
function M:tag(gen)
  return ('<script src="%sclient.js" data-gen="%d" data-service="%s"%s defer></script>')
    :format(M.prefix, gen, (self.service:gsub('[&"<>]', "")),
      gen == 0 and ' data-overlay="off"' or "")
end

-- Injection -----------------------------------------------------------------------------------

local Injector = {}
Injector.__index = Injector

--- A filter over an HTML body that inserts `tag` exactly once: before the first `</head>` or
--- `<body` (any case), or at the end. Bytes before the insertion point are passed on as they
--- come (a streamed page keeps streaming); only the few that could start a marker wait.
---@param tag string
function M.injector(tag)
  return setmetatable({ tag = tag, tail = "", done = false }, Injector)
end

local KEEP = #"</head>" - 1

---@param data string
---@return string the bytes to send now
function Injector:push(data)
  if self.done then
    return data
  end
  local buf = self.tail .. data
  local lower = buf:lower()
  local a = lower:find("</head>", 1, true)
  local b = lower:find("<body", 1, true)
  local at = a and b and math.min(a, b) or a or b
  if at then
    self.done = true
    self.tail = ""
    return buf:sub(1, at - 1) .. self.tag .. buf:sub(at)
  end
  if #buf <= KEEP then
    self.tail = buf
    return ""
  end
  self.tail = buf:sub(-KEEP)
  return buf:sub(1, #buf - KEEP)
end

--- The end of the body: what is left, with the tag if no marker came.
---@return string
function Injector:finish()
  if self.done then
    return ""
  end
  self.done = true
  local rest = self.tail
  self.tail = ""
  return rest .. self.tag
end

-- Event stream --------------------------------------------------------------------------------

local function event_text(name, data)
  return ("event: %s\ndata: %s\n\n"):format(name, json(data))
end

--- Sends an event to every open page.
---@param name string
---@param data table
function M:broadcast(name, data)
  local text = event_text(name, data)
  for c in pairs(self.clients) do
    c.write(text)
  end
end

--- A new event stream (the proxy wrote the response head): says hello, and pings now and then
--- so that a page that went away is noticed.
---@param client { write: fun(data: string), close: fun() }
function M:add(client)
  self.clients[client] = true
  client.write("retry: 500\n\n" .. event_text("hello", { gen = self.gen, failure = self.failure }))
  if not self.pinger then
    self:arm_ping()
  end
end

function M:remove(client)
  self.clients[client] = nil
end

function M:arm_ping()
  self.pinger = self.clock.after(M.ping_ms, function()
    self.pinger = nil
    if next(self.clients) then
      for c in pairs(self.clients) do
        c.write(": ping\n\n")
      end
      self:arm_ping()
    end
  end)
end

--- Closes every stream (quit).
function M:close()
  if self.pinger then
    self.pinger:stop()
    self.pinger = nil
  end
  for c in pairs(self.clients) do
    c.close()
  end
  self.clients = {}
end

-- What the service's events tell the pages ---------------------------------------------------

--- A lifecycle event of the proxied service (see service.lua's M:emit).
---@param ev table
function M:event(ev)
  if ev.type == "generation_ready" then
    self.gen = math.max(self.gen, ev.generation)
    self.failure = nil
    self:broadcast("reload", { gen = ev.generation })
  elseif ev.type == "build" then
    self:broadcast("building", { cause = ev.cause or "a change" })
  elseif ev.type == "build_failed" then
    local step = ev.step or "build"
    if #step > 60 then
      step = step:sub(1, 57) .. "..."
    end
    self.failure = {
      title = ("%s: build failed (%s%s)"):format(self.service, step,
        ev.status and (", exit status " .. tostring(ev.status)) or ""),
      output = ev.output or "",
    }
    self:broadcast("failed", self.failure)
  elseif ev.type == "command_failed" then
    self.failure = { title = ("%s: cannot start"):format(self.service), output = ev.output or "" }
    self:broadcast("failed", self.failure)
  elseif ev.type == "build_ok" then
    -- The overlay stays until the new generation is up: the reload then replaces the page.
    self.failure = nil
  end
end

--- Stylesheets changed and nothing else: the pages swap them, no reload.
---@param paths string[]
function M:css(paths)
  self:broadcast("css", { paths = paths })
end

return M
