-- The changed paths handed to commands (reload.changes): RELOAD_CHANGED and RELOAD_CHANGED_FILE.
-- The module on real files, the engine on a fake core (a Reloadfile reload), and the reload
-- binary end to end: a private file nobody else can plant or read, every path NUL-separated,
-- an environment under the kernel's limits, and nothing left behind.
local helpers = require("spec.helpers")
local uv = require("luv")
local changes = require("reload.changes")

local function mode_of(path)
  local st = assert(uv.fs_lstat(path))
  return ("%o"):format(st.mode & 511), st
end

--- The entries of a NUL-terminated list.
local function nul_list(text)
  local out = {}
  for entry in text:gmatch("([^%z]*)%z") do
    out[#out + 1] = entry
  end
  return out
end

--- A fresh runtime directory (as $XDG_RUNTIME_DIR is: 0700, ours) and a TMPDIR.
local function dirs()
  local root = helpers.tmpdir()
  local runtime, tmp = root .. "/run", root .. "/tmp"
  assert(uv.fs_mkdir(runtime, tonumber("700", 8)))
  assert(uv.fs_mkdir(tmp, tonumber("755", 8)))
  return runtime, tmp
end

describe("reload.changes", function()
  it("writes every path, NUL-terminated, to a 0600 file in a 0700 directory of its own", function()
    local runtime, tmp = dirs()
    local place = changes.place({ runtime_dir = runtime, tmp_dir = tmp })
    local paths = { "a.c", "dir/new\nline.c", "sp ace/x" }
    local set = place:write("api/../x", paths)
    local env = {}
    set:export(env)
    local file = env.RELOAD_CHANGED_FILE
    local dir = file:match("^(.*)/[^/]*$")
    assert.matches(("^%s/reload/%d%%-%%w+$"):format(runtime:gsub("%p", "%%%0"), uv.os_getpid()),
      dir)
    assert.matches("/%d+%-api_.._x$", file) -- the service name cannot leave the directory
    local fmode, fst = mode_of(file)
    assert.are.equal("600", fmode)
    assert.are.equal("file", fst.type)
    local dmode, dst = mode_of(dir)
    assert.are.equal("700", dmode)
    assert.are.equal(uv.getuid(), dst.uid)
    assert.are.same(paths, nul_list(helpers.read_file(file)))
    -- A name with a newline is left out of the newline list (it would read as two names).
    assert.are.equal("a.c\nsp ace/x", env.RELOAD_CHANGED)
    place:close()
    assert.is_nil(uv.fs_lstat(file))
    assert.is_nil(uv.fs_lstat(dir))
  end)

  it("keeps RELOAD_CHANGED under the kernel's limit for one variable, whatever changed", function()
    local runtime, tmp = dirs()
    local place = changes.place({ runtime_dir = runtime, tmp_dir = tmp })
    local long = {}
    for i = 1, 100 do
      long[i] = ("d"):rep(250) .. "/" .. ("e"):rep(250) .. "/" .. ("f"):rep(250) .. "/"
        .. ("g"):rep(250) .. "/" .. ("h"):rep(350) .. i -- 1.36 KB each: 136 KB in all
    end
    local env = {}
    place:write("svc", long):export(env)
    assert.is_true(#env.RELOAD_CHANGED <= changes.env_max_bytes)
    assert.is_true(#("RELOAD_CHANGED=" .. env.RELOAD_CHANGED) < 128 * 1024)
    local shown = {}
    for line in (env.RELOAD_CHANGED .. "\n"):gmatch("([^\n]*)\n") do
      shown[#shown + 1] = line
    end
    for i, p in ipairs(shown) do
      assert.are.equal(long[i], p, "whole paths, in order")
    end
    assert.are.equal(100, #nul_list(helpers.read_file(env.RELOAD_CHANGED_FILE)))
    -- And at most 100 paths, however short.
    local many = {}
    for i = 1, 500 do
      many[i] = "f" .. i
    end
    place:write("svc", many):export(env)
    assert.are.equal(100, select(2, env.RELOAD_CHANGED:gsub("\n", "")) + 1)
    place:close()
  end)

  it("removes a file with its last holder, never before", function()
    local runtime, tmp = dirs()
    local place = changes.place({ runtime_dir = runtime, tmp_dir = tmp })
    local set = place:write("svc", { "x" })
    local env = {}
    set:export(env)
    set:hold()
    set:release()
    assert.truthy(uv.fs_lstat(env.RELOAD_CHANGED_FILE))
    set:release()
    assert.is_nil(uv.fs_lstat(env.RELOAD_CHANGED_FILE))
    set:release() -- once too often: nothing happens
    place:close()
  end)

  it("without a runtime directory, uses TMPDIR/reload-UID, unless it is not ours", function()
    local _, tmp = dirs()
    local env = {}
    local place = changes.place({ runtime_dir = false, tmp_dir = tmp })
    place:write("svc", {}):export(env)
    local base = ("%s/reload-%d"):format(tmp, uv.getuid())
    assert.are.equal(base, env.RELOAD_CHANGED_FILE:match("^(.*)/[^/]*/[^/]*$"))
    assert.are.equal("700", (mode_of(base)))
    place:close()
    -- A link planted at that name is neither followed nor written through.
    local _, tmp2 = dirs()
    local elsewhere = helpers.tmpdir()
    assert(uv.fs_symlink(elsewhere, ("%s/reload-%d"):format(tmp2, uv.getuid())))
    place = changes.place({ runtime_dir = false, tmp_dir = tmp2 })
    place:write("svc", { "x" }):export(env)
    assert.matches("^" .. tmp2:gsub("%p", "%%%0") .. "/reload%-%w+/", env.RELOAD_CHANGED_FILE)
    assert.is_nil(uv.fs_scandir_next(assert(uv.fs_scandir(elsewhere))))
    place:close()
  end)

  it("removes the directories of reload processes that are gone, and only those", function()
    local runtime, tmp = dirs()
    local base = runtime .. "/reload"
    assert(uv.fs_mkdir(base, tonumber("700", 8)))
    -- A pid that is gone: a child of ours, reaped.
    local code = helpers.run({ "sh", "-c", "echo $$" })
    assert.are.equal(0, code)
    local dead = select(2, helpers.run({ "sh", "-c", "echo $$" })):match("%d+")
    local stale, live = base .. "/" .. dead .. "-AbC123", base .. "/1-XyZ789"
    for _, d in ipairs({ stale, live }) do
      assert(uv.fs_mkdir(d, tonumber("700", 8)))
      helpers.write_file(d .. "/1-svc", "x\0")
    end
    local place = changes.place({ runtime_dir = runtime, tmp_dir = tmp })
    place:write("svc", {})
    assert.is_nil(uv.fs_lstat(stale))
    assert.truthy(uv.fs_lstat(live .. "/1-svc")) -- pid 1 lives
    place:close()
  end)
end)

describe("RELOAD_CHANGED_FILE across generations (engine, fake core)", function()
  local engine = require("reload.engine")
  local dsl = require("reload.dsl")
  local log = require("reload.log")
  local fake = require("spec.support.fake")

  local function env_value(list, name)
    for _, kv in ipairs(list) do
      local k, v = kv:match("^([^=]*)=(.*)$")
      if k == name then
        return v
      end
    end
  end

  --- Runs fn(e, core, clock, file) on an engine over the fake core, for a Reloadfile that
  --- holds `text`, with reload's log silenced (and restored when fn fails too).
  local function with_engine(text, fn)
    local saved = log.out
    log.out = { write = function() end, flush = function() end }
    local ok, err = pcall(function()
      local core, clock = fake.core(), fake.clock()
      local file = helpers.tmpdir() .. "/Reloadfile.lua"
      helpers.write_file(file, text)
      local e = engine.new({ config = assert(dsl.load(file)), core = core, clock = clock,
        env = {}, loader = function() return dsl.load(file) end })
      assert(e:start())
      fn(e, core, clock, file)
    end)
    log.out = saved
    assert(ok, err)
  end

  it("is never removed while the generation that was given it lives", function()
    with_engine('service "b" { run = "./b" }\n', function(e, core, _, file)
      local b = core.last("./b")
      b:start()
      local old_file = env_value(b.opts.env, "RELOAD_CHANGED_FILE")
      assert.truthy(uv.fs_lstat(old_file))
      helpers.write_file(file, 'service "b" { run = "./b2" }\n')
      core.change("Reloadfile.lua")
      assert.are.equal(1, b.stops)
      assert.truthy(uv.fs_lstat(old_file), "removed while its generation lives")
      b:exit(143) -- the old generation is gone: the new one starts
      local b2 = core.last("./b2")
      b2:start()
      local new_file = env_value(b2.opts.env, "RELOAD_CHANGED_FILE")
      assert.are_not.equal(old_file, new_file)
      assert.truthy(uv.fs_lstat(new_file), "the new generation's file was removed")
      assert.is_nil(uv.fs_lstat(old_file), "the old generation's file stayed")
      local done = false
      e:quit(function() done = true end)
      b2:exit(143)
      assert.is_true(done)
      assert.is_nil(uv.fs_lstat(new_file))
    end)
  end)

  -- The same files saved again:
  it("is one file that generations share, kept while any of them lives", function()
    with_engine('service "b" { run = "./b", watch = { "src/**" } }\n', function(e, core, clock)
      local procs = { core.last("./b") }
      procs[1]:start()
      local files = {}
      -- src/a.c saved twice, then src/b.c: each restart's generation and its file
      for i, path in ipairs({ "src/a.c", "src/a.c", "src/b.c" }) do
        core.change(path)
        clock.advance(100)
        procs[i]:exit(143) -- the generation before is gone, and its handles closed
        local p = core.last("./b")
        assert.are_not.equal(procs[i], p)
        p:start()
        procs[i + 1] = p
        files[i] = env_value(p.opts.env, "RELOAD_CHANGED_FILE")
        assert.are.equal(path, env_value(p.opts.env, "RELOAD_CHANGED"))
        assert.are.equal(path .. "\0", helpers.read_file(files[i]))
      end
      -- The same list: no new file. The generation given it first is gone, the one sharing it
      -- lived on (the file stayed: read above), and it went with that one.
      assert.are.equal(files[1], files[2])
      assert.are_not.equal(files[2], files[3])
      assert.is_nil(uv.fs_lstat(files[1]), "the shared file stayed after its last generation")
      local done = false
      e:quit(function() done = true end)
      procs[4]:exit(143)
      assert.is_true(done)
      assert.is_nil(uv.fs_lstat(files[3]))
    end)
  end)
end)

describe("RELOAD_CHANGED_FILE (the reload binary)", function()
  -- Each generation records what it was given, then stays up (it holds its file).
  local RUN = [[n=$(cat gen 2>/dev/null || echo 0); n=$((n+1)); echo $n > gen; ]]
    .. [[printf %s "$RELOAD_CHANGED" > out/env-$n; cp "$RELOAD_CHANGED_FILE" out/list-$n; ]]
    .. [[echo "$RELOAD_CHANGED_FILE" > out/path-$n; ]]
    .. [[stat -c %a "$RELOAD_CHANGED_FILE" > out/mode-$n; ]]
    .. [[stat -c %a "$(dirname "$RELOAD_CHANGED_FILE")" > out/dirmode-$n; echo ready-$n; ]]
    .. [[exec sleep 1000]]

  local function project()
    local dir = helpers.project({
      ["Reloadfile.lua"] = ("service 'svc' { watch = { 'src/**' }, debounce = 300, run = { "
        .. "'sh', '-c', %q } }\n"):format(RUN),
      ["out/.keep"] = "",
      ["src/.keep"] = "",
    })
    local runtime, tmp = dir .. "/run", dir .. "/tmp"
    assert(uv.fs_mkdir(runtime, tonumber("700", 8)))
    assert(uv.fs_mkdir(tmp, tonumber("755", 8)))
    return dir, runtime, tmp
  end

  local function start(dir, runtime, tmp)
    local marker = helpers.unique("RELOAD_E2E")
    local proc = helpers.start_reload({}, { cwd = dir, env = helpers.env_with({
      RELOAD_E2E = marker, NO_COLOR = "1", XDG_RUNTIME_DIR = runtime, TMPDIR = tmp }) })
    return proc, "RELOAD_E2E=" .. marker
  end

  local function stop(proc, marker, sig)
    proc:signal(sig or "sigint")
    proc:wait(15000)
    local left = helpers.kill_tagged(marker)
    assert.are.same({}, left, "processes left: " .. helpers.describe(left))
  end

  --- Every file or directory below dir whose path holds `text`.
  local function find(dir, text)
    local _, out = helpers.run({ "find", dir, "-path", "*" .. text .. "*" })
    return out
  end

  it("is private, NUL-separated and complete; the environment stays under the limits", function()
    local dir, runtime, tmp = project()
    local deep = "src/" .. ("d"):rep(250) .. "/" .. ("e"):rep(250) .. "/" .. ("f"):rep(250)
      .. "/" .. ("g"):rep(250) .. "/" .. ("i"):rep(100)
    assert.are.equal(0, (helpers.run({ "mkdir", "-p", dir .. "/" .. deep })))
    local proc, marker = start(dir, runtime, tmp)
    proc:wait_output("ready%-1", 15000)
    -- Where reload 0.1 wrote the list, predictably: a link planted there must not be followed.
    local victim = helpers.tmpdir() .. "/victim"
    helpers.write_file(victim, "precious")
    local planted = ("%s/reload-%d-svc.changed"):format(tmp, proc.pid)
    os.remove(planted)
    assert(uv.fs_symlink(victim, planted))
    -- 100 paths of 1.36 KB (136 KB: over Linux's 128 KiB for one environment string) and a
    -- name with a newline, changed at once.
    local names = {}
    for i = 1, 100 do
      names[i] = deep .. "/" .. ("h"):rep(250 - #tostring(i)) .. i
    end
    names[#names + 1] = "src/new\nline.c"
    local args = { "touch" }
    for i, n in ipairs(names) do
      args[i + 1] = dir .. "/" .. n
    end
    assert.are.equal(0, (helpers.run(args)))
    proc:wait_output("ready%-2", 15000)
    assert.are.equal("precious", helpers.read_file(victim))
    assert.is_true(#table.concat(names, "\n") > 128 * 1024)
    local list = nul_list(helpers.read_file(dir .. "/out/list-2"))
    table.sort(list)
    table.sort(names)
    assert.are.same(names, list)
    local env = helpers.read_file(dir .. "/out/env-2")
    assert.is_true(#env <= 32 * 1024, #env)
    assert.is_nil(env:find("new\nline", 1, true))
    assert.are.equal("600\n", helpers.read_file(dir .. "/out/mode-2"))
    assert.are.equal("700\n", helpers.read_file(dir .. "/out/dirmode-2"))
    local path = helpers.read_file(dir .. "/out/path-2")
    assert.are.equal(runtime .. "/reload/", path:sub(1, #runtime + 8))
    stop(proc, marker)
    -- Every exit path removes the files: a quit...
    assert.are.equal("", find(runtime, proc.pid .. "-"))
  end)

  it("left behind by a reload that was SIGKILLed is removed by the next one", function()
    local dir, runtime, tmp = project()
    local proc, marker = start(dir, runtime, tmp)
    proc:wait_output("ready%-1", 15000)
    local path = helpers.read_file(dir .. "/out/path-1"):gsub("\n$", "")
    proc:signal("sigkill")
    proc:wait()
    helpers.retry(3000, function() -- its keeper tears its tree down
      return #helpers.tagged(marker) == 0, helpers.describe(helpers.tagged(marker))
    end)
    assert.truthy(uv.fs_lstat(path))
    local proc2, marker2 = start(dir, runtime, tmp)
    proc2:wait_output("ready%-2", 15000)
    assert.is_nil(uv.fs_lstat(path))
    assert.are.equal("", find(runtime, proc.pid .. "-"))
    assert.are.equal("", find(tmp, tostring(proc.pid)))
    stop(proc2, marker2)
  end)
end)
