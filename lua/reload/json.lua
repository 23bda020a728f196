--- A small JSON encoder for reload's event log (--json): strings, numbers, booleans, nil,
--- arrays (tables with 1..n) and objects (string keys, sorted). Not a general library.
local M = {}

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
