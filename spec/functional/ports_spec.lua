-- reload.ports: the port-free check before a start. Real sockets on the loopback interface.
local helpers = require("spec.helpers")
local uv = require("luv")
local ports = require("reload.ports")

--- A listener on host:port, closed by the returned function.
local function listen(host, port)
  local tcp = uv.new_tcp()
  assert(tcp:bind(host, port))
  assert(tcp:listen(8, function() end))
  return function()
    tcp:close()
    uv.run("nowait")
  end
end

describe("ports.bindable", function()
  it("binds, and never listens: the check accepts no connection, even for an instant", function()
    local calls = {}
    local port1, port2 = helpers.free_port(), helpers.free_port()
    local real_new_tcp = uv.new_tcp
    uv.new_tcp = function(...)
      local tcp = real_new_tcp(...)
      return setmetatable({}, { __index = function(_, name)
        return function(_, ...)
          calls[#calls + 1] = name .. (name == "bind" and (" " .. tostring((...))) or "")
          return tcp[name](tcp, select(1, ...))
        end
      end })
    end
    local ok, err = pcall(function()
      assert.is_true(ports.bindable(port1))
      assert.is_true(ports.bindable(port2, "127.0.0.1"))
    end)
    uv.new_tcp = real_new_tcp
    uv.run("nowait")
    assert(ok, err)
    assert.are.same({ "bind 0.0.0.0", "getsockname", "close", "bind 127.0.0.1", "getsockname",
      "close" }, calls)
  end)

  it("sees a listener on the port, whichever address it listens on", function()
    for _, host in ipairs({ "127.0.0.1", "0.0.0.0" }) do
      local port = helpers.free_port()
      local close = listen(host, port)
      local busy_any, busy_loopback = ports.bindable(port), ports.bindable(port, "127.0.0.1")
      close()
      assert.is_false(busy_any, host)
      assert.is_false(busy_loopback, host)
      assert.is_true(ports.bindable(port), host)
    end
  end)

  it("sees a dual-stack IPv6 listener (Node's default) from an IPv4 bind", function()
    local port = helpers.free_port()
    local tcp = uv.new_tcp()
    if not tcp:bind("::", port) then
      tcp:close()
      uv.run("nowait")
      pending("no IPv6 on this machine")
      return
    end
    assert(tcp:listen(8, function() end))
    local busy = ports.bindable(port)
    tcp:close()
    uv.run("nowait")
    assert.is_false(busy)
  end)

  it("names the process that holds the port", function()
    local port = helpers.free_port()
    local close = listen("127.0.0.1", port)
    local holder = ports.holder(port)
    close()
    assert.are.equal(uv.os_getpid(), holder and holder.pid)
  end)
end)
