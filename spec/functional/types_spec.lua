-- types/reload/core.lua (the LuaLS stub) against what reload.core registers: every function and
-- field of the module, every handle class (metatable) and its methods, both ways. A new C
-- function, field or method without its stub entry fails here, and so does a stale entry.
local helpers = require("spec.helpers")
local core = require("reload.core")

--- What the stub declares: module functions and fields, and methods per class.
local function declared()
  local text = assert(helpers.read_file(helpers.root .. "/types/reload/core.lua"))
  local decl = { functions = {}, fields = {}, classes = {} }
  local class_of_local = {} -- local Process = {} after ---@class reload.Process
  local pending_class, in_core_class = nil, false
  for line in text:gmatch("[^\n]*") do
    local class = line:match("^%-%-%-@class ([%w%.]+)")
    if class then
      pending_class = class
      in_core_class = class == "reload.core"
    elseif in_core_class and line:match("^%-%-%-@field ") then
      decl.fields[line:match("^%-%-%-@field ([%w_]+)")] = true
    elseif not line:match("^%-%-%-") then
      local var = line:match("^local ([%w_]+) = {}")
      if var and pending_class and pending_class ~= "reload.core" then
        class_of_local[var] = pending_class
        decl.classes[pending_class] = decl.classes[pending_class] or {}
      end
      pending_class, in_core_class = nil, false
    end
    local fn = line:match("^function core%.([%w_]+)%(")
    if fn then
      decl.functions[fn] = true
    end
    local var, method = line:match("^function ([%w_]+):([%w_]+)%(")
    if var then
      local cls = assert(class_of_local[var], "method of an undeclared class: " .. line)
      decl.classes[cls][method] = true
    end
  end
  return decl
end

--- What reload.core registers: the same shape, from the live module and the registry.
local function registered(classes)
  local reg = { functions = {}, fields = {}, classes = {} }
  for k, v in pairs(core) do
    if type(v) == "function" then
      reg.functions[k] = true
    else
      reg.fields[k] = true
    end
  end
  local registry = debug.getregistry()
  for name, value in pairs(registry) do
    if type(name) == "string" and name:match("^reload%.%u") and type(value) == "table" then
      reg.classes[name] = {}
      for method in pairs(value.__index or {}) do
        reg.classes[name][method] = true
      end
    end
  end
  for name in pairs(classes) do -- a declared class must exist even if no handle was made yet
    reg.classes[name] = reg.classes[name] or false
  end
  return reg
end

local function sorted_keys(t)
  local out = {}
  for k in pairs(t) do
    out[#out + 1] = k
  end
  table.sort(out)
  return out
end

describe("types/reload/core.lua", function()
  local decl = declared()
  -- A handle class whose values are not handles (data classes like reload.SpawnOptions) has no
  -- metatable: only classes with methods in the stub, or a metatable, are compared.
  local handle_classes = {}
  for name, methods in pairs(decl.classes) do
    if next(methods) then
      handle_classes[name] = methods
    end
  end
  local reg = registered(handle_classes)

  it("declares every function and field of reload.core, and nothing else", function()
    assert.are.same(sorted_keys(reg.functions), sorted_keys(decl.functions))
    assert.are.same(sorted_keys(reg.fields), sorted_keys(decl.fields))
  end)

  it("declares every handle class with the methods its metatable has", function()
    for name, methods in pairs(reg.classes) do
      assert(methods, "class " .. name .. " is in the stub but has no metatable")
      assert(handle_classes[name], "metatable " .. name .. " has no class in the stub")
      assert.are.same(sorted_keys(methods), sorted_keys(handle_classes[name]), name)
    end
  end)
end)
