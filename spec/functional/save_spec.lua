-- A save is one change: through the real binary, one row per way editors and tools write a
-- file, each giving exactly one restart (and opening a file without saving it, none).
--
-- How a row is judged: the service logs the paths of each start. After the row's save, the next
-- start must list exactly the saved file; then a sentinel file is written, and the start after
-- that must list exactly the sentinel. A second restart for the same save would appear as one
-- more start listing the file, or would merge into the sentinel's start.
local helpers = require("spec.helpers")
local uv = require("luv")

local function have(cmd)
  return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true
end

local function sh(dir, cmd)
  local code, out, err = helpers.run({ "sh", "-c", cmd }, { cwd = dir })
  assert(code == 0, cmd .. ": " .. out .. err)
  return out
end

local RELOADFILE = [[
ignore { "tmp/" }
service "app" {
  watch = { "*.txt", "src/**" },
  run = { "sh", "-c", 'printf "start %s\n" "$(printf %s "$RELOAD_CHANGED" | tr "\n" " ")" ]] ..
  [[>> starts.log; exec sleep 1000' },
}
]]

--- Starts reload on a project with f.txt (after prepare(dir), if given); returns proc, marker,
--- dir and a `starts()` reader.
local function project(files, prepare)
  files = files or {}
  files["f.txt"] = files["f.txt"] or "one\n"
  files["Reloadfile.lua"] = RELOADFILE
  local dir = helpers.project(files)
  if prepare then
    prepare(dir)
  end
  local marker = helpers.unique("RELOAD_SAVE")
  local proc = helpers.start_reload({}, { cwd = dir,
    env = helpers.env_with({ RELOAD_SAVE = marker, NO_COLOR = "1" }) })
  local function starts()
    local list = {}
    for line in (helpers.read_file(dir .. "/starts.log") or ""):gmatch("[^\n]+") do
      list[#list + 1] = line
    end
    return list
  end
  helpers.retry(10000, function() return #starts() == 1, "the first start" end)
  return proc, "RELOAD_SAVE=" .. marker, dir, starts
end

local stop = helpers.end_session

--- After `save` (which writes `expected`, a space-separated list of paths, or nothing), the
--- starts that follow are: one listing exactly `expected` (none if nil), then the sentinel's.
local function judge(proc, dir, starts, save, expected)
  local before = #starts()
  save()
  if expected then
    helpers.retry(20000, function()
      return #starts() >= before + 1, "a start after the save; starts: " ..
        table.concat(starts(), " | ") .. "\n" .. proc:text()
    end)
  end
  local sentinel = "sentinel-" .. helpers.unique() .. ".txt"
  helpers.write_file(dir .. "/" .. sentinel, "x")
  helpers.retry(20000, function()
    local list = starts()
    return list[#list]:find(sentinel, 1, true) ~= nil, "the sentinel's start; starts: " ..
      table.concat(list, " | ")
  end)
  local list = starts()
  local want = { }
  for i = 1, before do want[i] = list[i] end
  if expected then want[#want + 1] = "start " .. expected end
  want[#want + 1] = "start " .. sentinel
  assert.are.same(want, list, proc:text())
end

local function git(dir, cmd)
  sh(dir, "git -c user.name=t -c user.email=t@t " .. cmd)
end

describe("a save is one change", function()
  --- Runs the row: reload on a fresh project, the save, the judgement, reload stopped.
  local function row(save, expected, prepare)
    local proc, marker, dir, starts = project({ ["src/a.c"] = "int a;\n" }, prepare)
    local ok, err = pcall(judge, proc, dir, starts, function() save(dir) end, expected)
    stop(proc, marker)
    if not ok then error(err, 0) end
  end

  it("an in-place write", function()
    row(function(dir) sh(dir, "printf 'two\\n' > f.txt") end, "f.txt")
  end)

  it("truncated, then written after a pause, by a writer that keeps it open", function()
    row(function(dir)
      local f = assert(io.open(dir .. "/f.txt", "w")) -- O_TRUNC
      f:write("first half ")
      f:flush()
      helpers.run_for(300) -- longer than any quiet period: only the close ends the save
      f:write("second half\n")
      f:close()
    end, "f.txt")
  end)

  it("a temporary file renamed over it", function()
    row(function(dir) helpers.write_file(dir .. "/f.txt", "two\n") end, "f.txt")
  end)

  it("sed -i (a temporary file of its own, renamed over it)", function()
    row(function(dir) sh(dir, "sed -i s/one/two/ f.txt") end, "f.txt")
  end)

  it("cp over it", function()
    row(function(dir)
      sh(dir, "printf 'two\\n' > tmp-copy-src && cp tmp-copy-src f.txt && rm tmp-copy-src")
    end, "f.txt")
  end)

  it("an emacs-style save: lock, the old file renamed to a backup, a new one written", function()
    row(function(dir)
      sh(dir, "ln -s user@host.1234:0 .#f.txt && mv f.txt f.txt~ && printf 'two\\n' > f.txt" ..
        " && rm .#f.txt")
    end, "f.txt")
  end)

  it("a build that writes only into an ignored directory: none", function()
    row(function(dir)
      sh(dir, "mkdir -p tmp/obj && for i in $(seq 1 50); do echo $i > tmp/obj/$i.txt; done")
    end, nil)
  end)

  describe("with vim (in tmux, as a user types)", function()
    --- vim on f.txt in a tmux of its own, typing keys; returns once vim has quit.
    local function vim(dir, opts, keys)
      local socket = "reload-spec-" .. helpers.unique()
      local ok, err = pcall(function()
        local code, _, e = helpers.run({ "tmux", "-L", socket, "new-session", "-d", "-x", "80",
          "-y", "24", "-c", dir, "vim -u NONE -N -i NONE " .. opts .. " f.txt" })
        assert.are.equal(0, code, e)
        -- vim has the file open once its swap file exists
        helpers.retry(10000, function()
          return uv.fs_stat(dir .. "/.f.txt.swp") ~= nil, "vim's swap file"
        end)
        local argv = { "tmux", "-L", socket, "send-keys", "-t", "0" }
        for _, k in ipairs(keys) do argv[#argv + 1] = k end
        assert.are.equal(0, (helpers.run(argv)))
        helpers.retry(10000, function()
          return helpers.run({ "tmux", "-L", socket, "has-session" }) ~= 0, "vim to quit"
        end)
      end)
      helpers.run({ "tmux", "-L", socket, "kill-server" })
      if not ok then error(err, 0) end
    end

    local function editor_row(opts, keys, expected)
      if not (have("vim") and have("tmux")) then
        pending("vim and tmux are not installed (scripts/setup installs them)")
        return
      end
      row(function(dir) vim(dir, opts, keys) end, expected)
    end

    it("its default save (the old file renamed to a backup, a new one written)", function()
      editor_row("", { "Go", "two", "Escape", ":wq", "Enter" }, "f.txt")
    end)

    it("its save with backupcopy=yes (a copy, then the file rewritten in place)", function()
      editor_row("-c 'set backup backupcopy=yes'", { "Go", "two", "Escape", ":wq", "Enter" },
        "f.txt")
    end)

    it("opening the file and quitting without saving: none", function()
      editor_row("", { ":q", "Enter" }, nil)
    end)
  end)

  describe("with git", function()
    it("a checkout of one file", function()
      row(function(dir) git(dir, "checkout -q -- f.txt") end, "f.txt", function(dir)
        git(dir, "init -q && git add -A && git commit -qm one")
        sh(dir, "printf 'two\\n' > f.txt")
      end)
    end)

    it("a checkout of a branch touching 500 files: one restart once it is over", function()
      local proc, marker, dir, starts = project({ ["src/a.c"] = "int a;\n" }, function(dir)
        git(dir, "init -q && git add -A && git commit -qm base && git checkout -qb many")
        sh(dir, "mkdir -p src/many && for i in $(seq 1 500); do echo $i > src/many/$i.c; done")
        git(dir, "add -A && git commit -qm many && git checkout -q -")
      end)
      local ok, err = pcall(function()
        git(dir, "checkout -q many")
        helpers.retry(30000, function()
          return #starts() >= 2, "a start for the checkout"
        end)
        local line = starts()[2]
        local _, n = line:gsub("src/many/%d+%.c", "")
        assert.are.equal(100, n, "RELOAD_CHANGED lists the first 100 of the 500 files: " .. line)
        judge(proc, dir, starts, function() end, nil)
      end)
      stop(proc, marker)
      if not ok then error(err, 0) end
    end)
  end)
end)
