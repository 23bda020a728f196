--- Restarts per save: every way editors and tools write a file (the rows of
--- spec/functional/save_spec.lua), and how many restarts each tool makes of it. One save should
--- be one restart; a build writing into an ignored directory, or a file opened in vim and
--- closed unsaved, none. Not part of the test suite; run by bench/run.
---
---   lua5.4 bench/saves.lua [--quick] [--reps N] [--only TOOL]
---
--- For each tool and way of saving: a fresh project (f.txt, src/a.c, src/ready.c; a git
--- repository for the git rows), the tool started on it with a command that appends a line to
--- a log outside the project, then N times: a ready check (src/ready.c rewritten, until a
--- restart shows the tool sees changes; not counted), a quiet spell, the save, and the restarts
--- counted until the tool has been quiet for a while. vim is typed in a tmux of its own, as in
--- save_spec.lua. Prints markdown.
local uv = require("luv")

local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local lib = require("lib")

local quick, reps, only = false, nil, nil
do
  local i = 1
  while arg[i] do
    if arg[i] == "--quick" then quick = true
    elseif arg[i] == "--reps" then i = i + 1; reps = tonumber(arg[i])
    elseif arg[i] == "--only" then i = i + 1; only = arg[i]
    else error("usage: lua5.4 bench/saves.lua [--quick] [--reps N] [--only TOOL]") end
    i = i + 1
  end
end
reps = reps or (quick and 1 or 2)

local root = uv.fs_realpath(here .. "/..")
local build = os.getenv("RELOAD_BUILD_DIR") or (root .. "/build")
local reload = build .. "/bin/reload"
local nodemon = root .. "/bench/.peers/node_modules/.bin/nodemon"

-- The command every tool runs: one line per start, in a log outside the watched project.
local CMD = "echo start >> ../starts.log; exec sleep 100000"

--- Each tool watches *.txt and src/, not out/, the way its users would say so. (Not tmp/, as
--- save_spec.lua has it: nodemon matches an ignore pattern anywhere in the absolute path, and
--- the projects live under /tmp.)
local tools = {
  { name = "reload", needs = reload, argv = function()
    return { reload, "run", "-w", "*.txt", "-w", "src/**", "-i", "out/", "--", "sh", "-c", CMD }
  end },
  { name = "reload --debounce 0", needs = reload, argv = function()
    return { reload, "run", "--debounce", "0", "-w", "*.txt", "-w", "src/**", "-i", "out/", "--",
      "sh", "-c", CMD }
  end },
  { name = "entr -r", needs = lib.which("entr"), peer = true, argv = function()
    return { "sh", "-c", "find . -type f \\( -name '*.txt' -o -path './src/*' \\) "
      .. "! -path './out/*' ! -path './.git/*' | exec entr -n -r sh -c " .. lib.q(CMD) }
  end },
  { name = "reflex -s", needs = lib.which("reflex"), peer = true, argv = function()
    return { "reflex", "-r", "\\.txt$|^src/", "-R", "^out/", "-s", "--", "sh", "-c", CMD }
  end },
  { name = "nodemon --delay 0", needs = uv.fs_access(nodemon, "X") and nodemon or nil,
    peer = true, argv = function()
      return { nodemon, "--delay", "0", "-w", ".", "-e", "txt,c", "-i", "out/", "--exec", CMD }
    end },
  { name = "inotifywait loop", needs = lib.which("inotifywait"), peer = true, argv = function()
    local loop = ("(%s) & p=$!; while inotifywait -r -qq -e close_write "
      .. "--exclude '^\\./(\\.git|out)(/|$)' .; do kill $p; wait $p; (%s) & p=$!; done")
      :format(CMD, CMD)
    return { "sh", "-c", loop }
  end },
}

local function sh(dir, cmd)
  local ok = os.execute(("cd %s && { %s; } >/dev/null 2>&1"):format(lib.q(dir), cmd))
  assert(ok, cmd)
end

