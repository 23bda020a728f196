--- The `reload` command line: parses arguments and hands off to the engine.
local M = {}

-- Where the command writes; a spec may swap them.
M.stdout = io.stdout
M.stderr = io.stderr

local core = require("reload.core")
local uv = require("luv")

M.usage = [[
Usage: reload [OPTIONS]
       reload script FILE [ARG...]

reload watches a project, rebuilds it on every change and restarts it, stopping the old
process tree whole (every descendant, including debuggers' children) before the new one starts.

Commands:
  script FILE [ARG...]  run a Lua file inside reload's runtime (luv and reload.core loaded,
                        one event loop), then run the loop until nothing is left on it;
                        exits with the number the file returns, else 0

Options:
  -h, --help       show this help and exit
  -V, --version    print the version and exit
]]

---@param out file*
---@param text string
local function write(out, text)
  out:write(text)
  out:flush()
end

--- `reload script FILE [ARG...]`
---@param argv table
---@return integer
local function script(argv)
  local file = argv[2]
  if not file then
    write(M.stderr, "reload script: missing FILE\n" .. M.usage)
    return 2
  end
  local chunk, err = loadfile(file)
  if not chunk then
    write(M.stderr, "reload: " .. err .. "\n")
    return 1
  end
  local args = { [0] = file }
  for i = 3, #argv do
    args[#args + 1] = argv[i]
  end
  _G.arg = args
  local ok, res = xpcall(chunk, debug.traceback, table.unpack(args))
  if not ok then
    write(M.stderr, "reload: " .. tostring(res) .. "\n")
    return 1
  end
  uv.run()
  return math.type(res) == "integer" and res or 0
end

--- Entry point of the executable.
---@param argv table the script arguments (argv[1..n]; argv[0] is the program)
---@return integer exit status
function M.main(argv)
  local first = argv[1]
  if first == "-V" or first == "--version" then
    write(M.stdout, "reload " .. core.version .. "\n")
    return 0
  end
  if first == "-h" or first == "--help" then
    write(M.stdout, M.usage)
    return 0
  end
  if first == "script" then
    return script(argv)
  end
  if first == nil then
    write(M.stderr, "reload: the engine is not built yet; see --help\n")
    return 2
  end
  write(M.stderr, ("reload: unknown option or command '%s'\n%s"):format(first, M.usage))
  return 2
end

return M
