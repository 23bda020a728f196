--- A small JSON reader and writer: `decode` (RFC 8259), enough to read a project's
--- package.json (objects become tables with string keys, arrays sequences, null `nil`; never
--- raises: a malformed text gives nil and the position of the problem), and `encode` for
--- reload's event log (--json): strings, numbers, booleans, nil, arrays (tables with 1..n) and
--- objects (string keys, sorted). Not a general library.
local M = {}

local ESCAPES = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n",
  r = "\r", t = "\t" }

local function utf8_char(code)
  return utf8.char(code)
end

--- Decodes a JSON text.
---@param text string
---@return any|nil value
---@return string|nil err "unexpected 'x' at 12"
function M.decode(text)
  local pos = 1
  local function fail(what)
    error({ json = ("%s at %d"):format(what, pos) }, 0)
  end
  local function skip()
    pos = text:find("[^ \t\r\n]", pos) or #text + 1
  end
  local value
  local function string_value()
    pos = pos + 1
    local out = {}
    while true do
      local _, e, chunk = text:find('^([^"\\]*)', pos)
      out[#out + 1] = chunk
      pos = e + 1
      local c = text:sub(pos, pos)
      if c == '"' then
        pos = pos + 1
        return table.concat(out)
      elseif c == "\\" then
        local esc = text:sub(pos + 1, pos + 1)
        if esc == "u" then
          local hex = text:match("^%x%x%x%x", pos + 2)
          if not hex then
            fail("bad \\u escape")
          end
          local code = tonumber(hex, 16)
          pos = pos + 6
          local low = text:match("^\\u(%x%x%x%x)", pos)
          if code >= 0xD800 and code <= 0xDBFF and low then
            code = 0x10000 + (code - 0xD800) * 0x400 + (tonumber(low, 16) - 0xDC00)
            pos = pos + 6
          end
          out[#out + 1] = utf8_char(code)
        elseif ESCAPES[esc] then
          out[#out + 1] = ESCAPES[esc]
          pos = pos + 2
        else
          fail("bad escape")
        end
      else
        fail("unterminated string")
      end
    end
  end
  function value()
    skip()
    local c = text:sub(pos, pos)
    if c == "{" then
      pos = pos + 1
      local obj = {}
      skip()
      if text:sub(pos, pos) == "}" then
        pos = pos + 1
        return obj
      end
      while true do
        skip()
        if text:sub(pos, pos) ~= '"' then
          fail("expected a key")
        end
        local k = string_value()
        skip()
        if text:sub(pos, pos) ~= ":" then
          fail("expected ':'")
        end
        pos = pos + 1
        obj[k] = value()
        skip()
        c = text:sub(pos, pos)
        pos = pos + 1
        if c == "}" then
          return obj
        elseif c ~= "," then
          fail("expected ',' or '}'")
        end
      end
    elseif c == "[" then
      pos = pos + 1
      local arr = {}
      skip()
      if text:sub(pos, pos) == "]" then
        pos = pos + 1
        return arr
      end
      while true do
        arr[#arr + 1] = value()
        skip()
        c = text:sub(pos, pos)
        pos = pos + 1
        if c == "]" then
          return arr
        elseif c ~= "," then
          fail("expected ',' or ']'")
        end
      end
    elseif c == '"' then
      return string_value()
    end
    for word, v in pairs({ ["true"] = true, ["false"] = false, null = M.null }) do
      if text:sub(pos, pos + #word - 1) == word then
        pos = pos + #word
        if v == M.null then
          return nil
        end
        return v
      end
    end
    local num = text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if num and num ~= "" and tonumber(num) then
      pos = pos + #num
      return tonumber(num)
    end
    fail(("unexpected %s"):format(c == "" and "end" or ("'" .. c .. "'")))
  end
  local ok, res = pcall(function()
    local v = value()
    skip()
    if pos <= #text then
      fail("trailing text")
    end
    return v
  end)
  if not ok then
    return nil, type(res) == "table" and res.json or tostring(res)
  end
  return res
end

M.null = setmetatable({}, { __tostring = function() return "null" end })


-- Writing ----------------------------------------------------------------------------------

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
  ["\r"] = "\\r", ["\t"] = "\\t" }

local function string_(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESC[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

local encode

local function is_array(t)
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then
      return false
    end
    n = n + 1
  end
  return n == #t
end

function encode(v)
  local t = type(v)
  if t == "nil" then
    return "null"
  elseif t == "boolean" then
    return v and "true" or "false"
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      return "null"
    end
    if math.type(v) == "integer" then
      return tostring(v)
    end
    -- Milliseconds to the microsecond are all reload reports.
    local text = ("%.3f"):format(v):gsub("(%..-)0+$", "%1"):gsub("%.$", "")
    return text
  elseif t == "string" then
    -- Bytes that are not UTF-8 (a file name can hold any) are passed as they are: consumers
    -- that need strict UTF-8 should read with replacement.
    return string_(v)
  elseif t == "table" then
    if next(v) == nil then
      return "[]"
    end
    if is_array(v) then
      local parts = {}
      for i = 1, #v do
        parts[i] = encode(v[i])
      end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do
      keys[#keys + 1] = tostring(k)
    end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do
      parts[#parts + 1] = string_(k) .. ":" .. encode(v[k])
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return string_(tostring(v))
end

M.encode = encode

return M
