--- The `reload` command line: parses arguments and hands off to the engine.
---
--- Exit status: 0 after a clean quit, 1 for a Reloadfile error at start (or a failed check),
--- 2 for a usage error.
local M = {}

local core = require("reload.core")
local uv = require("luv")
local log = require("reload.log")
local dsl = require("reload.dsl")
local schema = require("reload.schema")
local signals = require("reload.signals")

-- Where the command writes; a spec may swap them.
M.stdout = io.stdout
M.stderr = io.stderr

M.usage = [==[
Usage: reload [OPTIONS] [SERVICE...]
       reload run [OPTIONS] [-w GLOB]... [-i GLOB]... [--build CMD] -- COMMAND [ARG...]
       reload check [-f FILE]
       reload init [RECIPE]
       reload script FILE [ARG...]

reload watches a project, rebuilds it on every change and restarts it, stopping the old
process tree whole (every descendant, including debuggers' children) before the new one starts.

With no command, reload loads Reloadfile.lua (the one given with -f, else the nearest one in
this directory or a parent; its directory is the project root), starts every service (or the
named ones and what they need), and rebuilds and restarts them on change until you quit.

Commands:
  run -- COMMAND...     the same with no Reloadfile: one service running COMMAND
  check                 load and validate the Reloadfile, print the plan; exit 0, or 1 on errors
  init [RECIPE]         write a Reloadfile.lua for the project here (detected, or RECIPE's)
  script FILE [ARG...]  run a Lua file inside reload's runtime (luv and reload.core loaded),
                        then run the event loop until nothing is left on it

Options (before or after the command; a command's own options after it, and after -- every
word belongs to the command that run starts):
  -f, --file FILE       the Reloadfile to use
  -D, --define KEY[=VALUE]
                        set a flag the Reloadfile reads with flag("KEY") (VALUE defaults to true)
      --debug           the same as -D debug (e.g. run under a debugger, if the file says so)
      --clear           clear the screen before each rebuild
      --notify          a desktop notification when a build fails (needs notify-send)
  -v, --verbose         say more (commands, readiness, build output as it comes)
  -q, --quiet           only errors
      --no-color        no colours (NO_COLOR in the environment does the same)
      --json FILE       also write every event (changes, builds and their steps, each
                        generation's start, readiness and end, states) as JSON lines to FILE;
                        - is stdout (the services' output then goes to stderr). docs/json.md
  -h, --help            show this help (reload COMMAND --help for a command's)
  -V, --version         print the version

Keys (when stdin is a terminal): r rebuild and restart all, c clear, q quit, ? help.
Quit with q, Ctrl-C, SIGTERM or SIGHUP: every process tree is stopped (with its grace
period) before reload exits; Ctrl-C a second time kills them at once.
]==]

M.run_usage = [==[
Usage: reload run [OPTIONS] [-w GLOB]... [-i GLOB]... [--build CMD] -- COMMAND [ARG...]

Runs COMMAND, and on every change rebuilds (with --build) and restarts it, with no Reloadfile.
The project root is the current directory.

Options:
  -w, --watch GLOB      a change to a matching file restarts (repeatable; default: any file
                        that is not ignored). Globs follow .gitignore rules: "*.go" matches at
                        any depth, "src/**/*.c" under src/.
  -i, --ignore GLOB     ignore matching paths (repeatable), on top of .gitignore and defaults
      --build CMD       a shell command run before each start; a failure keeps the old process
      --signal SIG      the stop signal (default $SIGNAL; any name of kill -l)
      --grace SECONDS   how long to wait after the stop signal before SIGKILL (default $GRACE)
      --debounce MS     quiet period once a save is complete, before rebuilding (default:
                        $DEBOUNCE; never mid-write)
      --restart POLICY  never | on-failure | always, when COMMAND exits on its own
                        (default $RESTART)
      --ready PORT      the command counts as up once it listens on PORT; before each start,
                        wait until PORT is free (a --listen PORT: once it answers a request)
      --proxy LISTEN:TO a dev proxy on port LISTEN in front of COMMAND listening on port TO:
                        requests wait while it restarts, pages reload when it is back
                        (implies --ready TO)
      --listen [HOST:]PORT  reload binds PORT (on 127.0.0.1 unless HOST is given) once and
                        passes it to every run as fd 3 (the next --listen as fd 4, ...) with
                        LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES (systemd's protocol):
                        connections made during a restart wait instead of being refused
                        (repeatable; docs/sockets.md)
      --shell           run COMMAND through /bin/sh -c (joined with spaces)
  plus the global options of reload --help (-v, -q, --no-color, --clear, --notify, --json),
  before or after the word run.
]==]
do
  local d = schema.defaults("main")
  M.run_usage = M.run_usage:gsub("%$(%u+)", {
    SIGNAL = d.stop.signal, GRACE = tostring(d.stop.grace),
    DEBOUNCE = schema.by_name.debounce.default_doc, RESTART = d.restart,
  })
end

M.check_usage = [==[
Usage: reload check [-f FILE] [-D KEY[=VALUE]]...

Loads and validates the Reloadfile and prints the plan: services, globs, commands, and how many
directories would be watched. Exits 0 when it is valid, 1 with the errors (FILE:LINE: message).
]==]

M.init_usage = [==[
Usage: reload init [RECIPE]

Writes a starter Reloadfile.lua in the current directory (never overwrites one), and checks it.
Without RECIPE, it detects the project: go.mod (go), Cargo.toml (rust), manage.py or a Flask or
FastAPI app (python), package.json (node), CMakeLists.txt or a Makefile (c); with none of them,
a commented generic Reloadfile. With go, node, python, rust or c it reads the project for that
recipe: Go's main packages (cmd/*), package.json's scripts.dev, scripts.start or main,
Cargo.toml's [package].name and [[bin]], the Django/Flask/FastAPI app (and a .venv), the CMake
target or the Makefile's first target. Any other RECIPE is a module with a template(), e.g.
teamrecipes.webapp, found like a Reloadfile's require.
]==]

local function write(out, text)
  out:write(text)
  out:flush()
end

local function usage_error(msg, usage)
  write(M.stderr, "reload: " .. msg .. "\n\n" .. (usage or M.usage))
  return 2
end

-- Options -----------------------------------------------------------------------------------

--- Parses the options of args[first..last] into opts and the other words into rest (both
--- given, so that the words before a command and after it fill the same tables). After `--`
--- every word is positional. Returns true, or nil and an error message; `elsewhere(name)` may
--- say where an option unknown to spec belongs.
local function parse(args, first, last, spec, opts, rest, elsewhere)
  local i = first
  while i <= last do
    local a = args[i]
    if a == "--" then
      for j = i + 1, last do
        rest[#rest + 1] = args[j]
      end
      opts.dashdash = true
      break
    end
    local name, inline = a:match("^(%-%-[%w-]+)=(.*)$")
    name = name or a
    local def = spec[name]
    if a:sub(1, 1) == "-" and a ~= "-" then
      if not def then
        return nil, elsewhere and elsewhere(name) or ("unknown option '%s'"):format(a)
      end
      local value = true
      if def.arg then
        value = inline
        if value == nil and i < last then
          i = i + 1
          value = args[i]
        end
        if value == nil then
          return nil, ("option '%s' needs a value"):format(a)
        end
      elseif inline then
        return nil, ("option '%s' takes no value"):format(name)
      end
      if def.list then
        table.insert(opts[def.key], value)
      else
        opts[def.key] = value
      end
    else
      rest[#rest + 1] = a
    end
    i = i + 1
  end
  return true
end

local GLOBAL = {
  ["-f"] = { key = "file", arg = true }, ["--file"] = { key = "file", arg = true },
  ["-D"] = { key = "defines", arg = true, list = true },
  ["--define"] = { key = "defines", arg = true, list = true },
  ["--debug"] = { key = "debug" },
  ["--clear"] = { key = "clear" },
  ["--notify"] = { key = "notify" },
  ["-v"] = { key = "verbose" }, ["--verbose"] = { key = "verbose" },
  ["-q"] = { key = "quiet" }, ["--quiet"] = { key = "quiet" },
  ["--no-color"] = { key = "no_color" },
  ["--json"] = { key = "json", arg = true },
  ["-h"] = { key = "help" }, ["--help"] = { key = "help" },
  ["-V"] = { key = "version" }, ["--version"] = { key = "version" },
}

local RUN = {
  ["-w"] = { key = "watch", arg = true, list = true },
  ["--watch"] = { key = "watch", arg = true, list = true },
  ["-i"] = { key = "ignore", arg = true, list = true },
  ["--ignore"] = { key = "ignore", arg = true, list = true },
  ["--build"] = { key = "build", arg = true },
  ["--signal"] = { key = "signal", arg = true },
  ["--grace"] = { key = "grace", arg = true },
  ["--debounce"] = { key = "debounce", arg = true },
  ["--restart"] = { key = "restart", arg = true },
  ["--ready"] = { key = "ready", arg = true },
  ["--proxy"] = { key = "proxy", arg = true },
  ["--listen"] = { key = "listen", arg = true, list = true },
  ["--shell"] = { key = "shell" },
}
for k, v in pairs(GLOBAL) do
  RUN[k] = v
end

local function flags_of(opts)
  local flags = {}
  for _, d in ipairs(opts.defines) do
    local k, v = d:match("^([^=]+)=(.*)$")
    if k then
      flags[k] = v
    else
      flags[d] = true
    end
  end
  if opts.debug then
    flags.debug = true
  end
  return flags
end

local function setup_log(opts)
  log.setup_color(opts.no_color)
  log.level = opts.quiet and 0 or (opts.verbose and 2 or 1)
end

local function absolute(path)
  if path:sub(1, 1) == "/" then
    return path
  end
  return uv.cwd() .. "/" .. path
end

local function find_file(opts)
  if opts.file then
    local path = absolute(opts.file)
    if not uv.fs_stat(path) then
      return nil, ("%s: no such file"):format(opts.file)
    end
    return uv.fs_realpath(path) or path
  end
  local found = dsl.find(uv.cwd())
  if not found then
    return nil, "no Reloadfile.lua in " .. uv.cwd() .. " or its parents (reload init writes one)"
  end
  return found
end

-- Running -----------------------------------------------------------------------------------

local function notifier(enabled)
  if not enabled then
    return nil
  end
  if not os.execute("command -v notify-send >/dev/null 2>&1") then
    log.warn("--notify: notify-send is not installed; no desktop notifications")
    return nil
  end
  return function(title, body)
    uv.spawn("notify-send", { args = { "reload", title .. "\n" .. body:sub(1, 400) } },
      function() end)
  end
end

--- Reads keys from a terminal on stdin: r, c, q, ?.
local function start_keys(engine, quit)
  if uv.guess_handle(0) ~= "tty" then
    return nil
  end
  for _, svc in ipairs(engine.services) do
    if svc.cfg.stdin then
      log.verbose("a service reads stdin: keys are off")
      return nil
    end
  end
  local tty = uv.new_tty(0, true)
  if not tty then
    return nil
  end
  tty:set_mode(1)
  tty:read_start(function(err, data)
    if err or not data then
      return
    end
    for ch in data:gmatch(".") do
      if ch == "q" or ch == "\3" then
        quit(ch == "\3" and engine.quitting)
      elseif ch == "r" then
        log.info("rebuilding everything")
        engine:rebuild_all()
      elseif ch == "c" then
        io.stdout:write("\27[H\27[2J\27[3J")
        io.stdout:flush()
      elseif ch == "?" or ch == "h" then
        log.info("keys: r rebuild and restart all, c clear, q quit, ? this help")
      end
    end
  end)
  return tty
end

--- Runs the engine until quit; returns the exit status.
--- The JSON event log of --json FILE: a writer, or nil and an error.
local function json_log(target)
  local out, err
  if target == "-" then
    out = io.stdout
    log.services_out = io.stderr
  else
    out, err = io.open(target, "a")
    if not out then
      return nil, ("--json: cannot write %s"):format(tostring(err))
    end
    out:setvbuf("line")
  end
  local json = require("reload.json")
  local t0 = uv.hrtime() / 1e6
  return function(ev)
    ev.t = (ev.time or uv.hrtime() / 1e6) - t0
    ev.time = nil
    ev.at = os.date("!%Y-%m-%dT%H:%M:%SZ")
    out:write(json.encode(ev), "\n")
    out:flush()
  end
end

local function run_engine(config, opts, only, loader)
  local write_json
  if opts.json then
    local err
    write_json, err = json_log(opts.json)
    if not write_json then
      log.error("%s", err)
      return 2
    end
  end
  local engine = require("reload.engine").new({
    config = config,
    core = core,
    clock = require("reload.clock"),
    env = uv.os_environ(),
    only = only,
    loader = loader,
    notify = notifier(opts.notify),
    clear = opts.clear,
    prefix_always = opts.json == "-",
  })
  if write_json then
    engine:listen(write_json)
    local names = {}
    for _, svc in ipairs(config.services) do
      names[#names + 1] = svc.name
    end
    write_json({ type = "reload", root = config.root, file = config.file, services = names })
  end
  local handles = {}
  local tty, proxies
  local done = false
  local function close_handles()
    for _, h in ipairs(handles) do
      if not h:is_closing() then
        h:close()
      end
    end
  end
  local function quit(force)
    if engine.quitting and not force then
      return
    end
    if not engine.quitting then
      log.info("stopping")
    end
    engine:quit(function()
      done = true
      -- The uv.run("once") below must return now: with libuv 1.44 a callback run by a timer
      -- that came due before the poll does not end the turn, and the poll would then wait for
      -- unrelated I/O (uv.stop makes its timeout 0).
      uv.stop()
      if tty then
        tty:read_stop()
        uv.tty_reset_mode()
        tty:close()
      end
      close_handles()
      if proxies then
        proxies.close()
      end
      if require("reload.service").terminal_given then
        core.tty_reclaim() -- normally done when its tree went; never leave the shell without it
      end
      local left = engine:survivors()
      if #left == 0 then
        log.info("every process tree is gone; bye")
      else
        local pids = {}
        for _, sv in ipairs(left) do
          pids[#pids + 1] = ("%d ('%s')"):format(sv.pid, log.escape(sv.comm or "?"))
        end
        log.warn("stopped; %d process%s that reload could not stop still run%s: pid %s; bye",
          #left, #left == 1 and "" or "es", #left == 1 and "s" or "", table.concat(pids, ", "))
      end
      if write_json then
        write_json({ type = "quit" })
      end
    end, force)
  end
  -- The signals are ours before the first command starts: one that came in between would kill
  -- reload with no teardown.
  local interrupts = 0
  for _, name in ipairs({ "sigint", "sigterm", "sighup" }) do
    local h = uv.new_signal()
    h:start(name, function()
      if name == "sigint" then
        interrupts = interrupts + 1
        quit(interrupts > 1)
      else
        quit(false)
      end
    end)
    handles[#handles + 1] = h
  end
  -- The terminal was resized: each service's pty follows (its programs get SIGWINCH).
  local winch = uv.new_signal()
  winch:start("sigwinch", function()
    local cols, rows = log.term_size(true)
    for _, svc in ipairs(engine.services) do
      svc:resize(cols, rows)
    end
  end)
  handles[#handles + 1] = winch
  local ok, err = engine:start()
  if not ok then
    log.error("%s", err)
    close_handles()
    uv.run("nowait")
    return 1
  end
  -- Dev proxies (the services' `proxy` key) follow the engine's events from here.
  proxies = require("reload.proxy").attach(engine, core, require("reload.clock"))
  tty = start_keys(engine, quit)
  while not done do
    uv.run("once")
  end
  uv.run("nowait")
  return 0
end

--- Parses a command's options: global ones anywhere, the command's own after its word (`at` is
--- the index of the word in argv; nil for the default command, which has none). Returns opts,
--- rest, or nil and the exit status when the command is already done (a usage error, --help,
--- --version).
local function begin(argv, at, spec, usage, command)
  local opts, rest = { defines = {}, watch = {}, ignore = {}, listen = {} }, {}
  local ok, err
  if at then
    -- Before the command word: global options only; the command's own say where they go.
    ok, err = parse(argv, 1, at - 1, GLOBAL, opts, rest, function(name)
      if spec[name] then
        return ("option '%s' is an option of 'reload %s': write it after '%s'"):format(name,
          command, command)
      end
    end)
    if ok then
      ok, err = parse(argv, at + 1, #argv, spec, opts, rest)
    end
  else
    ok, err = parse(argv, 1, #argv, spec, opts, rest, function(name)
      if RUN[name] then
        return ("unknown option '%s' (an option of 'reload run': reload run %s ... -- " ..
          "COMMAND)"):format(name, name)
      end
    end)
  end
  if not ok then
    return nil, usage_error(err, usage)
  end
  if opts.help then
    write(M.stdout, usage)
    return nil, 0
  end
  if opts.version then
    write(M.stdout, "reload " .. core.version .. "\n")
    return nil, 0
  end
  setup_log(opts)
  return opts, rest
end

local function cmd_default(argv)
  local opts, rest = begin(argv, nil, GLOBAL, M.usage)
  if not opts then
    return rest
  end
  local file, err = find_file(opts)
  if not file then
    log.error("%s", err)
    return 1
  end
  local flags = flags_of(opts)
  local config
  config, err = dsl.load(file, flags)
  if not config then
    log.error("%s", err)
    return 1
  end
  for _, name in ipairs(rest) do
    if not config.by_name[name] then
      log.error("no service \"%s\" in %s", name, file)
      return 2
    end
  end
  return run_engine(config, opts, rest, function()
    return dsl.load(file, flags)
  end)
end

local function cmd_run(argv, at)
  local opts, rest = begin(argv, at, RUN, M.run_usage, "run")
  if not opts then
    return rest
  end
  if #rest == 0 then
    return usage_error("run: missing COMMAND (reload run [OPTIONS] -- COMMAND [ARG...])",
      M.run_usage)
  end
  -- No -w: the schema's default, every file that is not ignored.
  local svc = { watch = #opts.watch > 0 and opts.watch or nil, ignore = opts.ignore, stop = {} }
  if opts.shell then
    svc.run = table.concat(rest, " ")
  else
    svc.run = rest
  end
  if opts.build then
    svc.build = opts.build
  end
  if opts.signal then
    if not signals.normalize(opts.signal) then
      return usage_error(("unknown signal '%s'"):format(opts.signal), M.run_usage)
    end
    svc.stop.signal = opts.signal
  end
  local function number(name, value)
    local n = tonumber(value)
    if not n or n < 0 then
      return nil, ("--%s needs a number >= 0, not '%s'"):format(name, value)
    end
    return n
  end
  local err
  if opts.grace then
    svc.stop.grace, err = number("grace", opts.grace)
    if err then
      return usage_error(err, M.run_usage)
    end
  end
  if opts.debounce then
    svc.debounce, err = number("debounce", opts.debounce)
    if err then
      return usage_error(err, M.run_usage)
    end
  end
  if opts.restart then
    svc.restart = opts.restart
  end
  if opts.ready then
    svc.ready = math.tointeger(tonumber(opts.ready))
    if not svc.ready then
      return usage_error(("--ready needs a port number, not '%s'"):format(opts.ready),
        M.run_usage)
    end
  end
  if opts.proxy then
    local listen, to = opts.proxy:match("^(.+):(%d+)$")
    if not listen then
      return usage_error(("--proxy needs LISTEN:TO (ports, e.g. 8080:8081), not '%s'")
        :format(opts.proxy), M.run_usage)
    end
    svc.proxy = { listen = math.tointeger(tonumber(listen)) or listen,
      to = math.tointeger(tonumber(to)) }
  end
  if #opts.listen > 0 then
    svc.listen = {}
    for _, a in ipairs(opts.listen) do
      local host, port = a:match("^%[(.+)%]:(%d+)$")
      if not host then
        host, port = a:match("^([^:]+):(%d+)$")
      end
      port = math.tointeger(tonumber(port or a))
      if not port then
        return usage_error(("--listen needs a port or HOST:PORT (e.g. 8080, 0.0.0.0:8080), " ..
          "not '%s'"):format(a), M.run_usage)
      end
      svc.listen[#svc.listen + 1] = { port = port, host = host }
    end
  end
  local config
  config, err = dsl.from_table(uv.cwd(), svc, opts.ignore)
  if not config then
    -- The schema names keys; here they were options.
    err = err:gsub('^service "main": ', ""):gsub("^'watch'%[%d+%]", "-w")
      :gsub("^'ignore'%[%d+%]", "-i")
      :gsub("^'stop%.grace'", "--grace"):gsub("^'debounce'", "--debounce")
      :gsub("^'restart'", "--restart"):gsub("^'ready'", "--ready")
      :gsub("^'listen'%[?%d*%]?%.?%a*", "--listen")
    return usage_error(err, M.run_usage)
  end
  -- The service's own ignore list is already pruned by the watcher.
  config.services[1].ignore = {}
  return run_engine(config, opts, nil, nil)
end

--- Counts the directories the watcher would watch, for `check`.
local function count_dirs(config)
  if not core.watch then
    return nil
  end
  local w = core.watch({ root = config.root, ignore = config.ignore, on_events = function() end })
  if not w then
    return nil
  end
  local dirs = w:stats().dirs
  w:close()
  uv.run("nowait")
  return dirs
end

local function cmd_check(argv, at)
  local opts, rest = begin(argv, at, GLOBAL, M.check_usage, "check")
  if not opts then
    return rest
  end
  if #rest > 0 then
    return usage_error("check takes no arguments", M.check_usage)
  end
  local file, err = find_file(opts)
  if not file then
    log.error("%s", err)
    return 1
  end
  local config
  config, err = dsl.load(file, flags_of(opts))
  if not config then
    write(M.stderr, err .. "\n")
    return 1
  end
  local lines = { ("%s: ok"):format(file), ("root     %s"):format(config.root) }
  if #config.ignore > 0 then
    lines[#lines + 1] = ("ignore   %s"):format(table.concat(config.ignore, " "))
  end
  local dirs = count_dirs(config)
  if dirs then
    lines[#lines + 1] = ("watching %d directories"):format(dirs)
  end
  for _, l in ipairs(require("reload.engine").plan(config)) do
    lines[#lines + 1] = l
  end
  write(M.stdout, table.concat(lines, "\n") .. "\n")
  return 0
end

do
  local d = schema.defaults("app")
  -- The key names, wrapped as comment lines under 100 columns.
  local lines, line = {}, "-- Docs: reload --help. Keys of a service:"
  for i, name in ipairs(schema.names) do
    local word = " " .. name .. (i == #schema.names and "." or ",")
    if #line + #word > 96 then
      lines[#lines + 1] = line
      line = "--"
    end
    line = line .. word
  end
  lines[#lines + 1] = line
  M.generic_template = ([[
-- Reloadfile.lua: what reload builds, runs and watches. `reload check` validates it.
%s

ignore { "tmp/", "*.log" }   -- on top of .gitignore and the defaults (.git, node_modules, ...)

service "app" {
  watch   = { "**/*" },                 -- .gitignore-style globs
  -- build = "make",                    -- a shell string, an argv table, or steps { ... }
  run     = "echo 'edit Reloadfile.lua: set run to your command'; sleep 100000",
  stop    = { signal = "%s", grace = %s },
  restart = "%s",                    -- or "on-failure", "always"
}
]]):format(table.concat(lines, "\n"), d.stop.signal,
    tostring(d.stop.grace), d.restart)
end

local BUILTIN = { go = true, node = true, python = true, rust = true, c = true }

local function cmd_init(argv, at)
  local opts, rest = begin(argv, at, GLOBAL, M.init_usage, "init")
  if not opts then
    return rest
  end
  if #rest > 1 then
    return usage_error("init takes at most one RECIPE", M.init_usage)
  end
  local dir = uv.cwd()
  local target = dir .. "/Reloadfile.lua"
  if uv.fs_stat(target) then
    log.error("%s already exists; not overwriting it", target)
    return 1
  end
  local detect = require("reload.detect")
  local text = M.generic_template
  local recipe = rest[1]
  local found
  if not recipe then
    recipe = detect.stack(dir)
    if not recipe then
      log.info("no go.mod, Cargo.toml, Python app, package.json, CMakeLists.txt or Makefile " ..
        "here: a generic Reloadfile")
    end
  end
  if recipe then
    -- A bare name is a built-in recipe; a dotted one is any module on the search path.
    local modname = recipe:find(".", 1, true) and recipe or ("reload.recipes." .. recipe)
    package.path = table.concat(dsl.search_path(dir), ";")
    local ok, mod = pcall(require, modname)
    if not ok then
      log.error("no recipe '%s' (%s)", recipe, tostring(mod):match("^[^\n]*"))
      return 1
    end
    if type(mod) ~= "table" or type(mod.template) ~= "function" then
      log.error("recipe '%s' provides no template", recipe)
      return 1
    end
    local project
    if BUILTIN[recipe] then
      project, found = detect.project(recipe, dir)
    end
    text = mod.template(project)
  end
  local f, err = io.open(target, "w")
  if not f then
    log.error("cannot write %s: %s", target, err)
    return 1
  end
  f:write(text)
  f:close()
  -- What init writes must pass check: said now rather than at the first `reload`.
  local config
  config, err = dsl.load(target, {})
  if not config then
    log.error("wrote %s, but it does not pass check: %s", target, err)
    return 1
  end
  log.ok("wrote %s%s", target, found and (" for " .. found) or "")
  return 0
end

--- `reload script FILE [ARG...]`: global options before FILE; every word after it is the
--- script's.
local function cmd_script(argv, at)
  local file = argv[at + 1]
  if not file or file == "--help" or file == "-h" then
    write(file and M.stdout or M.stderr, "Usage: reload script FILE [ARG...]\n")
    return file and 0 or 2
  end
  local opts, code = begin({ table.unpack(argv, 1, at) }, at, GLOBAL,
    "Usage: reload script FILE [ARG...]\n", "script")
  if not opts then
    return code
  end
  local chunk, err = loadfile(file)
  if not chunk then
    write(M.stderr, "reload: " .. err .. "\n")
    return 1
  end
  local args = { [0] = file }
  for i = at + 2, #argv do
    args[#args + 1] = argv[i]
  end
  _G.arg = args
  local ok, res = xpcall(chunk, debug.traceback, table.unpack(args))
  if not ok then
    write(M.stderr, "reload: " .. tostring(res) .. "\n")
    return 1
  end
  uv.run()
  return math.type(res) == "integer" and res or 0
end

local COMMANDS = { run = cmd_run, check = cmd_check, init = cmd_init, script = cmd_script }

--- The command word in argv and its index: the first word before `--` that is neither an
--- option nor an option's value. Options of every command are skipped with their values, so
--- that `reload -f FILE check` and `reload --no-color run` find the command, and a word that
--- is no command (a service name) means the default command.
---@param argv string[]
---@return string|nil command, integer|nil index
function M.find_command(argv)
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--" then
      return nil
    end
    if a:sub(1, 1) == "-" and a ~= "-" then
      local name, inline = a:match("^(%-%-[%w-]+)=(.*)$")
      local def = RUN[name or a]
      if def and def.arg and inline == nil then
        i = i + 1
      end
    elseif COMMANDS[a] then
      return a, i
    else
      return nil
    end
    i = i + 1
  end
  return nil
end

--- Entry point of the executable. Global options (reload --help) may come before or after the
--- command word; a command's own options after it; after `--`, every word is the command's
--- (run) or a service name (the default command).
---@param argv table the script arguments (argv[1..n]; argv[0] is the program)
---@return integer exit status
function M.main(argv)
  local name, at = M.find_command(argv)
  if name then
    return COMMANDS[name](argv, at)
  end
  return cmd_default(argv)
end

return M
