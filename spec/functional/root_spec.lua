-- The project root deleted (or moved away) and made again, as a script that recreates a checkout
-- does, while reload runs in it: reload says the root is gone, starts nothing while it is
-- missing, and once it is back restarts once, in the new directory, and sees later edits.
local helpers = require("spec.helpers")
local uv = require("luv")

local RELOADFILE = [[
service "s" {
  watch = "*.txt",
  run = "echo $$ $(cat a.txt) >> %s; exec sleep 1000",
}
]]

--- A project at base/proj whose service logs "PID CONTENT-OF-a.txt" to base/starts.log (outside
--- the root: the log outlives it) at each start.
local function project()
  local base = helpers.tmpdir()
  local root = base .. "/proj"
  assert(uv.fs_mkdir(root, tonumber("755", 8)))
  local reloadfile = RELOADFILE:format(helpers.shell_quote(base .. "/starts.log"))
  helpers.write_file(root .. "/Reloadfile.lua", reloadfile)
  helpers.write_file(root .. "/a.txt", "1")
  return base, root, reloadfile
end

--- The starts logged so far: { {pid=, content=}, ... }.
local function starts(base)
  local list = {}
  for pid, content in (helpers.read_file(base .. "/starts.log") or ""):gmatch("(%d+) (%S*)\n") do
    list[#list + 1] = { pid = tonumber(pid), content = content }
  end
  return list
end

local function contents(list)
  local out = {}
  for _, s in ipairs(list) do
    out[#out + 1] = s.content
  end
  return table.concat(out, " ")
end

--- Waits for the starts to be exactly `expected` (their contents, in order).
local function wait_starts(base, proc, expected)
  return helpers.retry(15000, function()
    local list = starts(base)
    return contents(list) == expected and list, ("starts %q, not %q; reload said:\n%s"):format(
      contents(list), expected, proc:text())
  end)
end

local function count(text, pattern)
  local _, n = text:gsub(pattern, "")
  return n
end

--- The root goes (by `remove`, a shell command run in base), comes back with its files, and
--- one restart follows, in the new directory. before_edit(base), if given, runs before the last
--- edit.
local function scenario(remove, before_edit)
  local base, root, reloadfile = project()
  -- reload itself works in the root, as when a user starts it there: its working directory is
  -- then the deleted directory too.
  local proc, marker = helpers.session(root)
  wait_starts(base, proc, "1")
  local code, out, err = helpers.run({ "sh", "-c", remove }, { cwd = base })
  assert(code == 0, remove .. ": " .. out .. err)
  proc:wait_output("project root removed; waiting for it to come back", 15000, true)
  -- Nothing is started while it is missing.
  assert.are.equal("1", contents(starts(base)))
  assert.is_nil(proc:text():find("cannot start", 1, true), proc:text())
  assert(uv.fs_mkdir(root, tonumber("755", 8)))
  helpers.write_file(root .. "/Reloadfile.lua", reloadfile)
  helpers.write_file(root .. "/a.txt", "2")
  helpers.write_file(root .. "/b.txt", "x")
  local list = wait_starts(base, proc, "1 2")
  -- The new process runs in the new directory, not in the deleted one.
  assert.are.equal(root, uv.fs_readlink("/proc/" .. list[2].pid .. "/cwd"))
  -- Later edits are seen; and the one restart above was the only one (a second would have
  -- logged before this one).
  if before_edit then
    before_edit(base)
  end
  helpers.write_file(root .. "/a.txt", "3")
  wait_starts(base, proc, "1 2 3")
  local text = proc:text()
  assert.are.equal(1, count(text, "after the project root came back"), text)
  assert.matches("s: a%.txt changed\n", text)
  helpers.end_session(proc, marker)
  return proc
end

describe("the project root deleted and made again", function()
  it("rm -rf root; mkdir root: one restart, in the new directory, and later edits seen",
    function()
      scenario("rm -rf proj")
    end)

  it("mv root root.old; mkdir root: the same, and edits in root.old are not seen", function()
    -- A file written in proj.old before the last edit: had reload still watched the old
    -- directory, its event would come first, and the restart would name it.
    local proc = scenario("mv proj proj.old", function(base)
      helpers.write_file(base .. "/proj.old/c.txt", "old")
    end)
    assert.is_nil(proc:text():find("c.txt", 1, true), proc:text())
  end)
end)
