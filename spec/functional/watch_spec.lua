-- core.watch on real files with real inotify: editor save patterns, directories appearing,
-- moving and vanishing, ignore pruning, live .gitignore edits, overflow, ENOSPC, polling.
local helpers = require("spec.helpers")
local uv = require("luv")
local core = require("reload.core")

local function sh(dir, cmd)
  local code, out, err = helpers.run({ "sh", "-c", cmd }, { cwd = dir })
  assert(code == 0, cmd .. ": " .. out .. err)
end

local function mkdirs(path)
  sh("/", "mkdir -p " .. helpers.shell_quote(path))
end

-- A watcher that records every event; :wait(pred, what) runs the loop until an event matches.
local function watch(root, opts)
  local rec = { events = {}, errors = {}, batches = 0 }
  opts = opts or {}
  opts.root = root
  opts.on_events = function(batch)
    rec.batches = rec.batches + 1
    for _, e in ipairs(batch) do
      rec.events[#rec.events + 1] = e
    end
  end
  opts.on_error = function(msg) rec.errors[#rec.errors + 1] = msg end
  local w, err = core.watch(opts)
  assert(w, err)
  rec.w = w
  function rec.describe()
    local seen = {}
    for _, e in ipairs(rec.events) do
      seen[#seen + 1] = e.kind .. " " .. tostring(e.path) .. (e.dir and "/" or "")
        .. (e.from and (" <- " .. e.from) or "")
    end
    return "[" .. table.concat(seen, ", ") .. "]"
  end
  function rec.find(kind, path)
    for _, e in ipairs(rec.events) do
      if e.kind == kind and e.path == path then return e end
    end
  end
  function rec.wait(kind, path, ms)
    helpers.wait_until(ms or 10000, function() return rec.find(kind, path) ~= nil end,
      function() return ("%s %s; events seen: %s"):format(kind, path, rec.describe()) end)
    return rec.find(kind, path)
  end
  -- Proves that nothing about `path` arrived: a later write to a sentinel file is seen first.
  function rec.quiet(path)
    local sentinel = "sentinel-" .. helpers.unique()
    helpers.write_file(root .. "/" .. sentinel, "x")
    rec.wait("rename", sentinel)
    for _, e in ipairs(rec.events) do
      assert(e.path ~= path, ("unexpected event for %s: %s"):format(path, rec.describe()))
    end
  end
  function rec.clear() rec.events = {} end
  return rec
end

describe("core.watch", function()
  local rec
  after_each(function()
    if rec then rec.w:close() end
    rec = nil
  end)

  describe("sees editor saves at the right path", function()
    local dir
    before_each(function()
      dir = helpers.tmpdir()
      helpers.write_file(dir .. "/main.go", "package main\n")
      rec = watch(dir)
    end)

    it("written in place", function()
      local f = assert(io.open(dir .. "/main.go", "w"))
      f:write("v2")
      f:close()
      rec.wait("modify", "main.go")
    end)

    it("written to a temporary file renamed over it (vim default, VS Code)", function()
      helpers.write_file(dir .. "/main.go", "v2")
      local e = rec.wait("rename", "main.go")
      assert.matches("^main%.go%.tmp%-", e.from)
    end)

    it("JetBrains safe write (temp, original to ___jb_old___, temp to name, old deleted)",
      function()
        sh(dir, "echo v2 > main.go___jb_tmp___ && mv main.go main.go___jb_old___ &&"
          .. " mv main.go___jb_tmp___ main.go && rm main.go___jb_old___")
        -- both helper names are ignored by default: what is left is main.go leaving, coming back
        rec.wait("create", "main.go")
        for _, e in ipairs(rec.events) do
          assert.is_nil(e.path:find("___jb_"), rec.describe())
        end
      end)

    it("vim backupcopy=no (original renamed to a backup, new file written)", function()
      sh(dir, "mv main.go main.go~ && echo v2 > main.go && rm main.go~")
      rec.wait("create", "main.go")
      assert.is_nil(rec.find("create", "main.go~"), rec.describe())
    end)

    it("deleted then created", function()
      sh(dir, "rm main.go")
      rec.wait("remove", "main.go")
      sh(dir, "echo v2 > main.go")
      rec.wait("create", "main.go")
    end)

    it("touched: an mtime change counts as a modification", function()
      sh(dir, "touch main.go")
      rec.wait("modify", "main.go")
    end)

    it("chmod alone is not a change (documented decision)", function()
      helpers.run({ "sleep", "0.05" }) -- so that the mtime is older than the ctime to come
      sh(dir, "chmod +x main.go")
      rec.quiet("main.go")
    end)

    it("many writes to one file in one batch coalesce, other paths survive", function()
      local f = assert(io.open(dir .. "/main.go", "w"))
      for i = 1, 200 do
        f:write(i, "\n")
        f:flush()
      end
      f:close()
      helpers.write_file(dir .. "/other.go", "x")
      rec.wait("rename", "other.go")
      local mods, closes = 0, 0
      for _, e in ipairs(rec.events) do
        if e.path == "main.go" and e.kind == "modify" then mods = mods + 1 end
        if e.path == "main.go" and e.kind == "close" then closes = closes + 1 end
      end
      assert.is_true(mods >= 1 and mods <= rec.batches, rec.describe())
      assert.are.equal(1, closes, rec.describe())
    end)

    it("says which events a writer may still follow: settled once the file is closed", function()
      local f = assert(io.open(dir .. "/main.go", "w"))
      f:write("partial")
      f:flush()
      local mod = rec.wait("modify", "main.go")
      assert.is_false(mod.settled)
      f:write(" and the rest")
      f:close()
      local close = rec.wait("close", "main.go")
      assert.is_true(close.settled)
      helpers.write_file(dir .. "/other.go", "x")
      assert.is_true(rec.wait("rename", "other.go").settled)
      sh(dir, "rm other.go")
      assert.is_true(rec.wait("remove", "other.go").settled)
    end)
  end)

  describe("directories", function()
    local dir
    before_each(function()
      dir = helpers.tmpdir()
      rec = watch(dir)
    end)

    it("a new directory and a file created in it at once", function()
      sh(dir, "mkdir d && echo x > d/f")
      rec.wait("create", "d")
      rec.wait("create", "d/f")
      assert.are.equal(2, rec.w:stats().dirs)
    end)

    it("mkdir -p a/b/c && echo > a/b/c/f", function()
      sh(dir, "mkdir -p a/b/c && echo > a/b/c/f")
      rec.wait("create", "a/b/c/f")
      helpers.wait_until(10000, function() return rec.w:stats().dirs == 4 end, "4 watched dirs")
      sh(dir, "echo again > a/b/c/g")
      rec.wait("create", "a/b/c/g")
    end)

    it("a directory moved into the tree, then out of it", function()
      local outside = helpers.tmpdir()
      mkdirs(outside .. "/pkg/sub")
      helpers.write_file(outside .. "/pkg/sub/x.go", "x")
      sh(dir, "mv " .. helpers.shell_quote(outside .. "/pkg") .. " pkg")
      rec.wait("create", "pkg")
      rec.wait("create", "pkg/sub/x.go")
      helpers.wait_until(10000, function() return rec.w:stats().dirs == 3 end, "3 watched dirs")
      sh(dir, "echo y > pkg/sub/y.go")
      rec.wait("create", "pkg/sub/y.go")
      sh(dir, "mv pkg " .. helpers.shell_quote(outside .. "/back"))
      local e = rec.wait("remove", "pkg")
      assert.is_true(e.dir)
      helpers.wait_until(10000, function() return rec.w:stats().dirs == 1 end,
        function() return "1 watched dir, have " .. rec.w:stats().dirs end)
    end)

    it("a directory renamed inside the tree keeps being watched under its new name", function()
      mkdirs(dir .. "/old/deep")
      rec.w:close()
      rec = watch(dir)
      sh(dir, "mv old new")
      local e = rec.wait("rename", "new")
      assert.are.equal("old", e.from)
      sh(dir, "echo x > new/deep/f")
      rec.wait("create", "new/deep/f")
      assert.are.equal(3, rec.w:stats().dirs)
    end)

    it("a deleted directory drops its watches", function()
      mkdirs(dir .. "/gone/a/b")
      rec.w:close()
      rec = watch(dir)
      assert.are.equal(4, rec.w:stats().dirs)
      sh(dir, "rm -rf gone")
      rec.wait("remove", "gone")
      helpers.wait_until(10000, function() return rec.w:stats().dirs == 1 end,
        function() return "1 watched dir, have " .. rec.w:stats().dirs end)
    end)

    it("does not follow a symlink loop", function()
      mkdirs(dir .. "/a/b")
      sh(dir, "ln -s .. a/b/up && ln -s a loop")
      rec.w:close()
      rec = watch(dir)
      assert.are.equal(3, rec.w:stats().dirs)
      sh(dir, "echo x > a/b/f")
      rec.wait("create", "a/b/f")
    end)
  end)

  describe("ignore rules", function()
    it("give ignored directories no watch", function()
      local dir = helpers.tmpdir()
      for i = 1, 20 do
        mkdirs(dir .. "/node_modules/m" .. i .. "/lib")
        mkdirs(dir .. "/tmp/t" .. i)
      end
      mkdirs(dir .. "/src/pkg")
      mkdirs(dir .. "/logs")
      helpers.write_file(dir .. "/.gitignore", "/logs/\n")
      rec = watch(dir, { ignore = { "tmp/" } })
      -- root, src, src/pkg (.git absent; node_modules, tmp, logs pruned)
      assert.are.equal(3, rec.w:stats().dirs)
      assert.is_true(rec.w:ignored("tmp", true))
      assert.is_true(rec.w:ignored("x.swp") == false)
      helpers.write_file(dir .. "/tmp/t1/f", "x")
      helpers.write_file(dir .. "/x.log~", "x")
      rec.quiet("tmp/t1/f")
      assert.is_nil(rec.find("create", "x.log~"), rec.describe())
    end)

    it("follow a .gitignore edited while watching", function()
      local dir = helpers.tmpdir()
      mkdirs(dir .. "/gen/a")
      mkdirs(dir .. "/src")
      helpers.write_file(dir .. "/.gitignore", "gen/\n")
      rec = watch(dir)
      assert.are.equal(2, rec.w:stats().dirs)
      helpers.write_file(dir .. "/.gitignore", "src/\n")
      rec.wait("rename", ".gitignore")
      helpers.wait_until(10000, function() return rec.w:stats().dirs == 3 end,
        function() return "3 watched dirs (root, gen, gen/a), have " .. rec.w:stats().dirs end)
      sh(dir, "echo x > gen/a/f && echo y > src/g")
      rec.wait("create", "gen/a/f")
      rec.quiet("src/g")
      assert.is_true(rec.w:ignored("src/g"))
    end)
  end)

  describe("the root itself", function()
    it("deleted while a process works in it: root-gone, then root-back, an overflow, and the new "
      .. "tree watched", function()
      local base = helpers.tmpdir()
      local root = base .. "/proj"
      mkdirs(root .. "/sub")
      helpers.write_file(root .. "/a.txt", "1")
      -- The directory is some process's working directory, as it is reload's and its
      -- commands': its own watch then says nothing when it is removed (IN_DELETE_SELF comes
      -- once nothing holds it). The parent's watch does.
      local holder = helpers.start({ "sleep", "1000" }, { cwd = root })
      rec = watch(root)
      sh(base, "rm -rf proj")
      rec.wait("root-gone")
      assert.are.equal(0, rec.w:stats().dirs)
      rec.clear()
      mkdirs(root .. "/new")
      helpers.write_file(root .. "/new/b.txt", "2")
      rec.wait("root-back")
      rec.wait("overflow")
      helpers.wait_until(10000, function() return rec.w:stats().dirs == 2 end,
        function() return "2 watched dirs, have " .. rec.w:stats().dirs end)
      helpers.write_file(root .. "/new/c.txt", "3")
      rec.wait("rename", "new/c.txt")
      holder:kill()
    end)

    it("moved away: what happens under its new name is not reported, a new one is watched",
      function()
        local base = helpers.tmpdir()
        local root = base .. "/proj"
        mkdirs(root)
        rec = watch(root)
        sh(base, "mv proj proj.old")
        rec.wait("root-gone")
        helpers.write_file(base .. "/proj.old/x.txt", "x")
        mkdirs(root)
        rec.wait("root-back")
        rec.quiet("x.txt")
        assert.are.equal(1, rec.w:stats().dirs)
      end)
  end)

  -- Neither test changes a setting of the machine: two suites, or a suite and the benchmark,
  -- can run at once.
  describe("kernel limits", function()
    it("reports a queue overflow as one overflow event", function()
      local limit = tonumber(helpers.read_file("/proc/sys/fs/inotify/max_queued_events"))
      if not limit or limit > 200000 then
        pending(("fs.inotify.max_queued_events is %s: too many files to write to overflow it")
          :format(tostring(limit)))
        return
      end
      local dir = helpers.tmpdir()
      rec = watch(dir)
      -- The loop does not run while the files are written, so nothing reads the queue: each file
      -- queues two events (create, modify), and past the limit the kernel drops them and queues
      -- one IN_Q_OVERFLOW instead.
      for i = 1, limit // 2 + 500 do
        local f = assert(io.open(dir .. "/f" .. i, "w"))
        f:write("x")
        f:close()
      end
      helpers.wait_until(10000, function()
        for _, e in ipairs(rec.events) do
          if e.kind == "overflow" then return true end
        end
        return false
      end, function() return "an overflow event; seen " .. #rec.events .. " events" end)
      local n = 0
      for _, e in ipairs(rec.events) do
        if e.kind == "overflow" then n = n + 1 end
      end
      assert.are.equal(1, n)
    end)
  end)

  describe("ENOSPC in a user namespace of its own", function()
    -- inotify's watch limit is counted per user namespace: a child namespace may lower its own
    -- (/proc/sys/user/max_inotify_watches) while the machine's stays as it is, so this runs
    -- beside any other test. The watcher runs in a child process inside that namespace.
    local child = [[
      package.cpath = arg[1] .. "/lib/?.so;" .. package.cpath
      local uv, core = require("luv"), require("reload.core")
      local dir, errors, seen = arg[2], {}, {}
      local w = assert(core.watch({ root = dir, poll_interval_ms = 20,
        on_events = function(b) for _, e in ipairs(b) do seen[e.path or "?"] = e.kind end end,
        on_error = function(m) errors[#errors + 1] = m end }))
      local function run_until(ms, cond)
        local deadline, t = uv.now() + ms, uv.new_timer()
        t:start(5, 5, function() end)
        while not cond() and uv.now() < deadline do uv.run("once") end
        t:close()
      end
      run_until(3000, function() return #errors > 0 end)
      local st = w:stats()
      print(("stats %d %d %d"):format(st.dirs, st.watches, st.polled_dirs))
      print("error " .. tostring(errors[1]))
      for i = 1, 6 do
        local f = assert(io.open(dir .. "/d" .. i .. "/sub/f", "w"))
        f:write("x")
        f:close()
      end
      local function all()
        for i = 1, 6 do if not seen["d" .. i .. "/sub/f"] then return false end end
        return true
      end
      run_until(5000, all)
      print("seen " .. tostring(all()))
      w:close()
      uv.run("nowait")
    ]]

    it("explains it and polls what inotify could not watch", function()
      local dir = helpers.tmpdir()
      for i = 1, 6 do
        mkdirs(dir .. "/d" .. i .. "/sub")
      end
      helpers.write_file(dir .. "/child.lua", child)
      if helpers.run({ "unshare", "-U", "-r", "sh", "-c",
        "echo 3 > /proc/sys/user/max_inotify_watches" }) ~= 0 then
        pending("needs unprivileged user namespaces (unshare -U -r)")
        return
      end
      local lua = {}
      for _, a in ipairs(helpers.lua()) do lua[#lua + 1] = helpers.shell_quote(a) end
      local code, out, err = helpers.run({ "unshare", "-U", "-r", "sh", "-c",
        "echo 3 > /proc/sys/user/max_inotify_watches && exec " .. table.concat(lua, " ") ..
        ' "$0" "$@"', dir .. "/child.lua", helpers.build_dir, dir }, { timeout_ms = 20000 })
      assert.are.equal(0, code, out .. err)
      local dirs, watches, polled = out:match("stats (%d+) (%d+) (%d+)")
      assert.are.equal("13", dirs, out)
      assert.are.equal("3", watches, out)
      assert.is_true(tonumber(polled) > 0, out)
      assert.matches("error inotify watch limit reached at '[^']+' %(fs%.inotify%."
        .. "max_user_watches = %d+; this user namespace's user%.max_inotify_watches = 3%)", out)
      assert.matches("sysctl fs%.inotify%.max_user_watches=", out)
      assert.matches("seen true", out)
    end)
  end)

  describe("the polling backend", function()
    it("reports create, modify and remove from snapshots", function()
      local dir = helpers.tmpdir()
      helpers.write_file(dir .. "/a.txt", "1")
      mkdirs(dir .. "/node_modules/x")
      rec = watch(dir, { backend = "poll", poll_interval_ms = 20 })
      local st = rec.w:stats()
      assert.are.equal("poll", st.backend)
      assert.are.equal(1, st.dirs)
      assert.are.equal(1, st.files)
      sh(dir, "mkdir b && echo 2 > b/c.txt && echo 22 > a.txt")
      rec.wait("create", "b/c.txt")
      rec.wait("modify", "a.txt")
      sh(dir, "rm a.txt")
      rec.wait("remove", "a.txt")
    end)
  end)

  describe("deep trees", function()
    -- 45 directories of 100-byte names: 4,545 path bytes, more than PATH_MAX (4096). bash can
    -- cd that deep (dash cannot).
    local NAME = ("d"):rep(100)
    local LEVELS = 45
    local function deep(root, cmd)
      local code, out, err = helpers.run({ "bash", "-c", ("cd %s && for i in $(seq %d); do "
        .. "if [ ! -d %s ]; then mkdir %s || exit 1; fi; cd %s || exit 1; done && %s")
        :format(helpers.shell_quote(root), LEVELS, NAME, NAME, NAME, cmd) })
      assert(code == 0, cmd .. ": " .. out .. err)
    end

    for _, backend in ipairs({ "inotify", "poll" }) do
      it("are watched and read past 4096 path bytes (" .. backend .. ")", function()
        local dir = helpers.tmpdir()
        deep(dir, "echo ignored.txt > .gitignore")
        rec = watch(dir, { backend = backend, poll_interval_ms = 20 })
        local st = rec.w:stats()
        assert.are.equal(LEVELS + 1, st.dirs, rec.errors[1])
        assert.are.same({}, rec.errors)
        deep(dir, "echo x > ignored.txt && echo x > new.txt && mkdir sub && echo x > sub/f")
        local rel = (NAME .. "/"):rep(LEVELS)
        rec.wait("create", rel .. "new.txt")
        rec.wait("create", rel .. "sub/f")
        assert.is_nil(rec.find("create", rel .. "ignored.txt"), "the deep .gitignore was not read")
        assert.are.same({}, rec.errors)
      end)
    end
  end)

  describe("contract", function()
    it("returns nil, message, code when the root is missing", function()
      local w, err, code = core.watch({ root = "/nonexistent/reload", on_events = print })
      assert.is_nil(w)
      assert.are.equal("ENOENT", code)
      assert.matches("^ENOENT: .*/nonexistent/reload", err)
      collectgarbage()
    end)

    it("raises on misuse", function()
      assert.has_error(function() core.watch({ root = "rel", on_events = print }) end)
      assert.has_error(function() core.watch({ root = "/tmp" }) end)
      assert.has_error(function() core.watch({ root = "/tmp", on_events = print, bogus = 1 }) end)
      assert.has_error(function()
        core.watch({ root = "/tmp", on_events = print, backend = "fsevents" })
      end)
      collectgarbage()
    end)

    it("closes idempotently and releases every handle and ref", function()
      local dir = helpers.tmpdir()
      local w = assert(core.watch({ root = dir, on_events = function() end }))
      assert.are.same({ handles = 2, refs = 2 }, core._stats())
      w:close()
      w:close()
      uv.run("nowait")
      assert.are.same({ handles = 0, refs = 0 }, core._stats())
      assert.has_error(function() w:stats() end)
    end)
  end)
end)
