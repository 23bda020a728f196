--- Where a restart's time goes: reload (--debounce 0 and default) and the minimal restarter
--- (bench/fixture/restarter.c), on the server shape, step by step, from a trace of the
--- kernel's scheduler and system-call tracepoints. bench/breakdown runs it under `perf record`
--- (the `drive` half) and then reads `perf script` (the `analyze` half). Not part of the test
--- suite.
---
---   lua5.4 bench/breakdown.lua drive OUTDIR N      changes N times each session, in turn
---   lua5.4 bench/breakdown.lua analyze OUTDIR      reads OUTDIR/trace.txt, prints markdown
---
--- drive writes OUTDIR/marks (one line per change: session, generation, the instant of the
--- write in ns of CLOCK_MONOTONIC) and OUTDIR/sessions (name, the tool's pid, its stamp file);
--- perf records with -k CLOCK_MONOTONIC, so the trace, the marks and the server's stamps share
--- one clock.
local uv = require("luv")

local here = debug.getinfo(1, "S").source:sub(2):match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
local lib = require("lib")

local root = uv.fs_realpath(here .. "/..")
local build = os.getenv("RELOAD_BUILD_DIR") or (root .. "/build")
local reload = build .. "/bin/reload"
local server = build .. "/bench/server"
local restarter = build .. "/bench/restarter"

local mode, outdir = arg[1], arg[2]
local modes = { drive = true, callgrind = true, luaprof = true, hooked = true, analyze = true }
if not modes[mode] or not outdir then
  error("usage: lua5.4 bench/breakdown.lua drive|callgrind|luaprof OUTDIR N | analyze OUTDIR [N]")
end

--- Inside reload (`reload script bench/breakdown.lua hooked OUTDIR N -- run ARGS...`): runs
--- `reload run ARGS` with a count hook that samples, every 100 Lua VM instructions, the
--- function running; writes OUTDIR/prof-N.txt ("count<TAB>source:line") once it quits.
if mode == "hooked" then
  local counts = {}
  debug.sethook(function()
    local info = debug.getinfo(2, "S")
    if info then
      local key = info.short_src .. ":" .. info.linedefined
      counts[key] = (counts[key] or 0) + 1
    end
  end, "", 100)
  local args, i = {}, 1
  while arg[i] ~= "--" do i = i + 1 end
  for j = i + 1, #arg do args[#args + 1] = arg[j] end
  require("reload.cli").main(args)
  debug.sethook()
  local f = assert(io.open(("%s/prof-%s.txt"):format(outdir, arg[3]), "w"))
  for key, n in pairs(counts) do f:write(("%d\t%s\n"):format(n, key)) end
  f:close()
  return
end

--- Stamp lines of the fixture: { gen, pid, start_ns, listen_ns }.
local function stamps(path)
  local out = {}
  for line in (lib.read(path) or ""):gmatch("[^\n]+") do
    local gen, pid, s, l = line:match("^(%-?%d+) (%d+) (%d+) (%d+)")
    if gen then
      out[#out + 1] = { gen = tonumber(gen), pid = tonumber(pid), start = tonumber(s),
        listen = tonumber(l) }
    end
  end
  return out
end

-- drive ------------------------------------------------------------------------------------

local function drive(n)
  local sessions = {
    { name = "reload --debounce 0", argv = function(cmd)
      return { reload, "run", "--debounce", "0", "-w", "src/gen.txt", "--", table.unpack(cmd) }
    end },
    { name = "reload", argv = function(cmd)
      return { reload, "run", "-w", "src/gen.txt", "--", table.unpack(cmd) }
    end },
    { name = "restarter", argv = function(cmd)
      return { restarter, "src/gen.txt", "--", table.unpack(cmd) }
    end },
  }
  local marker = ("BENCH_MARK=%d-%d"):format(uv.os_getpid(), uv.hrtime())
  local env = lib.env_with(marker)
  for _, s in ipairs(sessions) do
    s.dir = assert(uv.fs_mkdtemp("/tmp/reload-breakdown-XXXXXX"))
    assert(uv.fs_mkdir(s.dir .. "/src", 448))
    lib.write(s.dir .. "/src/gen.txt", "0\n")
    s.stampfile = s.dir .. "/stamps"
    lib.write(s.stampfile, "")
    local argv = s.argv({ server, tostring(lib.free_port()), s.stampfile, "--gen-file",
      "src/gen.txt" })
    local log = assert(uv.fs_open(s.dir .. "/tool.log", "w", 420))
    s.handle, s.pid = uv.spawn(argv[1], { args = { table.unpack(argv, 2) }, cwd = s.dir,
      env = env, stdio = { nil, log, log }, detached = true }, function() end)
    uv.fs_close(log)
    assert(s.handle, s.pid)
  end
  for _, s in ipairs(sessions) do
    assert(lib.wait(20000, function() return #stamps(s.stampfile) > 0 end, 2), s.name)
  end
  lib.wait(500)
  local marks = assert(io.open(outdir .. "/marks", "w"))
  for gen = 1, n do
    for k = 0, #sessions - 1 do
      local s = sessions[(gen + k - 1) % #sessions + 1]
      local t0 = uv.hrtime()
      lib.write(s.dir .. "/src/gen.txt", gen .. "\n")
      lib.wait_file(s.stampfile, 3000, function()
        for _, st in ipairs(stamps(s.stampfile)) do
          if st.gen == gen then return true end
        end
        return false
      end)
      marks:write(("%s\t%d\t%d\n"):format(s.name, gen, t0))
      lib.wait(200, nil, 10)
    end
  end
  marks:close()
  for _, s in ipairs(sessions) do
    pcall(uv.kill, -s.pid, "sigterm")
  end
  lib.wait(3000, function()
    for _, s in ipairs(sessions) do
      if uv.kill(s.pid, 0) then return false end
    end
    return true
  end, 10)
  for _, p in ipairs(lib.marked(marker)) do uv.kill(p.pid, "sigkill") end
  local f = assert(io.open(outdir .. "/sessions", "w"))
  for _, s in ipairs(sessions) do
    local copy = ("%s/stamps-%s"):format(outdir, s.name:gsub("%W", ""))
    os.execute(("cp %s %s"):format(lib.q(s.stampfile), lib.q(copy)))
    f:write(("%s\t%d\t%s\n"):format(s.name, s.pid, copy))
    s.handle:close()
    os.execute("rm -rf " .. lib.q(s.dir))
  end
  f:close()
  uv.run("nowait")
end

--- reload --debounce 0 under callgrind (its keepers and commands run natively), n changes,
--- then a clean quit: OUTDIR/cg-N.out. Two runs, 0 and N changes, give the instructions of one
--- restart by difference (start-up and quit cancel out).
local function callgrind(n, how)
  local dir = assert(uv.fs_mkdtemp("/tmp/reload-callgrind-XXXXXX"))
  assert(uv.fs_mkdir(dir .. "/src", 448))
  lib.write(dir .. "/src/gen.txt", "0\n")
  local stampfile = dir .. "/stamps"
  lib.write(stampfile, "")
  local marker = ("BENCH_MARK=%d-%d"):format(uv.os_getpid(), uv.hrtime())
  local argv = { "run", "--debounce", "0", "-w", "src/gen.txt", "--", server,
    tostring(lib.free_port()), stampfile, "--gen-file", "src/gen.txt" }
  if how == "luaprof" then
    argv = { reload, "script", root .. "/bench/breakdown.lua", "hooked", outdir, tostring(n), "--",
      table.unpack(argv) }
  else
    argv = { "valgrind", "--tool=callgrind", "--callgrind-out-file=" .. outdir .. "/cg-" .. n
      .. ".out", reload, table.unpack(argv) }
  end
  local log = assert(uv.fs_open(dir .. "/tool.log", "w", 420))
  local exited = false
  local handle, pid = uv.spawn(argv[1], { args = { table.unpack(argv, 2) }, cwd = dir,
    env = lib.env_with(marker), stdio = { nil, log, log } }, function() exited = true end)
  uv.fs_close(log)
  assert(handle, pid)
  assert(lib.wait(60000, function() return #stamps(stampfile) > 0 end, 20), "callgrind start")
  lib.wait(1000, nil, 50)
  for gen = 1, n do
    lib.write(dir .. "/src/gen.txt", gen .. "\n")
    lib.wait_file(stampfile, 10000, function()
      for _, st in ipairs(stamps(stampfile)) do
        if st.gen == gen then return true end
      end
      return false
    end)
    lib.wait(500, nil, 50) -- and the next spare keeper, 50 ms after the start
  end
  uv.kill(pid, "sigterm")
  lib.wait(60000, function() return exited end, 50)
  for _, p in ipairs(lib.marked(marker)) do uv.kill(p.pid, "sigkill") end
  handle:close()
  uv.run("nowait")
  os.execute("rm -rf " .. lib.q(dir))
end

if mode == "drive" then
  drive(tonumber(arg[3]) or 20)
  return
elseif mode == "callgrind" or mode == "luaprof" then
  callgrind(tonumber(arg[3]) or 20, mode)
  return
end

-- analyze ----------------------------------------------------------------------------------

-- x86_64 system call numbers of the calls the steps are found by, and of the common ones.
local NR = { read = 0, write = 1, close = 3, poll = 7, kill = 62, wait4 = 61, sendto = 44,
  clone = 56, clone3 = 435, epoll_wait = 232, execve = 59, openat = 257 }
local NAMES = { [0] = "read", "write", "open", "close", "stat", "fstat", "lstat", "poll",
  [13] = "rt_sigaction", [14] = "rt_sigprocmask", [15] = "rt_sigreturn", [44] = "sendto",
  [45] = "recvfrom", [56] = "clone", [59] = "execve", [61] = "wait4", [62] = "kill",
  [109] = "setpgid", [110] = "getppid", [121] = "getpgid", [157] = "prctl", [217] = "getdents64",
  [228] = "clock_gettime", [231] = "exit_group", [232] = "epoll_wait", [233] = "epoll_ctl",
  [257] = "openat", [262] = "newfstatat", [293] = "pipe2", [332] = "statx", [435] = "clone3",
  [436] = "close_range" }

--- The trace, indexed: per tid its system calls ({ t, enter, nr, ret }), wake-ups by waker
--- tid ({ t, target }), the instants it was switched out asleep ({ t }: it blocked) and in
--- ({ t }), and per pid its parent, exec and exit instants. Times in ns.
local function load_trace(path)
  local tr = { sys = {}, wakes = {}, parent = {}, exec = {}, exit = {}, slept = {}, ran = {} }
  for line in io.lines(path) do
    local pid, tid, sec, ns, event, rest =
      line:match(" (%d+)/(%d+) +%[%d+%] +(%d+)%.(%d+): +([%w_:]+): (.*)$")
    if pid then
      local t = tonumber(sec) * 1000000000 + tonumber(ns)
      tid = tonumber(tid)
      if event == "raw_syscalls:sys_enter" then
        local list = tr.sys[tid] or {}
        tr.sys[tid] = list
        list[#list + 1] = { t = t, enter = true, nr = tonumber(rest:match("NR (%-?%d+)")),
          args = rest:match("(%(.*%))") }
      elseif event == "raw_syscalls:sys_exit" then
        local list = tr.sys[tid] or {}
        tr.sys[tid] = list
        local nr, ret = rest:match("NR (%-?%d+) = (%-?%d+)")
        list[#list + 1] = { t = t, enter = false, nr = tonumber(nr), ret = tonumber(ret) }
      elseif event == "sched:sched_wakeup" or event == "sched:sched_wakeup_new" then
        local list = tr.wakes[tid] or {}
        tr.wakes[tid] = list
        list[#list + 1] = { t = t, target = tonumber(rest:match(" pid=(%d+)")) }
      elseif event == "sched:sched_switch" then
        local prev, state, nxt =
          rest:match("prev_pid=(%d+) .-prev_state=(%S+) ==> .-next_pid=(%d+)")
        if prev then
          prev, nxt = tonumber(prev), tonumber(nxt)
          if state:sub(1, 1) == "S" then
            tr.slept[prev] = tr.slept[prev] or {}
            table.insert(tr.slept[prev], { t = t })
          end
          tr.ran[nxt] = tr.ran[nxt] or {}
          table.insert(tr.ran[nxt], { t = t })
        end
      elseif event == "sched:sched_process_fork" then
        tr.parent[tonumber(rest:match("child_pid=(%d+)"))] = tonumber(pid)
      elseif event == "sched:sched_process_exec" then
        tr.exec[tonumber(pid)] = { t = t, file = rest:match("filename=(%S+)") }
      elseif event == "sched:sched_process_exit" then
        tr.exit[tonumber(rest:match(" pid=(%d+)"))] = t
      end
    end
  end
  return tr
end

--- The first item of list after instant t (and before `before`, if given) for which ok(item).
local function first(list, t, ok, before)
  if not list or not t then return nil end
  local lo, hi = 1, #list + 1
  while lo < hi do
    local mid = (lo + hi) // 2
    if list[mid].t <= t then lo = mid + 1 else hi = mid end
  end
  for i = lo, #list do
    local e = list[i]
    if before and e.t > before then return nil end
    if ok(e) then return e end
  end
  return nil
end

local function count(list, from, to, ok)
  local n = 0
  for _, e in ipairs(list or {}) do
    if e.t >= from and e.t <= to and ok(e) then n = n + 1 end
  end
  return n
end

local function is_exit(nr) return function(e) return not e.enter and e.nr == nr end end
local function is_enter(nr) return function(e) return e.enter and e.nr == nr end end

--- The last item of list in (from, to) for which ok(item).
local function last(list, from, to, ok)
  local found
  for _, e in ipairs(list or {}) do
    if e.t > to then break end
    if e.t > from and ok(e) then found = e end
  end
  return found
end

--- The instants of one restart (ns; nil where the trace does not show them), the system calls
--- of each process on the way. `tool` is the tool's pid; old and new
--- the stamps of the previous and the new generation.
local function instants(tr, tool, mark, old, new, reloadish)
  local R, t0, stop = tool, mark.t0, new.start
  local So, Sn = old.pid, new.pid
  local Ko = reloadish and tr.parent[So] or R
  local Kn = reloadish and tr.parent[Sn] or R
  local x = { A = t0, L = new.start, M = new.listen }
  local function at(e) return e and e.t end
  if reloadish then
    -- reload signals the old group itself ("termed"), then tells the old keeper
    x.D = at(first(tr.sys[R], t0, is_enter(NR.kill), stop))
    x.B = at(last(tr.sys[R], t0, x.D or stop, is_exit(NR.epoll_wait)))
  else
    x.D = at(first(tr.sys[R], t0, is_enter(NR.kill), stop))
    x.B = at(last(tr.sys[R], t0, x.D or stop, is_exit(NR.read)))
  end
  x.E = tr.exit[So]
  -- after its kill(): when the tool blocks again, and when the old server first gets a CPU
  local any = function() return true end
  x.D_asleep = at(first(tr.slept[R], x.D, any, stop))
  x.D_ran = at(first(tr.ran[So], x.D, any, stop))
  x.F = at(first(tr.sys[Ko], x.D, function(e)
    return not e.enter and e.nr == NR.wait4 and e.ret == So
  end, stop))
  if reloadish then
    -- the old keeper opens its gate (one write) once waitpid says ECHILD; the spare keeper,
    -- primed with the command, wakes up on it (or on reload's "go", if that came first)
    local echild = first(tr.sys[Ko], x.F, function(e)
      return not e.enter and e.nr == NR.wait4 and e.ret == -10
    end, stop)
    x.G = at(echild and first(tr.sys[Ko], echild.t, is_enter(NR.write), stop))
    local function woke(e) return e.target == Kn end
    local by_gate = first(tr.wakes[Ko], x.G, woke, stop)
    local by_go = first(tr.wakes[R], x.G, woke, stop)
    local h = by_gate and (not by_go or by_gate.t <= by_go.t) and by_gate or by_go
    x.H = at(h)
    x.by_gate = h ~= nil and h == by_gate
    x.H1 = at(first(tr.sys[Kn], x.H, is_exit(NR.poll), stop))
  end
  x.I = at(first(tr.sys[Kn], reloadish and x.H1 or x.F, function(e)
    return e.enter and (e.nr == NR.clone or e.nr == NR.clone3)
  end, stop))
  x.J = at(first(tr.sys[Kn], x.I, function(e)
    return not e.enter and (e.nr == NR.clone or e.nr == NR.clone3) and e.ret ~= 0
  end, stop))
  x.K = tr.exec[Sn] and tr.exec[Sn].t
  -- system calls on the way (A → M), per process, and reload's by name
  local function calls(pid)
    local n = 0
    for _, e in ipairs(tr.sys[pid] or {}) do
      if e.enter and e.t >= t0 and e.t <= new.listen then n = n + 1 end
    end
    return n
  end
  x.calls = { tool = calls(R), old = reloadish and calls(Ko), new = reloadish and calls(Kn),
    child = count(tr.sys[Sn], t0, x.K or stop, function(e) return e.enter end) }
  x.by_name = {}
  for _, e in ipairs(tr.sys[R] or {}) do
    if e.enter and e.t >= t0 and e.t <= new.listen then
      local name = NAMES[e.nr] or ("nr" .. e.nr)
      x.by_name[name] = (x.by_name[name] or 0) + 1
    end
  end
  -- reload woken while the old keeper tears the tree down ("stopping", "main-exit")
  x.wakes_teardown = reloadish and x.D and x.G
    and count(tr.sys[R], x.D, x.G, is_exit(NR.epoll_wait)) or nil
  -- after the start: the spare keeper reload spawns for the next run (uv_spawn: fork, then a
  -- blocking read until the child's exec), off this restart's path
  if reloadish then
    local c = first(tr.sys[R], new.listen, is_enter(NR.clone), new.listen + 190e6)
    local cx = c and first(tr.sys[R], c.t, is_exit(NR.clone))
    if cx and cx.ret and cx.ret > 0 and tr.exec[cx.ret] then
      local back = first(tr.sys[R], tr.exec[cx.ret].t, is_exit(NR.read))
      x.spare_fork = cx.t - c.t
      x.spare_blocked = back and back.t - c.t
    end
  end
  return x
end

local function analyze()
  local sessions, marks = {}, {}
  for line in io.lines(outdir .. "/sessions") do
    local name, pid, file = line:match("^(.-)\t(%d+)\t(.*)$")
    local by_gen = {}
    for _, st in ipairs(stamps(file)) do by_gen[st.gen] = st end
    sessions[name] = { pid = tonumber(pid), stamps = by_gen }
  end
  for line in io.lines(outdir .. "/marks") do
    local name, gen, t0 = line:match("^(.-)\t(%d+)\t(%d+)$")
    marks[#marks + 1] = { name = name, gen = tonumber(gen), t0 = tonumber(t0) }
  end
  local tr = load_trace(outdir .. "/trace.txt")
  local rows = {}
  for _, m in ipairs(marks) do
    local s = sessions[m.name]
    local old, new = s.stamps[m.gen - 1], s.stamps[m.gen]
    if old and new then
      local list = rows[m.name] or {}
      rows[m.name] = list
      list[#list + 1] = instants(tr, s.pid, m, old, new, m.name ~= "restarter")
    end
  end
  return rows
end

--- The steps of a restart, from one instant to the next (reload's own sub-steps indented).
local steps = {
  { "A", "B", "notice: the write (open, write, close) → the tool runs" },
  { "B", "D", "decide: → kill() of the old server (reload's own, then \"termed\" to the keeper)" },
  { "D", "E", "die: kill() → the old server has exited" },
  { "E", "F", "reap: its exit → waitpid() returns it" },
  { "F", "I", "relay: reaped → fork/clone of the new command" },
  { "F", "G", "· old keeper: waitpid → ECHILD, opens its gate", only = true },
  { "G", "H", "· → the primed spare keeper is woken (by the gate, or by reload's go)",
    only = true },
  { "H", "H1", "· spare keeper: woken → running (scheduling)", only = true },
  { "H1", "I", "· spare keeper: reads the gate, calls clone()", only = true },
  { "I", "K", "spawn: fork/clone → the new server's execve done" },
  { "I", "J", "· clone() in the keeper until it returns (CLONE_VFORK: after the exec)",
    only = true },
  { "J", "K", "· then to the execve's end (negative: the keeper resumed after it)",
    only = true },
  { "K", "L", "load: execve → main() (dynamic loading)" },
  { "L", "M", "listen: main() → listen() returned" },
  { "A", "M", "**total: the write → answering**" },
}

local function q(xs, p) return lib.pct(xs, p) end

local function report()
  if not uv.fs_stat(outdir .. "/trace.txt") then
    print("\n## 8. Where a restart's time goes (bench/breakdown)\n")
    print("No timeline: `perf record` of the kernel's tracepoints is not available here (it "
      .. "needs root or kernel.perf_event_paranoid ≤ -1, and tracefs).")
    return
  end
  local rows = analyze()
  local order = { "reload --debounce 0", "reload", "restarter" }
  local n = rows.restarter and #rows.restarter or 0
  print(("\n## 8. Where a restart's time goes (bench/breakdown: perf sched and syscall "
    .. "tracepoints, %d changes per tool, server shape)\n"):format(n))
  print("Each change is cut at instants the kernel's trace shows: the bench's write (A), the "
    .. "tool's wake-up (B), the kill() of the old server (D), its exit (E), its reaping (F), the "
    .. "fork/clone of the new one (I), its exec (K), then the server's own stamps: main() (L) "
    .. "and listen() (M). The floor is bench/fixture/restarter.c. Median (p10–p90) in µs; "
    .. "*extra* = reload --debounce 0 minus the floor, at the median. Under perf every "
    .. "system call costs a little more and every fork much more (perf copies its events to "
    .. "the child: ~0.3 ms here), for reload and the floor alike; compare the totals with "
    .. "section 1b.\n")
  print("| step | reload --debounce 0 | reload | floor (restarter) | extra (--debounce 0) |")
  print("|---|---|---|---|---|")
  local function span(list, a, b)
    local xs = {}
    for _, x in ipairs(list or {}) do
      if x[a] and x[b] then xs[#xs + 1] = (x[b] - x[a]) / 1000 end
    end
    return xs
  end
  local function fig(xs)
    if #xs == 0 then return "-" end
    return ("%.0f (%.0f–%.0f)"):format(q(xs, 50), q(xs, 10), q(xs, 90))
  end
  for _, st in ipairs(steps) do
    local a, b, label = st[1], st[2], st[3]
    local cells = {}
    for i, name in ipairs(order) do
      cells[i] = (st.only and name == "restarter") and "" or fig(span(rows[name], a, b))
    end
    local d0, fl = span(rows[order[1]], a, b), span(rows.restarter, a, b)
    local extra = (not st.only and #d0 > 0 and #fl > 0)
      and ("%+.0f"):format(q(d0, 50) - q(fl, 50)) or ""
    print(("| %s | %s | %s | %s | %s |"):format(label, cells[1], cells[2], cells[3], extra))
  end
  -- per process: system calls and CPU
  print("\n| on the way (A → M), median per change | reload --debounce 0 | reload | floor |")
  print("|---|---|---|---|")
  local function med(list, fn)
    local xs = {}
    for _, x in ipairs(list or {}) do
      local v = fn(x)
      if v then xs[#xs + 1] = v end
    end
    return #xs > 0 and q(xs, 50) or nil
  end
  local lines = {
    { "system calls by the tool (reload / restarter)", function(x) return x.calls.tool end },
    { "system calls by the old keeper", function(x) return x.calls.old or nil end },
    { "system calls by the spare keeper", function(x) return x.calls.new or nil end },
    { "system calls by the new command's child before exec", function(x)
      return x.calls.child end },
    { "after the kill: the tool runs on until it blocks (µs)", function(x)
      return x.D and x.D_asleep and (x.D_asleep - x.D) / 1000 end },
    { "after the kill: the old server gets a CPU (µs)", function(x)
      return x.D and x.D_ran and (x.D_ran - x.D) / 1000 end },
    { "restarts where the old server got a CPU only once the tool blocked (%)", function(x)
      return x.D_ran and x.D_asleep and (x.D_ran >= x.D_asleep and 100 or 0) or nil end,
      mean = true },
    { "times reload is woken between the kill and the gate (by \"stopping\", "
      .. "\"main-exit\")", function(x) return x.wakes_teardown end },
    { "restarts whose command the gate started (%, rather than reload's go)", function(x)
      return x.H and (x.by_gate and 100 or 0) or nil end, mean = true },
    { "after the start: reload's fork() of the next spare keeper (µs)", function(x)
      return x.spare_fork and x.spare_fork / 1000 end },
    { "after the start: reload's loop blocked in uv_spawn until that keeper's exec (µs)",
      function(x) return x.spare_blocked and x.spare_blocked / 1000 end },
  }
  local function mean(list, fn)
    local sum, k = 0, 0
    for _, x in ipairs(list or {}) do
      local v = fn(x)
      if v then sum, k = sum + v, k + 1 end
    end
    return k > 0 and sum / k or nil
  end
  for _, l in ipairs(lines) do
    local cells = {}
    for i, name in ipairs(order) do
      local v = (l.mean and mean or med)(rows[name], l[2])
      cells[i] = v and ("%.0f"):format(v) or "-"
    end
    print(("| %s | %s | %s | %s |"):format(l[1], cells[1], cells[2], cells[3]))
  end
  -- which system calls reload makes on the way, by name
  local names, tally = {}, {}
  for _, x in ipairs(rows[order[1]] or {}) do
    for name, k in pairs(x.by_name) do
      if not tally[name] then names[#names + 1] = name end
      tally[name] = (tally[name] or 0) + k
    end
  end
  table.sort(names, function(a, b) return tally[a] > tally[b] end)
  local parts = {}
  for _, name in ipairs(names) do
    parts[#parts + 1] = ("%s %.1f"):format(name, tally[name] / #rows[order[1]])
  end
  print(("\nreload --debounce 0's system calls per change, A → M: %s.")
    :format(table.concat(parts, ", ")))
end

report()

-- callgrind: the instructions of one restart, by difference of a run with N changes and one
-- with none

--- Per function (exclusive or inclusive) Ir of a callgrind output, and the total.
local function annotate(file, inclusive)
  local p = io.popen(("callgrind_annotate --auto=no --threshold=100 --inclusive=%s %s 2>/dev/null")
    :format(inclusive and "yes" or "no", lib.q(file)))
  local fns, total = {}, nil
  for line in p:lines() do
    local ir, rest = line:match("^%s*([%d,]+) %(%s*[%d.]+%%%)%s+(.*)$")
    if ir then
      ir = tonumber((ir:gsub(",", "")))
      if rest == "PROGRAM TOTALS" then
        total = ir
      else
        fns[rest] = (fns[rest] or 0) + ir
      end
    end
  end
  p:close()
  return fns, total
end

local function callgrind_report(n)
  local f0, fn = outdir .. "/cg-0.out", ("%s/cg-%d.out"):format(outdir, n)
  if not (uv.fs_stat(f0) and uv.fs_stat(fn)) then return end
  local ex0, t0 = annotate(f0, false)
  local exn, tn = annotate(fn, false)
  local in0 = annotate(f0, true)
  local inn = annotate(fn, true)
  if not (t0 and tn) then return end
  local per = (tn - t0) / n
  print(("\nreload --debounce 0 under callgrind (its keepers and the server run natively): "
    .. "%.2f M instructions per restart, the next spare keeper's spawn included (%d "
    .. "restarts: %.1f M; none: %.1f M, start-up and quit).\n"):format(per / 1e6, n, tn / 1e6,
    t0 / 1e6))
  -- exclusive, by object
  local function by_object(fns)
    local out = {}
    for name, ir in pairs(fns) do
      local obj = name:match("%[(.-)%]%s*$") or "?"
      obj = obj:match("([^/]+)$")
      out[obj] = (out[obj] or 0) + ir
    end
    return out
  end
  local o0, on = by_object(ex0), by_object(exn)
  local objs = {}
  for obj, ir in pairs(on) do objs[#objs + 1] = { obj, (ir - (o0[obj] or 0)) / n } end
  table.sort(objs, function(a, b) return a[2] > b[2] end)
  print("| per restart, by library (exclusive; the two runs' start-ups differ a little, so "
    .. "the rows need not add up) | instructions |")
  print("|---|---|")
  for _, o in ipairs(objs) do
    if math.abs(o[2]) >= per * 0.01 then
      print(("| %s | %.0f k |"):format(o[1], o[2] / 1e3))
    end
  end
  -- inclusive, by the entry points of one restart
  local entries = {
    { "rl_watch_poll_cb", "inotify events read, to Lua (debouncer)" },
    { "rl_ctl_read", "keepers' lines read, to Lua (stopping, main-exit, tree-empty → launch → "
      .. "go; started)" },
    { "rl_proc_go", "the command sent to the spare keeper (of which)" },
    { "rl_proc_spawn", "the next spare keeper spawned (uv_spawn and its options)" },
    { "rl_proc_stop", "the stop request" },
    { "realloc", "realloc (Lua's allocator), all callers" },
  }
  print("\n| per restart, by entry point (inclusive) | instructions |")
  print("|---|---|")
  for _, e in ipairs(entries) do
    local function find(fns)
      local best = 0
      for name, ir in pairs(fns) do
        if name:match("[:%s]" .. e[1] .. "[%s%.]") or name:match(":" .. e[1] .. "$")
          or name:match(":" .. e[1] .. " %[") then
          best = math.max(best, ir)
        end
      end
      return best
    end
    local d = (find(inn) - find(in0)) / n
    print(("| `%s`: %s | %.0f k |"):format(e[1], e[2], d / 1e3))
  end
end

--- Lua functions by VM instructions per restart (count-hook samples of a run with N changes
--- minus one with none).
local function luaprof_report(n)
  local function load(file)
    local out = {}
    for line in io.lines(file) do
      local k, key = line:match("^(%d+)\t(.*)$")
      if k then out[key] = tonumber(k) end
    end
    return out
  end
  local f0, fn = outdir .. "/prof-0.txt", ("%s/prof-%d.txt"):format(outdir, n)
  if not (uv.fs_stat(f0) and uv.fs_stat(fn)) then return end
  local p0, pn = load(f0), load(fn)
  local list, total = {}, 0
  for key, k in pairs(pn) do
    local d = (k - (p0[key] or 0)) * 100 / n
    if d > 0 then
      list[#list + 1] = { key, d }
      total = total + d
    end
  end
  table.sort(list, function(a, b) return a[2] > b[2] end)
  print(("\nreload's Lua per restart (a count hook sampling every 100 VM instructions, run in "
    .. "reload itself: `reload script bench/breakdown.lua hooked`): about %.0f k VM "
    .. "instructions; the functions that run most:\n"):format(total / 1e3))
  print("| Lua function (file:line defined) | VM instructions per restart | share |")
  print("|---|---|---|")
  for i = 1, math.min(15, #list) do
    local key = list[i][1]:gsub("^.*/lua/", "lua/")
    -- the line that defines it, for a reader without the source at hand
    local file, line = key:match("^(.*):(%d+)$")
    local text = ""
    if file and uv.fs_stat(root .. "/" .. file) then
      local k = 0
      for l in io.lines(root .. "/" .. file) do
        k = k + 1
        if k == tonumber(line) then text = l:gsub("^%s+", ""):gsub("|", "\\|") break end
      end
    end
    print(("| %s `%s` | %.1f k | %.0f%% |"):format(key, text, list[i][2] / 1e3,
      100 * list[i][2] / total))
  end
end

callgrind_report(tonumber(arg[3]) or 20)
luaprof_report(tonumber(arg[3]) or 20)
