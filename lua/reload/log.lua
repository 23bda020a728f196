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

--- Decides whether to colour: a terminal on stderr, no NO_COLOR, and not disabled.
---@param disabled boolean
function M.setup_color(disabled)
  local no_color = os.getenv("NO_COLOR")
  M.color = not disabled and (no_color == nil or no_color == "") and uv.guess_handle(2) == "tty"
end

function M.paint(color, text)
  if not M.color or not CODES[color] then
    return text
  end
  return CODES[color] .. text .. CODES.reset
end

local function emit(stream, text)
  stream:write(text)
  stream:flush()
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
    shown[i] = paths[i]
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
---@return fun(chunk: string|nil)
function M.prefixer(name, index, width)
  local color = PALETTE[(index - 1) % #PALETTE + 1]
  local prefix = M.paint(color, name .. string.rep(" ", width - #name) .. " | ")
  local pending = ""
  return function(chunk)
    if chunk == nil then
      if pending ~= "" then
        emit(M.services_out, prefix .. pending .. "\n")
        pending = ""
      end
      return
    end
    local text = pending .. chunk
    local out = {}
    local last = 1
    for l, stop in text:gmatch("([^\n]*)\n()") do
      out[#out + 1] = prefix .. l .. "\n"
      last = stop
    end
    pending = text:sub(last)
    if #out > 0 then
      emit(M.services_out, table.concat(out))
    end
  end
end

return M
