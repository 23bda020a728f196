-- core.ignore against git itself: random trees with nested .gitignore files and an
-- .git/info/exclude, every path's decision compared with `git check-ignore --no-index`.
local helpers = require("spec.helpers")
local uv = require("luv")
local core = require("reload.core")

-- A small PRNG of our own so that a seed means the same tree on every Lua build.
local function rng(seed)
  local state = seed % 2147483647
  if state <= 0 then state = state + 2147483646 end
  return function(n)
    state = state * 16807 % 2147483647
    return state % n + 1
  end
end

local function pick(r, list)
  return list[r(#list)]
end

-- File and directory names: chosen so that the patterns below hit them often, with the
-- characters gitignore treats specially.
local NAMES = { "a", "b", "ab", "abc", "foo", "bar", "x.c", "y.h", "z.log", "build", "Doc",
  "d1", "d22", "t_e", "a b", "#h", "!n", "x~", "q[1]", "A.C", "foo.bar", ".hid", "log", "c" }

local WORDS = { "a", "b", "ab", "foo", "bar", "build", "log", "x", "z", "Doc", "d", "c", "h",
  ".c", ".h", ".log", "1", "22", "e" }
local WILD = { "*", "?", "**", "[abc]", "[a-c]", "[!a]", "[^b]", "[[:alpha:]]", "[[:digit:]]",
  "[]a]", "[a-]", "\\*", "\\a", "[[:upper:]]", "[x-z.]", "*.", "[\\]]" }

-- One path segment of a pattern.
local function segment(r)
  local parts = { pick(r, WORDS) }
  for _ = 1, r(3) - 1 do
    local piece = r(2) == 1 and pick(r, WILD) or pick(r, WORDS)
    if r(2) == 1 then
      table.insert(parts, 1, piece)
    else
      parts[#parts + 1] = piece
    end
  end
  return table.concat(parts)
end

-- One .gitignore line covering: negation, anchoring, dir-only, **, comments, escapes,
-- trailing spaces, malformed patterns.
local function pattern(r)
  local kind = r(20)
  if kind == 1 then return "# a comment" end
  if kind == 2 then return "" end
  if kind == 3 then return pick(r, { "[abc", "[[:nope:]]", "foo\\", "\\#h", "\\!n", "a\\ b" }) end
  local p = {}
  local n = r(3)
  for i = 1, n do
    local seg = segment(r)
    if n > 1 and r(5) == 1 then seg = "**" end
    p[i] = seg
  end
  local s = table.concat(p, "/")
  if r(4) == 1 then s = "/" .. s end
  if r(5) == 1 then s = "**/" .. s end
  if r(10) == 1 then s = s .. "/**" end
  if r(4) == 1 then s = s .. "/" end
  if r(3) == 1 then s = "!" .. s end
  if r(10) == 1 then s = s .. "  " end
  if r(15) == 1 then s = s .. "\\ " end
  if r(15) == 1 then s = s .. "\r" end
  return s
end

local function write(path, content)
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
end

-- Builds a random tree under dir; returns every path (relative) with whether it is a dir.
local function make_tree(r, dir, ndirs, nfiles, nignores, npatterns)
  local dirs = { "" }
  local paths = {}
  for _ = 1, ndirs do
    local parent = pick(r, dirs)
    local depth = select(2, parent:gsub("/", "")) + (parent == "" and 0 or 1)
    if depth < 4 then
      local rel = (parent == "" and "" or parent .. "/") .. pick(r, NAMES)
      if uv.fs_mkdir(dir .. "/" .. rel, 493) then
        dirs[#dirs + 1] = rel
        paths[#paths + 1] = { rel, true }
      end
    end
  end
  for _ = 1, nfiles do
    local parent = pick(r, dirs)
    local rel = (parent == "" and "" or parent .. "/") .. pick(r, NAMES)
    if not uv.fs_stat(dir .. "/" .. rel) then
      write(dir .. "/" .. rel, "x")
      paths[#paths + 1] = { rel, false }
    end
  end
  local count = 0
  for i = 1, nignores do
    local parent = i == 1 and "" or pick(r, dirs)
    local lines = {}
    for j = 1, npatterns do
      lines[j] = pattern(r)
    end
    count = count + npatterns
    local rel = (parent == "" and "" or parent .. "/") .. ".gitignore"
    if not uv.fs_stat(dir .. "/" .. rel) then paths[#paths + 1] = { rel, false } end
    write(dir .. "/" .. rel, table.concat(lines, "\n") .. (r(2) == 1 and "\n" or ""))
  end
  local lines = {}
  for j = 1, npatterns do
    lines[j] = pattern(r)
  end
  write(dir .. "/.git/info/exclude", table.concat(lines, "\n") .. "\n")
  return paths, count + npatterns
end

-- git's verdict for each path: true = ignored (the last matching pattern is not a negation).
local function git_verdicts(dir, paths)
  local input = {}
  for i, p in ipairs(paths) do
    input[i] = p[1]
  end
  local home = dir .. "/.git/fakehome"
  uv.fs_mkdir(home, 448)
  local code, out, err = helpers.run({ "git", "-C", dir, "check-ignore", "--no-index", "--stdin",
    "-z", "-v", "-n" }, {
    stdin = table.concat(input, "\0") .. "\0",
    env = { "PATH=" .. os.getenv("PATH"), "HOME=" .. home, "GIT_CONFIG_NOSYSTEM=1",
      "XDG_CONFIG_HOME=" .. home },
  })
  assert(code == 0 or code == 1, "git check-ignore failed: " .. err)
  local fields = {}
  for field in out:gmatch("([^%z]*)%z") do
    fields[#fields + 1] = field
  end
  local verdict = {}
  for i = 1, #fields, 4 do
    local pat, path = fields[i + 2], fields[i + 3]
    verdict[path] = pat ~= "" and pat:sub(1, 1) ~= "!"
    verdict[path .. "\0why"] = fields[i] .. ":" .. fields[i + 1] .. ": " .. pat
  end
  return verdict
end

local function compare(seed, ndirs, nfiles, nignores, npatterns, random)
  local r = rng(seed)
  local dir = helpers.tmpdir()
  local code = helpers.run({ "git", "init", "-q", dir })
  assert.are.equal(0, code)
  local paths, npat = make_tree(r, dir, ndirs, nfiles, nignores, npatterns)
  local verdict = git_verdicts(dir, paths)
  local ig = core.ignore({ root = dir, defaults = false })
  local bad = {}
  local ignored, negated = 0, 0
  for _, p in ipairs(paths) do
    if verdict[p[1]] then ignored = ignored + 1 end
    if (verdict[p[1] .. "\0why"] or ""):find(": !") then negated = negated + 1 end
    local mine = ig:ignored(p[1], p[2])
    if verdict[p[1]] == nil then
      bad[#bad + 1] = "git said nothing about " .. p[1]
    elseif mine ~= verdict[p[1]] then
      bad[#bad + 1] = ("%s%s: reload %s, git %s (%s)"):format(p[1], p[2] and "/" or "",
        tostring(mine), tostring(verdict[p[1]]), verdict[p[1] .. "\0why"])
    end
  end
  if #bad > 0 then
    local rules = helpers.run({ "sh", "-c", "cd " .. helpers.shell_quote(dir)
      .. " && find . -name .gitignore -o -name exclude | head -5" })
    error(("seed %d: %d of %d paths differ (%d patterns, %s):\n%s"):format(seed, #bad, #paths,
      npat, tostring(rules), table.concat(bad, "\n", 1, math.min(#bad, 25))), 0)
  end
  -- The tree must exercise both answers and re-inclusion, or the comparison proves little.
  assert(random or ignored > #paths / 20 and ignored < #paths * 19 / 20 and negated > 0,
    ("seed %d: a degenerate tree (%d paths, %d ignored, %d re-included)"):format(seed, #paths,
      ignored, negated))
  return #paths, npat
end

describe("core.ignore agrees with git check-ignore", function()
  for _, seed in ipairs({ 1, 3, 6, 9, 10, 42, 2024 }) do
    it("on the random tree of seed " .. seed, function()
      compare(seed, 60, 500, 10, 15)
    end)
  end

  local seed = tonumber(os.getenv("RELOAD_SEED") or "") or (os.time() % 100000)
  it("on the random tree of seed " .. seed .. " (random; RELOAD_SEED=N to replay)", function()
    compare(seed, 80, 800, 12, 15, true)
  end)
end)

describe("core.ignore", function()
  it("applies defaults below program patterns", function()
    local dir = helpers.tmpdir()
    local ig = core.ignore({ root = dir, patterns = { "tmp/", "*.log", "!keep.log" } })
    assert.is_true(ig:ignored(".git", true))
    assert.is_true(ig:ignored("web/node_modules", true))
    assert.is_true(ig:ignored("web/node_modules/x.js"))
    assert.is_true(ig:ignored(".main.go.swp"))
    assert.is_true(ig:ignored("main.go~"))
    assert.is_true(ig:ignored("4913"))
    assert.is_true(ig:ignored("tmp/keep.log"))
    assert.is_true(ig:ignored("a.log"))
    assert.is_false(ig:ignored("keep.log"))
    assert.is_false(ig:ignored("main.go"))
    assert.is_false(ig:ignored("main.swp"))
    local none = core.ignore({ root = dir, defaults = false, gitignore = false })
    assert.is_false(none:ignored(".git", true))
  end)

  -- One row per default pattern: what the editor or tool writes, and a name it must not hide.
  local defaults = {
    { "vim swap", "src/.main.go.swp", "src/main.swp" },
    { "vim swap, second", "src/.main.go.swo", "src/main.swo" },
    { "vim swap probe on open", "src/.f3.txt.swx", "src/f3.txt.swx" },
    { "vim swap probe (newer vims)", "src/.f3.txt.swpx", "src/f3.swpx" },
    { "vim and emacs backups", "src/main.go~", "src/main~go" },
    { "vim's write probe", "src/4913", "src/49134" },
    { "emacs lock", "src/.#main.go", "src/main.#go" },
    { "emacs autosave", "src/#main.go#", "src/main.go#" },
    { "JetBrains safe-write temp", "src/main.go___jb_tmp___", "src/main.go___jb" },
    { "JetBrains safe-write old", "src/main.go___jb_old___", "src/jb_old.go" },
    { "Kate swap", "src/.main.go.kate-swp", "src/main.go.kate" },
    { "gedit / GIO temp", "src/.goutputstream-9XKQ2Z", "src/goutputstream.c" },
    { "sed -i temp", "src/sedr9u74u", "src/sed.c" },
    { "sed -i temp (not a longer word)", "src/sedXq3Zp1", "src/sedation.txt" },
    { "macOS folder metadata", "src/.DS_Store", "src/DS_Store" },
    { "Python's bytecode cache", "app/__pycache__/views.cpython-311.pyc", "app/pycache.py" },
    { "Python's bytecode cache, being written",
      "app/__pycache__/views.cpython-311.pyc.140234", "app/__pycache__.py" },
    { "Python 2's bytecode", "app/views.pyc", "app/views.py" },
    { "Vite 5's bundled config", "vite.config.js.timestamp-1796058472322-03a9ff6c2d286.mjs",
      "src/timestamp.mjs" },
    { "Vite 4's bundled config", "web/vite.config.ts.timestamp-1679000000000.mjs",
      "web/vite.config.ts" },
    { "SvelteKit's generated files", ".svelte-kit/ambient.d.ts", "src/svelte-kit.d.ts" },
    { "go build's umask probe", "tmp/api-go-tmp-umask", "tmp/go-tmp.go" },
    { "Delve's debug binary", "__debug_bin", "debug_bin.go" },
    { "Delve's debug binary (1.21+)", "cmd/api/__debug_bin3141592653", "cmd/api/debug.go" },
  }
  for _, row in ipairs(defaults) do
    it("ignores by default: " .. row[1], function()
      local ig = core.ignore({ root = helpers.tmpdir() })
      assert.is_true(ig:ignored(row[2]), row[2])
      assert.is_false(ig:ignored(row[3]), row[3])
    end)
  end

  it("rereads a .gitignore after forget", function()
    local dir = helpers.tmpdir()
    helpers.write_file(dir .. "/.gitignore", "*.o\n")
    local ig = core.ignore({ root = dir })
    assert.is_true(ig:ignored("x.o"))
    helpers.write_file(dir .. "/.gitignore", "*.a\n")
    assert.is_true(ig:ignored("x.o"))
    ig:forget("")
    assert.is_false(ig:ignored("x.o"))
    assert.is_true(ig:ignored("x.a"))
  end)

  it("raises on misuse", function()
    assert.has_error(function() core.ignore({ root = "relative" }) end,
      "option 'root' must be an absolute path")
    assert.has_error(function() core.ignore({ gitignore = true }) end,
      "option 'root' is required when gitignore is on")
    assert.has_error(function() core.ignore({ root = "/", defaults = "yes" }) end,
      "option 'defaults': boolean expected, got string")
  end)
end)

describe("core.ignore reads its rule files as git does", function()
  local function git_ignores(dir, path)
    local code = helpers.run({ "git", "-C", dir, "check-ignore", "-q", "--no-index", path })
    return code == 0
  end

  it("follows a .git/info/exclude that is a symbolic link (git's t0008)", function()
    local dir = helpers.tmpdir()
    assert.are.equal(0, (helpers.run({ "git", "init", "-q", dir })))
    helpers.write_file(dir .. "/real-exclude", "secret.txt\n")
    os.remove(dir .. "/.git/info/exclude")
    assert(uv.fs_symlink("../../real-exclude", dir .. "/.git/info/exclude"))
    assert.is_true(git_ignores(dir, "secret.txt"))
    local ig = core.ignore({ root = dir, defaults = false })
    assert.is_true(ig:ignored("secret.txt"))
    assert.is_false(ig:ignored("public.txt"))
  end)

  it("reads a .gitignore over 8 MiB whole: no line is cut", function()
    local dir = helpers.tmpdir()
    assert.are.equal(0, (helpers.run({ "git", "init", "-q", dir })))
    local mib8 = 8 * 1024 * 1024
    local line = "#" .. ("p"):rep(1022) .. "\n"
    -- Comments up to 6 bytes short of 8 MiB, then a pattern across the boundary.
    local head = line:rep(8191) .. "#" .. ("p"):rep(1024 - 6 - 2) .. "\n"
    assert.are.equal(mib8 - 6, #head)
    local f = assert(io.open(dir .. "/.gitignore", "wb"))
    f:write(head, "straddle.txt\n", "after.txt\n")
    f:close()
    assert.is_true(git_ignores(dir, "straddle.txt"))
    local ig = core.ignore({ root = dir, defaults = false })
    assert.is_true(ig:ignored("straddle.txt"))
    assert.is_false(ig:ignored("stradd"))
    assert.is_true(ig:ignored("after.txt"))
  end)

  it("does not block on a FIFO named .gitignore (core.ignore and core.watch)", function()
    local dir = helpers.tmpdir()
    assert(uv.fs_mkdir(dir .. "/sub", 493))
    for _, path in ipairs({ "/.gitignore", "/sub/.gitignore" }) do
      assert.are.equal(0, (helpers.run({ "mkfifo", dir .. path })))
    end
    -- In a child: on failure it blocks in open(), and the timeout ends it.
    local ok, code, out, err = pcall(helpers.run, helpers.lua("-e", ([[
      package.cpath = %q .. "/lib/?.so;" .. package.cpath
      local uv = require("luv")
      local core = require("reload.core")
      local ig = core.ignore({ root = %q })
      assert(ig:ignored("sub/x") == false)
      local w = assert(core.watch({ root = %q, on_events = function() end }))
      local dirs = w:stats().dirs
      w:close()
      uv.run("nowait")
      print("ok " .. dirs)
    ]]):format(helpers.build_dir, dir, dir)), { timeout_ms = 5000 })
    assert(ok, code) -- on failure: the timeout's message
    assert.are.equal(0, code, err)
    assert.matches("^ok 2\n", out)
  end)
end)
