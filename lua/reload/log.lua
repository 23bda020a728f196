--- reload's own output: short lines on stderr, coloured when it is a terminal (NO_COLOR and
--- --no-color turn colour off), and the per-service prefixes used when several services share
--- the terminal.
local M = {}

local uv = require("luv")

M.level = 1 -- 0 quiet (errors only), 1 normal, 2 verbose
M.color = false
M.out = io.stderr -- reload's own lines
M.services_out = io.stdout -- prefixed service output

local CODES = {
  reset = "\27[0m", bold = "\27[1m", dim = "\27[2m", red = "\27[31m", green = "\27[32m",
  yellow = "\27[33m", blue = "\27[34m", magenta = "\27[35m", cyan = "\27[36m",
}
local PALETTE = { "cyan", "magenta", "yellow", "blue", "green" }

M.no_color = false -- NO_COLOR or --no-color: the services' colours are stripped too

--- Decides whether to colour: a terminal on stderr, no NO_COLOR, and not disabled.
---@param disabled boolean
function M.setup_color(disabled)
  local no_color = os.getenv("NO_COLOR")
  M.tty = uv.guess_handle(2) == "tty"
  M.no_color = disabled or (no_color ~= nil and no_color ~= "")
  M.color = not M.no_color and M.tty
  if M.tty then
    local tty = uv.new_tty(2, false)
    if tty then
      local w = tty:get_winsize()
      M.width = w
      tty:close()
    end
  end
end

--- Whether the services' own colours reach the output: it is a terminal, and neither NO_COLOR
--- nor --no-color asks for plain text.
---@return boolean
function M.service_colors()
  if M.no_color then
    return false
  end
  return uv.guess_handle(M.services_out == io.stderr and 2 or 1) == "tty"
end

local size -- { cols, rows } once read

--- The size a service's pty gets: reload's own terminal's (stdout, else stderr, else stdin),
--- 80x24 when it has none. Read once; `again` reads it anew (on SIGWINCH).
---@param again? boolean
---@return integer cols, integer rows
function M.term_size(again)
  if size and not again then
    return size[1], size[2]
  end
  size = { 80, 24 }
  for _, fd in ipairs({ 1, 2, 0 }) do
    if uv.guess_handle(fd) == "tty" then
      local tty = uv.new_tty(fd, false)
      if tty then
        local cols, rows = tty:get_winsize()
        tty:close()
        if cols and cols > 0 and rows and rows > 0 then
          size = { cols, rows }
          break
        end
      end
    end
  end
  if M.tty then
    M.width = size[1]
  end
  return size[1], size[2]
end

--- A filter that removes colour (SGR, `ESC [ ... m`) from a stream of chunks; a sequence cut
--- between two chunks is held until its end arrives. nil flushes what is held.
---@return fun(chunk: string|nil): string
function M.sgr_stripper()
  local held = ""
  return function(chunk)
    if chunk == nil then
      local rest = held
      held = ""
      return rest
    end
    local text = (held .. chunk):gsub("\27%[[%d;:]*m", "")
    local cut = text:find("\27%[?[%d;:]*$")
    if cut then
      held = text:sub(cut)
      text = text:sub(1, cut - 1)
    else
      held = ""
    end
    return text
  end
end

function M.paint(color, text)
  if not M.color or not CODES[color] then
    return text
  end
  return CODES[color] .. text .. CODES.reset
end

-- The progress line (a terminal only): one line at the bottom of stderr, redrawn after every
-- other write and erased when the work it shows is done.
M.tty = false
local status = {} -- key -> text, in insertion order below
local status_order = {}
local status_shown = false

