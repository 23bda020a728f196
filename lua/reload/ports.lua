--- TCP ports on the loopback interface: is one free, who holds it, does it accept yet.
local M = {}

local uv = require("luv")

--- True when port can be bound on host (default "0.0.0.0", every address: a holder on any
--- address shows, whichever one the service binds). bind() only: Linux refuses the bind while
--- any socket listens on the port, so listen() would add nothing but a moment in which the
--- check itself accepts connections. libuv keeps a bind's EADDRINUSE for the listen() that
--- usually follows; the socket is then left unbound, which getsockname() shows. libuv sets
--- SO_REUSEADDR, as Go, Node and Python do, so a socket of the previous run lingering in
--- TIME_WAIT does not count as "in use".
---@param port integer
---@param host? string the service's own address, when it is known
---@return boolean
function M.bindable(port, host)
  local tcp = uv.new_tcp()
  local bound = tcp:bind(host or "0.0.0.0", port) and tcp:getsockname()
  tcp:close()
  return bound and bound.port == port or false
end

--- The family of an IP address literal ("inet" or "inet6"), or nil when text is not one.
---@param text string
---@return string|nil
function M.address(text)
  local found = uv.getaddrinfo(text, nil, { numerichost = true, socktype = "stream" })
  return found and found[1] and found[1].family or nil
end

--- Where to connect to reach a service listening on host: the wildcard addresses answer on
--- their family's loopback.
local connect_to = { ["0.0.0.0"] = "127.0.0.1", ["::"] = "::1" }

--- Calls fn(true) once host:port (default 127.0.0.1) accepts a connection, fn(false) if it
--- refuses.
---@param port integer
---@param fn fun(ok: boolean)
---@param host? string
function M.connectable(port, fn, host)
  local tcp = uv.new_tcp()
  host = host or "127.0.0.1"
  tcp:connect(connect_to[host] or host, port, function(err)
    tcp:close()
    fn(err == nil)
  end)
end

local function listening_inodes(port)
  local inodes = {}
  for _, file in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
    local f = io.open(file, "r")
    if f then
      for line in f:lines() do
        -- sl local_address rem_address st ... inode
        local lport, st, inode = line:match(
          "^%s*%d+:%s+%x+:(%x+)%s+%x+:%x+%s+(%x+)%s+%S+%s+%S+%s+%S+%s+%d+%s+%d+%s+(%d+)")
        if lport and tonumber(lport, 16) == port and st == "0A" then
          inodes["socket:[" .. inode .. "]"] = true
        end
      end
      f:close()
    end
  end
  return inodes
end

--- The process listening on the port, if it can be found: { pid =, comm = }.
---@param port integer
---@return { pid: integer, comm: string }|nil
function M.holder(port)
  local inodes = listening_inodes(port)
  if next(inodes) == nil then
    return nil
  end
  local dir = uv.fs_scandir("/proc")
  while dir do
    local name = uv.fs_scandir_next(dir)
    if not name then
      break
    end
    local pid = tonumber(name)
    if pid then
      local fds = uv.fs_scandir("/proc/" .. pid .. "/fd")
      while fds do
        local fd = uv.fs_scandir_next(fds)
        if not fd then
          break
        end
        local target = uv.fs_readlink("/proc/" .. pid .. "/fd/" .. fd)
        if target and inodes[target] then
          local f = io.open("/proc/" .. pid .. "/comm", "r")
          local comm = f and f:read("l") or "?"
          if f then
            f:close()
          end
          return { pid = pid, comm = comm }
        end
      end
    end
  end
  return nil
end

return M