local function git(dir, cmd)
  sh(dir, "git -c user.name=b -c user.email=b@b -c init.defaultBranch=main " .. cmd)
end

local have_vim = lib.which("vim") and lib.which("tmux")

--- vim on f.txt in a tmux of its own, typing keys; returns once vim has quit.
local function vim(dir, opts, keys)
  local socket = ("reload-bench-%d-%d"):format(uv.os_getpid(), uv.hrtime())
  local tmux = "tmux -L " .. socket
  os.execute(("%s new-session -d -x 80 -y 24 -c %s %s"):format(tmux, lib.q(dir),
    lib.q("vim -u NONE -N -i NONE " .. opts .. " f.txt")))
  -- vim has the file open once its swap file exists
  lib.wait(10000, function() return uv.fs_stat(dir .. "/.f.txt.swp") ~= nil end, 10)
  local words = {}
  for i, k in ipairs(keys) do words[i] = lib.q(k) end
  os.execute(("%s send-keys -t 0 %s"):format(tmux, table.concat(words, " ")))
  lib.wait(10000, function()
    return not os.execute(tmux .. " has-session >/dev/null 2>&1")
  end, 20)
  os.execute(tmux .. " kill-server >/dev/null 2>&1")
end

local VIM_EDIT = { "Go", "two", "Escape", ":wq", "Enter" }

---@class SavePattern
---@field name string
---@field expect integer restarts one save should make
---@field git? string "one" or "many": the project is a git repository
---@field needs_vim? boolean
---@field save fun(dir: string, i: integer)
local patterns = {
  { name = "in-place write (`>`)", expect = 1, save = function(dir, i)
    sh(dir, ("printf 'two %d\\n' > f.txt"):format(i))
  end },
  { name = "truncate, 100 ms pause, write, close (one fd)", expect = 1, save = function(dir, i)
    local f = assert(io.open(dir .. "/f.txt", "w"))
    f:write("first half ")
    f:flush()
    lib.wait(100)
    f:write(("second half %d\n"):format(i))
    f:close()
  end },
  { name = "temp file + rename", expect = 1, save = function(dir, i)
    local tmp = dir .. "/f.txt.tmp-" .. uv.hrtime()
    lib.write(tmp, ("two %d\n"):format(i))
    assert(os.rename(tmp, dir .. "/f.txt"))
  end },
  { name = "vim, default save (rename to backup, new file)", expect = 1, needs_vim = true,
    save = function(dir) vim(dir, "", VIM_EDIT) end },
  { name = "vim, `backupcopy=yes` (copy, rewrite in place)", expect = 1, needs_vim = true,
    save = function(dir) vim(dir, "-c 'set backup backupcopy=yes'", VIM_EDIT) end },
  { name = "emacs-style (lock, rename to backup, new file)", expect = 1, save = function(dir, i)
    sh(dir, ("ln -s user@host.1234:0 .#f.txt && mv f.txt f.txt~ && printf 'two %d\\n' > f.txt"
      .. " && rm .#f.txt"):format(i))
  end },
  { name = "`sed -i`", expect = 1, save = function(dir, i)
    sh(dir, ("sed -i 's/.*/two %d/' f.txt"):format(i))
  end },
  { name = "`cp` over it", expect = 1, save = function(dir, i)
    sh(dir, ("printf 'two %d\\n' > ../copy-src && cp ../copy-src f.txt"):format(i))
  end },
  { name = "`git checkout` of one file", expect = 1, git = "one", prepare = function(dir, i)
    sh(dir, ("printf 'dirty %d\\n' > f.txt"):format(i))
  end, save = function(dir)
    git(dir, "checkout -q -- f.txt")
  end },
  { name = "`git checkout` of a branch touching 500 files", expect = 1, git = "many",
    save = function(dir, i)
      git(dir, "checkout -q " .. (i % 2 == 1 and "many" or "main"))
    end },
  { name = "build output into an ignored dir (50 files in out/)", expect = 0,
    save = function(dir, i)
      sh(dir, ("mkdir -p out/obj && for i in $(seq 1 50); do echo %d > out/obj/$i.txt; done")
        :format(i))
    end },
  { name = "vim: open, quit without saving", expect = 0, needs_vim = true, save = function(dir)
    vim(dir, "", { ":q", "Enter" })
  end },
}

