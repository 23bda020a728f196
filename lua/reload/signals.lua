--- Signal names: "TERM", "SIGTERM", "term" and 15 all mean SIGTERM.
local M = {}

-- Linux numbering (x86, arm, risc-v).
M.numbers = {
  HUP = 1, INT = 2, QUIT = 3, ILL = 4, TRAP = 5, ABRT = 6, BUS = 7, FPE = 8, KILL = 9,
  USR1 = 10, SEGV = 11, USR2 = 12, PIPE = 13, ALRM = 14, TERM = 15, STKFLT = 16, CHLD = 17,
  CONT = 18, STOP = 19, TSTP = 20, TTIN = 21, TTOU = 22, URG = 23, XCPU = 24, XFSZ = 25,
  VTALRM = 26, PROF = 27, WINCH = 28, IO = 29, PWR = 30, SYS = 31,
}

M.names = {}
for name, n in pairs(M.numbers) do
  M.names[n] = name
end

--- The canonical name ("TERM") of a signal given by name or number, or nil if unknown.
---@param sig string|integer
---@return string|nil
function M.normalize(sig)
  if math.type(sig) == "integer" then
    return M.names[sig]
  end
  if type(sig) ~= "string" then
    return nil
  end
  local name = sig:upper():gsub("^SIG", "")
  if M.numbers[name] then
    return name
  end
  local n = tonumber(sig)
  return n and M.names[n] or nil
end

--- "SIGTERM" for 15.
---@param n integer
---@return string
function M.describe(n)
  return M.names[n] and ("SIG" .. M.names[n]) or ("signal " .. tostring(n))
end

return M
