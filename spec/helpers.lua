--- Test helpers shared by every spec: build paths, waiting on conditions, temporary
--- directories, processes, and the hygiene check that runs after each test.
---
--- Loaded twice: once by busted as the `helper` of .busted (that load puts the build tree on
--- package.cpath and installs the after_each hygiene check for the whole suite), and by each
--- spec file as `require("spec.helpers")`.
local uv = require("luv")
local pidscan = require("spec.support.pids")

local M = {}

M.root = uv.cwd()
--- This process's pid (luv gives it as a float).
M.pid = math.tointeger(uv.os_getpid())
M.build_dir = os.getenv("RELOAD_BUILD_DIR") or (M.root .. "/build")
M.reload_bin = M.build_dir .. "/bin/reload"
M.fixtures_dir = M.build_dir .. "/fixtures"
M.spec_fixtures = M.root .. "/spec/fixtures"

local cpath = M.build_dir .. "/lib/?.so"
if not package.cpath:find(cpath, 1, true) then
  package.cpath = cpath .. ";" .. package.cpath
end

-- The sanitized suite (scripts/test --sanitize) preloads ASan's runtime into busted: stock
-- lua5.4 loads an instrumented core.so. Of the processes a test starts, only stock lua5.4
-- loading the core needs it (reload and the keeper are linked with it; user commands are not
-- instrumented, and procps' ps and pgrep hang under it): no other process inherits it.
M.asan_preload = nil
do
  local preload = os.getenv("LD_PRELOAD")
  if preload and preload:find("libasan", 1, true) then
    M.asan_preload = preload
    uv.os_unsetenv("LD_PRELOAD")
  end
end

--- argv that runs stock lua5.4 (with the ASan runtime in the sanitized suite), then args.
---@param ... string
---@return string[]
function M.lua(...)
  local argv = M.asan_preload and { "env", "LD_PRELOAD=" .. M.asan_preload, "lua5.4" } or
    { "lua5.4" }
  for _, a in ipairs({ ... }) do
    argv[#argv + 1] = a
  end
  return argv
end

--- Path of a compiled fixture (spec/fixtures/NAME.c, built into build/fixtures/NAME).
---@param name string
---@return string
function M.fixture(name)
  return M.fixtures_dir .. "/" .. name
end

--- Milliseconds on a monotonic clock.
---@return number
function M.now_ms()
  return uv.hrtime() / 1e6
end

-- Waiting -----------------------------------------------------------------------------------

--- How much slower than a developer's machine this run may be (RELOAD_TEST_SLOWDOWN, set to 3
--- by scripts/test --sanitize): every wait's ceiling and every test's budget is multiplied by it.
--- A ceiling only matters when a test fails; passing tests wait for their condition, not for it.
M.slowdown = tonumber(os.getenv("RELOAD_TEST_SLOWDOWN") or "") or 1

--- Milliseconds between two checks of a condition while the loop runs.
local TICK_MS = 5

-- The per-test deadline (spec/support/watchdog.c, built into build/fixtures/watchdog.so).
local watchdog_path = M.fixtures_dir .. "/watchdog.so"
local watchdog = assert(package.loadlib(watchdog_path, "luaopen_watchdog"),
  "cannot load " .. watchdog_path .. " (scripts/build builds it)")()
local pumping = 0 -- > 0 while the loop runs inside M.pump
local budget = { ms = nil, started = nil }

local function over_budget_message()
  return ("watchdog: the test ran past its budget of %d s; processes at that moment:\n%s")
    :format(math.floor(budget.ms / 1000), M.process_tree())
end

--- Runs the loop until cond() is true or max_ms have passed; returns whether cond() became
--- true (without cond: runs for max_ms). The only way specs run the loop.
---
--- A repeating tick keeps a timer armed during every turn. libuv 1.44 (Debian 12) runs the timers
--- that are due *before* it polls, then computes the poll timeout from the timers left: when a
--- one-shot timer came due while Lua was busy between two turns (reading /proc, or any work on a
--- loaded machine or under ASan), it fired first and uv.run("once") then blocked in epoll_wait
--- with no timeout until unrelated I/O arrived. That hung a test for 13 minutes, and made
--- another's 5 s wait last until a 30 s sleep ended.
---@param max_ms number
---@param cond? fun(): any
---@return boolean met
function M.pump(max_ms, cond)
  uv.update_time()
  -- A ceiling (with cond) scales with the slowdown; a duration (without) does not.
  local deadline = M.now_ms() + max_ms * (cond and M.slowdown or 1)
  local tick = uv.new_timer()
  tick:start(TICK_MS, TICK_MS, function() end)
  pumping = pumping + 1
  local ok, met = pcall(function()
    while true do
      if cond and cond() then
        return true
      end
      if M.now_ms() >= deadline then
        return false
      end
      if watchdog.expired() then
        error(over_budget_message(), 0)
      end
      uv.run("once")
    end
  end)
  pumping = pumping - 1
  tick:close()
  uv.run("nowait")
  if not ok then
    error(met, 0)
  end
  return met
end

--- Runs the loop for ms milliseconds.
---@param ms number
function M.run_for(ms)
  M.pump(ms)
end

--- Calls fn until it neither raises nor returns false/nil, running the loop in between.
--- Fails after max_ms with the last thing fn raised or returned as its second value, so the
--- message says what *was* seen.
---@param max_ms number
---@param fn fun(): any, any
---@return any the first truthy result of fn
function M.retry(max_ms, fn)
  local result, last
  local met = M.pump(max_ms, function()
    local ok, res, why = pcall(fn)
    if ok and res ~= false and res ~= nil then
      result = res
      return true
    end
    last = ok and (why or tostring(res)) or res
    return false
  end)
  if not met then
    error(("retry: gave up after %d ms; last seen: %s"):format(max_ms * M.slowdown,
      tostring(last)), 2)
  end
  return result
end

--- Runs the loop until cond() is true, at most max_ms; raises with `what` and the wait if not.
---@param max_ms number
---@param cond fun(): boolean
---@param what string|fun(): string what was awaited (or a function that says what was seen)
function M.wait_until(max_ms, cond, what)
  if not M.pump(max_ms, cond) then
    local msg = type(what) == "function" and what() or what
    error(("timed out after %d ms waiting for %s"):format(max_ms * M.slowdown, tostring(msg)), 2)
  end
end

--- Gives the running test a budget of `seconds` (times the slowdown), counted from its start,
--- instead of the default. For the few tests that are long by nature (a debug build, 20 edits).
---@param seconds number
---@param grace_ms? integer after the budget, for a test blocked outside Lua (default 20 s)
function M.budget(seconds, grace_ms)
  local ms = math.floor(seconds * 1000 * M.slowdown)
  budget.ms = ms
  local left = ms - (M.now_ms() - budget.started)
  watchdog.arm(math.max(1, math.floor(left)), grace_ms or M.watchdog_grace_ms, function()
    -- Inside the loop (a callback) the pump raises on its way out of uv.run; raising here
    -- would go to luv, which exits the process on an error in a callback.
    if pumping == 0 then
      error(over_budget_message(), 0)
    end
  end)
end

--- Default budget of a test, in seconds (times the slowdown).
M.default_budget_s = 120
--- After the budget, how long a test blocked outside Lua gets before its children are killed.
M.watchdog_grace_ms = 20000

-- Temporary directories, removed after each test.
local tmpdirs = {}

--- A new empty directory under $TMPDIR, removed after the test.
---@return string
function M.tmpdir()
  local base = os.getenv("TMPDIR") or "/tmp"
  local dir = assert(uv.fs_mkdtemp(base .. "/reload-spec-XXXXXX"))
  dir = assert(uv.fs_realpath(dir))
  tmpdirs[#tmpdirs + 1] = dir
  return dir
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.shell_quote = shell_quote

--- Writes a file the way editors and careful tools do: a temporary file, then a rename.
---@param path string
---@param content string
function M.write_file(path, content)
  local tmp = path .. ".tmp-" .. tostring(uv.hrtime())
  local f = assert(io.open(tmp, "wb"))
  f:write(content)
  f:close()
  assert(os.rename(tmp, path))
end

--- The whole content of a file, or nil.
---@param path string
---@return string|nil
function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local s = f:read("a")
  f:close()
  return s
end

--- A unique marker (for environments of process trees under test).
---@return string
function M.unique(prefix)
  M._seq = (M._seq or 0) + 1
  return ("%s-%d-%d-%d"):format(prefix or "t", M.pid, M._seq, uv.hrtime() % 1000000007)
end

-- /proc ----------------------------------------------------------------------------------

--- A copy of reload (its executable, keeper and Lua sources) that other users can reach, for
--- the tests that run it as nobody: a checkout in a directory closed to others (a clone in
--- `mktemp -d` is 0700) cannot be run by them. Laid out as an install (bin/, lib/reload/,
--- share/reload/lua/), which the executable finds its Lua and keeper by; removed after the
--- test. Returns { bin, keeper }, or nil and why (the temporary directory is closed too).
---@return table|nil, string|nil
function M.install_for_others()
  local dir = M.tmpdir()
  assert(uv.fs_chmod(dir, tonumber("755", 8)))
  local closed = M.closed_to_others(dir)
  if closed then
    return nil, closed .. " cannot be searched by other users"
  end
  local lua_dir = dir .. "/share/reload/lua"
  for _, d in ipairs({ dir .. "/bin", dir .. "/lib", dir .. "/lib/reload", dir .. "/share",
    dir .. "/share/reload", lua_dir }) do
    assert(uv.fs_mkdir(d, tonumber("755", 8)))
  end
  local copies = {
    { "cp", M.reload_bin, dir .. "/bin/reload" },
    { "cp", M.build_dir .. "/lib/reload/reload-keeper", dir .. "/lib/reload/reload-keeper" },
    { "cp", "-R", M.root .. "/lua/reload", lua_dir .. "/reload" },
    { "chmod", "-R", "a+rX", dir },
  }
  for _, argv in ipairs(copies) do
    local code, _, err = M.run(argv)
    assert(code == 0, table.concat(argv, " ") .. ": " .. tostring(err))
  end
  return { bin = dir .. "/bin/reload", keeper = dir .. "/lib/reload/reload-keeper" }
end

--- The first directory on the way to path (path included) that other users may not search,
--- or nil when a user such as nobody can reach it.
---@param path string an absolute path
---@return string|nil
function M.closed_to_others(path)
  while path ~= "" do
    local st = uv.fs_stat(path)
    if not st or (st.type == "directory" and st.mode & 1 == 0) then
      return path
    end
    path = path:match("^(.*)/[^/]*$")
  end
  return nil
end

--- Fields of /proc/PID/stat: { pid, comm, state, ppid, pgid }, or nil if gone.
--- A zombie that its parent is reaping at that moment reads "Z 0 -1 -1" (or "X"): its pids are
--- already detached. ppid and pgid can be negative.
---@param pid integer
---@return table|nil
function M.proc_stat(pid)
  local s = M.read_file("/proc/" .. pid .. "/stat")
  return s and M.parse_stat(pid, s)
end

--- The fields of proc_stat from the text of /proc/PID/stat, or nil if it does not parse.
---@param pid integer
---@param s string
---@return table|nil
function M.parse_stat(pid, s)
  local comm, rest = s:match("^%d+ %((.*)%) (.*)$")
  if not comm then
    return nil
  end
  local state, ppid, pgid = rest:match("^(%S+) (%-?%d+) (%-?%d+)")
  if not state then
    return nil
  end
  return { pid = pid, comm = comm, state = state, ppid = tonumber(ppid), pgid = tonumber(pgid) }
end

--- Every pid in /proc.
---@return integer[]
M.all_pids = pidscan.list

--- Live (non-zombie) processes whose environment contains the string `marker` (e.g. "TAG=x").
---@param marker string
---@return table[] list of proc_stat records
function M.tagged(marker)
  local found, listed = {}, {}
  local function check(pid)
    local env = M.read_file("/proc/" .. pid .. "/environ")
    if env and env:find(marker, 1, true) and not listed[pid] then
      local st = M.proc_stat(pid)
      if st and st.state ~= "Z" and st.state ~= "X" then
        listed[pid] = true
        found[#found + 1] = st
      end
    end
  end
  -- Not one scan: a fork-and-exit loop would slip between (spec/support/pids.lua).
  pidscan.each(check)
  return found
end

--- Children of pid (from every /proc/*/stat), zombies included, with their state.
---@param pid integer
---@return table[]
function M.children_of(pid)
  local found = {}
  for _, p in ipairs(M.all_pids()) do
    local st = M.proc_stat(p)
    if st and st.ppid == pid then
      found[#found + 1] = st
    end
  end
  return found
end

--- "pid comm state ppid pgid" lines, for failure messages.
---@param list table[]
---@return string
function M.describe(list)
  local out = {}
  for _, st in ipairs(list) do
    out[#out + 1] = ("%d %s %s ppid=%d pgid=%d"):format(st.pid, st.comm, st.state, st.ppid, st.pgid)
  end
  return #out == 0 and "(none)" or table.concat(out, "; ")
end

--- The other threads of a process, counted by state and kernel wait channel (" [threads: S
--- futex_wait_queue x4]"), or "" for a single thread: where a multi-threaded program waits.
---@param pid integer
---@return string
function M.threads_summary(pid)
  local req = uv.fs_scandir("/proc/" .. pid .. "/task")
  local counts, order, n = {}, {}, 0
  while req do
    local tid = uv.fs_scandir_next(req)
    if not tid then
      break
    end
    n = n + 1
    if tonumber(tid) ~= pid then
      local stat = M.read_file("/proc/" .. pid .. "/task/" .. tid .. "/stat") or ""
      local state = stat:match("^%d+ %b() (%S)") or "?"
      local wchan = M.read_file("/proc/" .. pid .. "/task/" .. tid .. "/wchan") or "?"
      local key = state .. " " .. (wchan ~= "0" and wchan or "-")
      if not counts[key] then
        order[#order + 1] = key
      end
      counts[key] = (counts[key] or 0) + 1
    end
  end
  if n <= 1 then
    return ""
  end
  for i, key in ipairs(order) do
    order[i] = counts[key] > 1 and ("%s x%d"):format(key, counts[key]) or key
  end
  return " [threads: " .. table.concat(order, ", ") .. "]"
end

--- The processes of this test run as an indented tree (every descendant of this process, and
--- every process carrying the session marker wherever it moved): pid, state, what it waits in
--- and its command line. For the watchdog's message.
---@return string
function M.process_tree()
  local me = M.pid
  local by_pid, kids = {}, {}
  for _, pid in ipairs(M.all_pids()) do
    local st = M.proc_stat(pid)
    if st then
      by_pid[pid] = st
      kids[st.ppid] = kids[st.ppid] or {}
      table.insert(kids[st.ppid], pid)
    end
  end
  local lines, shown = {}, {}
  local function show(pid, depth)
    local st = by_pid[pid]
    shown[pid] = true
    local cmd = (M.read_file("/proc/" .. pid .. "/cmdline") or ""):gsub("\0$", ""):gsub("\0", " ")
    local wchan = M.read_file("/proc/" .. pid .. "/wchan") or "?"
    lines[#lines + 1] = ("%s%d %s (%s) %s%s"):format(("  "):rep(depth), pid, st.state,
      wchan ~= "0" and wchan or "-", cmd ~= "" and cmd:sub(1, 200) or "[" .. st.comm .. "]",
      M.threads_summary(pid))
    table.sort(kids[pid] or {})
    for _, kid in ipairs(kids[pid] or {}) do
      show(kid, depth + 1)
    end
  end
  show(me, 0)
  for _, st in ipairs(M.tagged(M.session_marker)) do
    if not shown[st.pid] and by_pid[st.pid] then
      lines[#lines + 1] = "(outside this process's tree:)"
      show(st.pid, 1)
    end
  end
  return table.concat(lines, "\n")
end

--- Sends SIGKILL to each listed process (cleanup after a failed assertion).
function M.kill_all(list)
  for _, st in ipairs(list) do
    pcall(uv.kill, st.pid, "sigkill")
  end
end

--- The live processes carrying marker (tagged), SIGKILLed, and again until none is left: one
--- that forks in a loop leaves a child behind each time. Returns those found first (cleanup
--- after a failed assertion). `except`: a pid to leave alone (this process).
---@param marker string
---@param except? integer
---@return table[]
function M.kill_tagged(marker, except)
  local first
  for _ = 1, 1000 do
    local left = {}
    for _, st in ipairs(M.tagged(marker)) do
      if st.pid ~= except then
        left[#left + 1] = st
      end
    end
    first = first or left
    if #left == 0 then
      break
    end
    M.kill_all(left)
  end
  return first
end

-- Ports -----------------------------------------------------------------------------------

--- True when 127.0.0.1:port can be bound with SO_REUSEADDR (libuv sets it on Unix), i.e. no
--- process listens there any more.
---@param port integer
---@return boolean, string|nil
function M.port_bindable(port)
  local tcp = uv.new_tcp()
  local ok, err = tcp:bind("127.0.0.1", port)
  if ok then
    ok, err = tcp:listen(1, function() end)
  end
  tcp:close()
  uv.run("nowait")
  return ok and true or false, err
end

--- True when something accepts connections on 127.0.0.1:port.
---@param port integer
---@return boolean
function M.port_listening(port)
  local tcp = uv.new_tcp()
  local result
  tcp:connect("127.0.0.1", port, function(err)
    result = err == nil
  end)
  M.pump(1000, function() return result ~= nil end)
  tcp:close()
  uv.run("nowait")
  return result == true
end

--- GET path (default /) from 127.0.0.1:port: returns the response body, or nil and what went
--- wrong.
---@param port integer
---@param path? string
---@return string|nil body, string|nil err
function M.http_get(port, path)
  local tcp = uv.new_tcp()
  local chunks, done, err = {}, false, nil
  tcp:connect("127.0.0.1", port, function(cerr)
    if cerr then
      err, done = cerr, true
      return
    end
    tcp:write(("GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"):format(path or "/"))
    tcp:read_start(function(rerr, chunk)
      if rerr then
        err, done = rerr, true
      elseif chunk then
        chunks[#chunks + 1] = chunk
      else
        done = true
      end
    end)
  end)
  M.pump(2000, function() return done end)
  tcp:close()
  uv.run("nowait")
  if not done then
    return nil, ("no complete answer within %d ms"):format(2000 * M.slowdown)
  end
  if err then
    return nil, err
  end
  local text = table.concat(chunks)
  return text:match("\r\n\r\n(.*)$") or text
end

local next_port = nil
--- A loopback port that is free now, below the ephemeral range (32768+) so that a client
--- socket cannot take it between this check and the test's bind.
---@return integer
function M.free_port()
  if not next_port then
    next_port = 20000 + (M.pid * 37) % 10000
  end
  for _ = 1, 2000 do
    next_port = next_port + 1
    if next_port >= 32000 then
      next_port = 20000
    end
    if M.port_bindable(next_port) then
      return next_port
    end
  end
  error("free_port: no free port found in 20000-32000")
end

-- Processes started by tests --------------------------------------------------------------

local started = {}

--- The program and arguments that uv.spawn gets for argv: the command runs under the deathsig
--- fixture, so that it dies with this process even when this process is SIGKILLed (a CI
--- timeout), and a `reload` under test takes its keepers' trees with it.
local function guarded(argv)
  local args = { tostring(M.pid) }
  for i = 1, #argv do
    args[#args + 1] = argv[i]
  end
  return M.fixture("deathsig"), args
end

--- Runs a command to completion (blocking the loop), returning exit code, stdout, stderr.
---@param argv string[]
---@param opts? { cwd?: string, env?: string[], stdin?: string, timeout_ms?: number }
---@return integer code, string stdout, string stderr
function M.run(argv, opts)
  opts = opts or {}
  local out, err = {}, {}
  local stdout, stderr = uv.new_pipe(false), uv.new_pipe(false)
  local stdin = opts.stdin and uv.new_pipe(false) or nil
  local code, done = nil, 0
  local program, args = guarded(argv)
  local handle, pid
  handle, pid = uv.spawn(program, {
    args = args,
    cwd = opts.cwd,
    env = opts.env,
    stdio = { stdin, stdout, stderr },
  }, function(c, sig)
    code = sig ~= 0 and 128 + sig or c
    handle:close()
  end)
  if not handle then
    stdout:close()
    stderr:close()
    if stdin then stdin:close() end
    error("run: cannot start " .. argv[1] .. ": " .. tostring(pid))
  end
  started[pid] = true
  local function reader(buf)
    return function(e, chunk)
      assert(not e, e)
      if chunk then
        buf[#buf + 1] = chunk
      else
        done = done + 1
      end
    end
  end
  stdout:read_start(reader(out))
  stderr:read_start(reader(err))
  if stdin then
    stdin:write(opts.stdin)
    stdin:shutdown(function() stdin:close() end)
  end
  local ok, e = pcall(M.wait_until, opts.timeout_ms or 60000, function()
    return code ~= nil and done == 2
  end, "exit of " .. table.concat(argv, " "))
  if not ok then
    pcall(uv.kill, pid, "sigkill")
    M.wait_until(5000, function() return code ~= nil end, "killed " .. argv[1])
  end
  stdout:close()
  stderr:close()
  started[pid] = nil
  uv.run("nowait")
  if not ok then
    error(e .. "\nstdout: " .. table.concat(out) .. "\nstderr: " .. table.concat(err), 2)
  end
  return code, table.concat(out), table.concat(err)
end

--- Runs `reload ARGS...` to completion; returns code, stdout, stderr.
function M.reload(args, opts)
  local argv = { M.reload_bin }
  for _, a in ipairs(args) do
    argv[#argv + 1] = a
  end
  return M.run(argv, opts)
end

---@class spec.Proc
---@field pid integer
---@field output string[]
---@field code integer|nil exit status (128+signal when killed), nil while running
local Proc = {}
Proc.__index = Proc

--- Everything the process wrote so far (stdout and stderr interleaved).
function Proc:text()
  return table.concat(self.output)
end

--- Waits until the output matches a Lua pattern; fails with what was seen.
function Proc:wait_output(pattern, max_ms, plain)
  M.wait_until(max_ms or 10000, function()
    return self:text():find(pattern, 1, plain) ~= nil
  end, function()
    return ("output matching %q; output so far:\n%s"):format(pattern, self:text())
  end)
end

--- Waits until the process has exited; returns its status.
function Proc:wait(max_ms)
  M.wait_until(max_ms or 10000, function()
    return self.code ~= nil and self.eof
  end, function()
    return "exit of pid " .. self.pid .. "; output so far:\n" .. self:text()
  end)
  return self.code
end

--- Sends a signal (name like "sigterm") to the process.
function Proc:signal(sig)
  if self.code == nil then
    uv.kill(self.pid, sig)
  end
end

--- Writes to its stdin (when started with stdin = true).
function Proc:write(data)
  self.stdin:write(data)
end

--- Ends it: SIGKILL to the process alone first, so that a reload under test still gets its
--- keepers' teardown (parent-death signal), then to its whole process group. A keeper leaves
--- reload's group: its own children (the keepers) are waited for too.
function Proc:kill()
  local kids = {}
  if self.code == nil then
    kids = M.children_of(self.pid)
    pcall(uv.kill, self.pid, "sigkill")
    pcall(self.wait, self, 5000)
  end
  pcall(M.wait_until, 3000, function()
    for _, kid in ipairs(kids) do
      local st = M.proc_stat(kid.pid)
      if st and st.state ~= "Z" and st.state ~= "X" then
        return false
      end
    end
    return uv.kill(-self.pid, 0) == nil -- ESRCH: the group is empty
  end, "the group of " .. self.pid)
  pcall(uv.kill, -self.pid, "sigkill")
end

--- Starts a long-running process in its own process group (so a test can end its whole tree),
--- collecting its output. It is killed after the test if the test did not end it.
---@param argv string[]
---@param opts? { cwd?: string, env?: string[], stdin?: boolean }
---@return spec.Proc
function M.start(argv, opts)
  opts = opts or {}
  local self = setmetatable({ output = {}, eof = false }, Proc)
  local stdout, stderr = uv.new_pipe(false), uv.new_pipe(false)
  self.stdin = opts.stdin and uv.new_pipe(false) or nil
  local program, args = guarded(argv)
  local eofs = 0
  local handle, pid
  handle, pid = uv.spawn(program, {
    args = args,
    cwd = opts.cwd,
    env = opts.env,
    detached = true, -- its own process group (setsid): the test can kill the whole group
    stdio = { self.stdin or 0, stdout, stderr },
  }, function(c, sig)
    self.code = sig ~= 0 and 128 + sig or c
    started[self.pid] = nil
    handle:close()
    if self.stdin and not self.stdin:is_closing() then
      self.stdin:close()
    end
  end)
  assert(handle, pid)
  self.pid = pid
  started[pid] = self
  for _, pipe in ipairs({ stdout, stderr }) do
    pipe:read_start(function(err, chunk)
      if chunk then
        self.output[#self.output + 1] = chunk
      elseif not err then
        eofs = eofs + 1
        self.eof = eofs == 2
        pipe:close()
      end
    end)
  end
  return self
end

--- Starts `reload ARGS...` as M.start does.
function M.start_reload(args, opts)
  local argv = { M.reload_bin }
  for _, a in ipairs(args) do
    argv[#argv + 1] = a
  end
  return M.start(argv, opts)
end

--- A session of the real reload in dir: `reload ARGS...` with NO_COLOR and a unique marker in
--- its environment, which every process it starts inherits. Returns the process and the marker
--- ("RELOAD_SPEC=<unique>") that M.end_session and M.tagged look for.
---@param dir string
---@param args? string[]
---@param env? table<string, string|false> more variables (false removes one)
---@return table proc, string marker
function M.session(dir, args, env)
  local value = M.unique("RELOAD_SPEC")
  local vars = { RELOAD_SPEC = value, NO_COLOR = "1" }
  for k, v in pairs(env or {}) do
    vars[k] = v
  end
  local proc = M.start_reload(args or {}, { cwd = dir, env = M.env_with(vars) })
  return proc, "RELOAD_SPEC=" .. value
end

--- Ends a session: sends sig (default SIGINT), expects reload to exit 0, and fails naming every
--- process of the session still alive (after killing them).
---@param proc table
---@param marker string
---@param sig? string
function M.end_session(proc, marker, sig)
  local luassert = require("luassert")
  proc:signal(sig or "sigint")
  luassert.are.equal(0, proc:wait(20000), proc:text())
  local left = M.kill_tagged(marker)
  luassert.are.same({}, left, "processes left: " .. M.describe(left))
end

--- Waits until 127.0.0.1:port answers a GET / with expected: the whole body, or (plain = true)
--- text found in it. Fails with what the port last answered, and the end of what reload said.
---@param port integer
---@param expected string
---@param opts? { plain: boolean, max_ms: integer, proc: table }
function M.answers(port, expected, opts)
  opts = opts or {}
  return M.retry(opts.max_ms or 20000, function()
    local body, err = M.http_get(port)
    local ok = body ~= nil and (opts.plain and body:find(expected, 1, true) ~= nil or
      body == expected)
    return ok, ("port %d answered %s\nreload said:\n%s"):format(port, tostring(body or err),
      opts.proc and opts.proc:text():sub(-2000) or "")
  end)
end

--- This process's environment as a "K=V" list, with extra variables set (or removed: false).
---@param extra? table<string, string|false>
---@return string[]
function M.env_with(extra)
  local env = uv.os_environ()
  for k, v in pairs(extra or {}) do
    env[k] = v or nil
  end
  local list = {}
  for k, v in pairs(env) do
    list[#list + 1] = k .. "=" .. v
  end
  return list
end

--- A temporary project: writes each file (path relative to the new directory) and returns
--- the directory.
---@param files table<string, string>
---@return string
function M.project(files)
  local dir = M.tmpdir()
  for path, content in pairs(files) do
    local parent = (dir .. "/" .. path):match("^(.*)/[^/]*$")
    assert(os.execute("mkdir -p " .. shell_quote(parent)))
    M.write_file(dir .. "/" .. path, content)
  end
  return dir
end

-- Hygiene ---------------------------------------------------------------------------------

--- Every spec's environment carries this marker (set in this process with os_setenv), so any
--- process a test started and failed to end is found after the test, wherever it moved.
M.session_marker = "RELOAD_SPEC_SESSION=" .. (os.getenv("RELOAD_SPEC_SESSION") or "")

--- Checks, after each test, that the test left nothing behind: no child process, no process
--- carrying the session marker, no open luv handle, no live core reference, the same cwd.
--- Whatever it finds it also cleans up, so one failure does not cascade.
---@param cwd string the working directory before the test
---@return string|nil problem
function M.check_hygiene(cwd)
  local problems = {}
  -- Let closing handles finish closing.
  uv.run("nowait")
  for pid, proc in pairs(started) do
    if type(proc) == "table" then
      proc:kill()
    else
      pcall(uv.kill, pid, "sigkill")
    end
    problems[#problems + 1] = "the test left process " .. pid .. " running"
  end
  started = {}
  local me = M.pid
  local kids = {}
  for _, st in ipairs(M.children_of(me)) do
    if st.state ~= "Z" then
      kids[#kids + 1] = st
    end
  end
  if #kids > 0 then
    problems[#problems + 1] = "child processes left: " .. M.describe(kids)
    M.kill_all(kids)
  end
  local strays = M.kill_tagged(M.session_marker, me)
  if #strays > 0 then
    problems[#problems + 1] = "processes of this test still alive: " .. M.describe(strays)
  end
  -- The core's handles first: luv 1.44's uv.walk takes every handle on the loop for one of its
  -- own and reads a core handle's data as luv's (garbage refs, a crash at worst). Walk only when
  -- every handle left is luv's.
  local core_live = false
  local ok, core = pcall(require, "reload.core")
  if ok and core._stats then
    local stats = core._stats()
    if stats.handles ~= 0 or stats.refs ~= 0 then
      core_live = stats.handles ~= 0
      problems[#problems + 1] = ("core handles/refs still live: %d/%d"):format(stats.handles,
        stats.refs)
    end
  end
  if not core_live then
    local handles = {}
    uv.walk(function(h)
      if not h:is_closing() then
        handles[#handles + 1] = tostring(h)
        h:close()
      end
    end)
    uv.run("nowait")
    if #handles > 0 then
      problems[#problems + 1] = "luv handles left open: " .. table.concat(handles, ", ")
    end
  end
  if uv.cwd() ~= cwd then
    problems[#problems + 1] = "cwd changed to " .. uv.cwd()
    uv.chdir(cwd)
  end
  for _, dir in ipairs(tmpdirs) do
    os.execute("rm -rf " .. shell_quote(dir))
  end
  tmpdirs = {}
  if #problems > 0 then
    return table.concat(problems, "\n")
  end
end

-- When busted loads this file as the suite's helper: mark this process's environment and
-- install the hygiene check around every test of every file.
if not os.getenv("RELOAD_SPEC_SESSION") then
  local id = ("%d-%d"):format(M.pid, uv.hrtime() % 1000000007)
  uv.os_setenv("RELOAD_SPEC_SESSION", id)
  M.session_marker = "RELOAD_SPEC_SESSION=" .. id
end

local is_busted, busted = pcall(require, "busted")
local in_busted = is_busted and type(busted) == "table" and busted.before_each ~= nil
if in_busted and not package.loaded["spec.helpers"] then
  package.loaded["spec.helpers"] = M
  local cwd
  busted.before_each(function()
    cwd = uv.cwd()
    budget.started = M.now_ms()
    M.budget(M.default_budget_s)
  end)
  busted.after_each(function()
    watchdog.disarm()
    local problem = M.check_hygiene(cwd)
    if problem then
      error("hygiene: " .. problem, 0)
    end
  end)
end

return M