--- A fresh project for a pattern: base/p holds f.txt, src/a.c, src/ready.c (and, for the git
--- rows, a repository; "many": 500 files under src/many that branch `many` changes).
local function project(pat)
  local base = assert(uv.fs_mkdtemp("/tmp/reload-saves-XXXXXX"))
  local dir = base .. "/p"
  assert(uv.fs_mkdir(dir, 493))
  assert(uv.fs_mkdir(dir .. "/src", 493))
  lib.write(dir .. "/f.txt", "one\n")
  lib.write(dir .. "/src/a.c", "int a;\n")
  lib.write(dir .. "/src/ready.c", "int ready;\n")
  if pat.git then
    if pat.git == "many" then
      sh(dir, "mkdir -p src/many && for i in $(seq 1 500); do echo $i > src/many/$i.c; done")
    end
    git(dir, "init -q && git add -A && git commit -qm base")
    if pat.git == "many" then
      git(dir, "checkout -qb many")
      sh(dir, "for i in $(seq 1 500); do echo x$i > src/many/$i.c; done")
      git(dir, "commit -qam many && git checkout -q main")
    end
  end
  return base, dir
end

local function starts(base)
  local n = 0
  for _ in (lib.read(base .. "/starts.log") or ""):gmatch("[^\n]+") do n = n + 1 end
  return n
end

--- Waits at least min_ms, then until no start for quiet_ms (at most 15 s in all).
local function settle(base, min_ms, quiet_ms)
  local t0 = lib.now_ms()
  local n, last = starts(base), t0
  lib.wait(15000, function()
    local now = lib.now_ms()
    local m = starts(base)
    if m ~= n then n, last = m, now end
    return now - t0 >= min_ms and now - last >= quiet_ms
  end, 10)
  return n
end

--- One tool on one pattern: the restarts of each of the reps saves (nil: the tool was not
--- ready, see the why).
local function session(tool, pat)
  local base, dir = project(pat)
  local marker = ("BENCH_MARK=%d-%d"):format(uv.os_getpid(), uv.hrtime())
  local log = assert(uv.fs_open(base .. "/tool.log", "w", 420))
  local argv = tool.argv()
  local handle, pid = uv.spawn(argv[1], { args = { table.unpack(argv, 2) }, cwd = dir,
    env = lib.env_with(marker), stdio = { nil, log, log }, detached = true }, function() end)
  uv.fs_close(log)
  local counts, why = {}, nil
  if not handle then
    why = tostring(pid)
  elseif not lib.wait(20000, function() return starts(base) >= 1 end, 10) then
    why = "no first start"
  else
    settle(base, 300, 300)
    for i = 1, reps do
      -- the ready check: the tool sees a change (its restart is not counted)
      -- (rewritten after 0.5 s, then at growing intervals: a tool may not watch yet, as
      -- nodemon for a second or so, and one that waits for a quiet spell, as reflex, never
      -- fires under a steady stream of rewrites)
      local n, k, interval = starts(base), 0, 500
      if not lib.wait(12000, function()
        k = k + 1
        lib.write(dir .. "/src/ready.c", ("int ready%d_%d;\n"):format(i, k))
        local seen = lib.wait(interval, function() return starts(base) > n end, 5)
        interval = math.min(2000, interval * 1.5)
        return seen
      end, 1) then
        why = i == 1 and "ready check: no restart" or "no restart at all after it"
        break
      end
      if pat.prepare then pat.prepare(dir, i) end
      local before = settle(base, 300, 600)
      pat.save(dir, i)
      counts[i] = settle(base, 1000, 700) - before
    end
  end
  if handle then
    pcall(uv.kill, -pid, "sigterm")
    lib.wait(1500, function() return not uv.kill(pid, 0) end, 10)
    pcall(uv.kill, -pid, "sigkill")
    if not handle:is_closing() then handle:close() end
  end
  for _, p in ipairs(lib.marked(marker)) do uv.kill(p.pid, "sigkill") end
  lib.wait(50)
  os.execute("rm -rf " .. lib.q(base))
  return counts, why
