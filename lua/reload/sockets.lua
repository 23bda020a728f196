--- The listening sockets of a session (`listen`): bound once, the first time a service starts,
--- and kept until reload exits, so that connections made while no generation runs wait in the
--- kernel's backlog instead of being refused. Each generation's keeper gets them and passes them
--- to the command as fds 3, 4, ... (keeper.c, with LISTEN_FDS and LISTEN_PID); this module
--- adds LISTEN_FDNAMES to the environment.
---
--- A socket belongs to the service that bound it first: another service listing the same
--- address is refused (two servers accepting from one backlog is not what anyone means). A
--- socket a Reloadfile edit no longer lists stays open until reload exits: closing it would
--- reset the connections waiting in it, and the edit may come back.
local M = {}

local log = require("reload.log")
local ports = require("reload.ports")

---@type table<string, { socket: any, owner: string }>
local held = {}

local function id(e)
  return e.host .. " " .. e.port
end

--- The sockets of a service's `listen`, bound if they are not yet. Returns a list of fds in
--- the order of `listen`, or nil and a message saying which address failed and, if it can be
--- found, who holds it.
---@param core table reload.core
---@param service string
---@param listen table normalized `listen`
---@return integer[]|nil, string|nil
function M.fds(core, service, listen)
  local fds = {}
  for _, e in ipairs(listen) do
    local h = held[id(e)]
    if h and h.owner ~= service then
      return nil, ("%s:%d is already passed to service \"%s\""):format(e.host, e.port, h.owner)
    end
    if not h then
      local sock, err, code = core.listen({ host = e.host, port = e.port })
      if not sock then
        local holder = code == "EADDRINUSE" and ports.holder(e.port)
        -- err names the address: "EADDRINUSE: address already in use (127.0.0.1:8080)"
        return nil, ("cannot listen: %s%s"):format(tostring(err),
          holder and (", held by pid %d (%s)"):format(holder.pid, holder.comm) or "")
      end
      h = { socket = sock, owner = service }
      held[id(e)] = h
      log.verbose("%s: listening on %s:%d (fd %d), passed to each run", service, e.host, e.port,
        sock:fd())
    end
    fds[#fds + 1] = h.socket:fd()
  end
  return fds
end

--- True when every socket of `listen` is bound and belongs to the service (a spare keeper may
--- then be given them).
---@param service string
---@param listen table
---@return boolean
function M.held_all(service, listen)
  for _, e in ipairs(listen) do
    local h = held[id(e)]
    if not h or h.owner ~= service then
      return false
    end
  end
  return true
end

--- LISTEN_FDNAMES for a `listen` list: its names joined with ':', as systemd does.
---@param listen table
---@return string
function M.names(listen)
  local names = {}
  for i, e in ipairs(listen) do
    names[i] = e.name
  end
  return table.concat(names, ":")
end

--- A key that changes when the sockets a keeper was given would differ (a spare keeper spawned
--- with other sockets must not run the next generation).
---@param listen table|nil
---@return string
function M.key(listen)
  local parts = {}
  for i, e in ipairs(listen or {}) do
    parts[i] = id(e)
  end
  return table.concat(parts, ",")
end

--- Closes every socket (reload is exiting; tests).
function M.close_all()
  for k, h in pairs(held) do
    h.socket:close()
    held[k] = nil
  end
end

return M