local function status_line()
  local parts = {}
  for _, key in ipairs(status_order) do
    parts[#parts + 1] = status[key]
  end
  return table.concat(parts, "  ")
end

local function erase_status()
  if status_shown then
    M.out:write("\r\27[K")
    status_shown = false
  end
end

local function draw_status()
  if M.tty and #status_order > 0 then
    local text = status_line()
    local width = M.width or 80
    if #text > width - 1 then
      text = text:sub(1, width - 2) .. "…"
    end
    M.out:write("\r\27[K" .. M.paint("dim", text))
    M.out:flush()
    status_shown = true
  end
end

local function emit(stream, text)
  erase_status()
  stream:write(text)
  stream:flush()
  draw_status()
end

--- Shows (or updates) a progress text under `key` on the terminal's last line; nothing when
--- stderr is not a terminal.
---@param key string
---@param text string
function M.status(key, text)
  if not M.tty or M.level < 1 then
    return
  end
  if not status[key] then
    status_order[#status_order + 1] = key
  end
  status[key] = text
  erase_status()
  draw_status()
end

--- Erases the progress text under `key`.
---@param key string
function M.clear_status(key)
  if not status[key] then
    return
  end
  status[key] = nil
  for i, k in ipairs(status_order) do
    if k == key then
      table.remove(status_order, i)
      break
    end
  end
  erase_status()
  draw_status()
end

local ESCAPES = { ["\a"] = "\\a", ["\b"] = "\\b", ["\t"] = "\\t", ["\n"] = "\\n", ["\v"] = "\\v",
  ["\f"] = "\\f", ["\r"] = "\\r", ["\27"] = "\\e" }

--- A name from the file system as it may be printed: control characters made visible (\n,
--- \e, \x01...), so a file name can neither forge a log line nor send the terminal an escape
--- sequence.
---@param s string
---@return string
function M.escape(s)
  return (tostring(s):gsub("[%c\127]", function(c)
    return ESCAPES[c] or ("\\x%02x"):format(c:byte())
  end))
end

local function line(color, fmt, ...)
  local msg = select("#", ...) > 0 and fmt:format(...) or fmt
  emit(M.out, M.paint("dim", "reload ") .. (color and M.paint(color, msg) or msg) .. "\n")
end

function M.info(fmt, ...)
  if M.level >= 1 then
    line(nil, fmt, ...)
  end
end

function M.ok(fmt, ...)
  if M.level >= 1 then
    line("green", fmt, ...)
  end
end

function M.warn(fmt, ...)
  if M.level >= 1 then
    line("yellow", fmt, ...)
  end
end

function M.error(fmt, ...)
  line("red", fmt, ...)
end

function M.verbose(fmt, ...)
  if M.level >= 2 then
    line("dim", fmt, ...)
  end
end

--- A writer for the output of a service shown without a prefix: chunks go out as they come
--- (a prompt or a progress bar needs no newline), and at the end (nil) a missing last newline is
--- added so that reload's next line starts on a line of its own.
---@param stream? table where to write (default: M.services_out, read at each write)
---@return fun(chunk: string|nil)
function M.passthrough(stream)
  local at_line_start = true
  return function(chunk)
    local out = stream or M.services_out
    if chunk == nil then
      if not at_line_start then
        emit(out, "\n")
        at_line_start = true
      end
      return
    end
    if chunk ~= "" then
      emit(out, chunk)
      at_line_start = chunk:sub(-1) == "\n"
    end
  end
end

--- Raw text to reload's stream (a failed build's output, help).
function M.raw(text)
  emit(M.out, text)
end

--- "12.3 ms", "1.24 s".
---@param ms number
---@return string
function M.duration(ms)
  if ms < 1 then
    return ("%.2f ms"):format(ms)
  elseif ms < 100 then
    return ("%.1f ms"):format(ms)
  elseif ms < 10000 then
    return ("%.2f s"):format(ms / 1000)
  end
  return ("%.0f s"):format(ms / 1000)
end

--- "a.go, b.go, c.go and 12 more".
---@param paths string[]
---@param max? integer
---@return string
function M.paths(paths, max)
  max = max or 3
  local shown = {}
  for i = 1, math.min(#paths, max) do
    shown[i] = M.escape(paths[i])
  end
  local text = table.concat(shown, ", ")
  if #paths > max then
    text = text .. (" and %d more"):format(#paths - max)
  end
  return text
end

--- A line writer for one service's output with a coloured "name | " prefix; keeps partial
--- lines until their newline arrives.
---@param name string
---@param index integer colour slot
---@param width integer width of the name column
---@param stream? table where to write (default: M.services_out, read at each write)
---@return fun(chunk: string|nil)
function M.prefixer(name, index, width, stream)
  local color = PALETTE[(index - 1) % #PALETTE + 1]
  local prefix = M.paint(color, name .. string.rep(" ", width - #name) .. " | ")
  local pending = ""
  return function(chunk)
    local out = stream or M.services_out
    if chunk == nil then
      if pending ~= "" then
        emit(out, prefix .. pending .. "\n")
        pending = ""
      end
      return
    end
    local text = pending .. chunk
    local lines = {}
    local last = 1
    for l, stop in text:gmatch("([^\n]*)\n()") do
      lines[#lines + 1] = prefix .. l .. "\n"
      last = stop
    end
    pending = text:sub(last)
    if #lines > 0 then
      emit(out, table.concat(lines))
    end
  end
end

return M