end

local results = {}
local t_start = lib.now_ms()
for _, pat in ipairs(patterns) do
  results[pat] = {}
  for _, tool in ipairs(tools) do
    local cell
    if quick and tool.peer then
      cell = { why = "-" }
    elseif only and tool.name ~= only then
      cell = { why = "skipped" }
    elseif not tool.needs then
      cell = { why = "not installed" }
    elseif pat.needs_vim and not have_vim then
      cell = { why = "no vim/tmux" }
    else
      io.stderr:write(("saves: %s, %s\n"):format(tool.name, pat.name))
      local counts, why = session(tool, pat)
      cell = { counts = counts, why = why }
    end
    results[pat][tool] = cell
  end
end

--- "1" when every save gave the same count, else each count; bold when one is wrong.
local function show(cell, expect)
  if not cell.counts or #cell.counts == 0 then return cell.why or "-" end
  local same, wrong = true, false
  for _, c in ipairs(cell.counts) do
    same = same and c == cell.counts[1]
    wrong = wrong or c ~= expect
  end
  local s = same and tostring(cell.counts[1]) or table.concat(cell.counts, ", ")
  if cell.why then s = s .. " (" .. cell.why .. ")" end
  return wrong and "**" .. s .. "**" or s
end

print(("\n## 7. Restarts per save (%d save%s per cell, bench/saves.lua)\n"):format(reps,
  reps == 1 and "" or "s"))
print("How many times each tool restarted the command for one save, by the way the file was "
  .. "written (every row of spec/functional/save_spec.lua). Right: 1 for a save, 0 for the last "
  .. "two rows; **bold**: a wrong count (0 where 1 was due is a save the tool missed). A cell "
  .. "lists each save's count when they differ. Each tool watches `*.txt` and `src/`, and "
  .. "ignores `out/`, the way its users would say so (entr: the list of files that exist at its "
  .. "start; reflex: `-r '\\.txt$|^src/' -R '^out/'`; nodemon: `-e txt,c -i out/`; the loop: "
  .. "`inotifywait -r -e close_write --exclude out`).\n")
local head, rule = { "| way of saving | right" }, { "|---|---" }
for _, tool in ipairs(tools) do
  head[#head + 1] = tool.name
  rule[#rule + 1] = "---"
end
print(table.concat(head, " | ") .. " |")
print(table.concat(rule, "|") .. "|")
local right, total = {}, {}
for _, pat in ipairs(patterns) do
  local row = { "| " .. pat.name, tostring(pat.expect) }
  for _, tool in ipairs(tools) do
    local cell = results[pat][tool]
    row[#row + 1] = show(cell, pat.expect)
    for _, c in ipairs(cell.counts or {}) do
      total[tool] = (total[tool] or 0) + 1
      right[tool] = (right[tool] or 0) + (c == pat.expect and 1 or 0)
    end
  end
  print(table.concat(row, " | ") .. " |")
end
local row = { "| *saves counted right* |" }
for _, tool in ipairs(tools) do
  row[#row + 1] = total[tool] and ("%d of %d"):format(right[tool], total[tool]) or "-"
end
print(table.concat(row, " | ") .. " |")
print("\n| target (reload, default and --debounce 0) | |")
print("|---|---|")
for _, tool in ipairs(tools) do
  if not tool.peer and total[tool] then
    print(("| %s: every save one restart, none for the last two rows (%d of %d) | %s |"):format(
      tool.name, right[tool], total[tool], lib.yes(right[tool] == total[tool])))
  end
end
io.stderr:write(("saves: %.0f s\n"):format((lib.now_ms() - t_start) / 1000))
