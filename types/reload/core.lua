---@meta reload.core
-- LuaLS description of the reload.core C module (src/*.c). Not loaded at run time: point
-- LuaLS's workspace.library at types/ to use it. spec/functional/types_spec.lua checks that it
-- declares every function, field and method reload.core registers, and nothing more.

---@class reload.core
---@field version string "MAJOR.MINOR.PATCH"
---@field signals table<string, integer> every signal <signal.h> defines here, name without "SIG"
--- -> number: { HUP = 1, ..., STKFLT = 16 (Linux), ..., RTMIN = 34, ["RTMIN+1"] = 35, ...,
--- ["RTMAX-1"] = 63, RTMAX = 64 } (real-time ones named as `kill -l` names them; RTMIN is libc's
--- SIGRTMIN). Every name here (any case, with or without "SIG") is a valid reload.Signal.
local core = {}

---@class reload.core.Stats
---@field handles integer live core handles (a Process counts as one from spawn to "exit")
---@field refs integer live registry references held by the core

--- Live handles and references, for leak checks in tests.
---@return reload.core.Stats
function core._stats() end

--- A one-shot timer on the core's loop (proves luv and the core share one loop).
---@param ms integer
---@param fn fun()
---@return true|nil ok, string? err, string? code
function core._timer_probe(ms, fn) end

---@alias reload.SignalName
---| "HUP" | "INT" | "QUIT" | "TERM" | "KILL" | "USR1" | "USR2" | "CONT" | "STOP" | "WINCH"
---| string  # any key of core.signals, with or without "SIG", any case ("RTMIN+2", "STKFLT")

---@alias reload.Signal reload.SignalName|integer

---@class reload.SpawnOptions
---@field cmd? string|string[] string: /bin/sh -c STRING; table: argv, PATH lookup (optional
--- with hold = true: go{ cmd = ... } brings it)
---@field cwd? string working directory of the command
---@field env? string[] the command's whole environment ("K=V"); nil inherits reload's
---@field stdin? "null"|"inherit"|"pipe" default "null" (a background group reading the tty
--- is stopped by SIGTTIN unless given the foreground: see foreground)
---@field stdout? "inherit"|"null"|"pipe" default "inherit"
---@field stderr? "inherit"|"null"|"pipe" default "inherit"
---@field on_stdout? fun(chunk: string|nil) with "pipe": each chunk, then nil once at EOF
--- (before "exit")
---@field on_stderr? fun(chunk: string|nil)
---@field stop_signal? reload.Signal polite signal of stop(); default "TERM"
---@field grace_ms? integer polite phase before SIGKILL; default 3000
---@field on_main_exit? "wait-tree"|"kill-tree" when the main command exits on its own: keep the
--- run while any descendant lives (default), or tear the rest down
---@field setsid? boolean new session instead of a new process group; default false
---@field hold? boolean start the keeper now, the command only at go() ("held" says the
--- keeper is ready); a stop before go() cancels the run. Lets a restart spawn the next keeper
--- while the old tree is still stopping.
---@field pty? { cols: integer, rows: integer } stdout and stderr are the slave of a new
--- pseudo-terminal of that size (no ONLCR: "\n" stays "\n"), the controlling terminal of the
--- command's new session; what it writes arrives in on_stdout (nil once at EOF, which is EIO
--- on the master once the tree has let go of the slave). Not with stdout, stderr, on_stderr.
---@field foreground? boolean the command's new group takes the foreground of the terminal on
--- fd 0 (stdin = "inherit": it reads the terminal without SIGTTIN); core.tty_reclaim takes
--- it back. Not with pty.
---@field on_event? fun(ev: reload.ProcessEvent)
---@field listen? integer[] open listening sockets (Socket:fd()): the command gets them as fds 3,
--- 4, ... with LISTEN_FDS and LISTEN_PID = its own pid (set by the keeper after fork); at most 64

---@class reload.ProcessEvent
---@field type "held"|"started"|"main-exit"|"stopping"|"forcing"|"tree-empty"|"gave-up"|"exit"|"dropped"
--- "tree-empty": every process of the tree is reaped (its ports are free); "exit" follows once
--- reload's own handles are closed. Not sent when the command never started. "gave-up", in its
--- place: the SIGKILL sweeps could not end some processes (`survivors`), which keep running
--- outside any tree; nothing more of the run will go. With a next run queued (Process:next),
--- "started" of that run follows "tree-empty", and the events from then on are its own;
--- "dropped": the queued next run will not run.
---@field pid? integer "started": the main command's pid
---@field pgid? integer "started": its process group
---@field code? integer "main-exit", "exit": the main command's exit code (nil if killed)
---@field signal? integer "main-exit", "exit": the signal that killed it
---@field status? integer "exit": code, or 128+signal; with spawn_error 127 (not found), 126
--- (not executable) or 125 (the keeper could not start it: its setup or the fork failed)
---@field forced? boolean "tree-empty", "exit": SIGKILL was needed
---@field duration_ms? number "exit": stop request -> tree empty; nil if it ended on its own
---@field fallback? boolean "exit": the keeper died; reload's own sweep was used
---@field spawn_error? string "exit": the command never ran: "ENOENT: no such file or
--- directory" when exec failed, "fork: EAGAIN: ..." or "keeper setup: ESRCH: ..." otherwise
---@field cancelled? boolean "exit": a held run stopped before go(); the command never ran
---@field survivors? reload.Survivor[] "gave-up", "exit": the processes left running (the first
--- 16)
---@field survivors_total? integer "gave-up", "exit": how many, when more than listed

---@class reload.Survivor
---@field pid integer
---@field uid? integer its effective user ID (nil: unknown)
---@field comm? string its name (nil: it was gone when reported)
---@field cmdline? string its arguments, space-separated
---@field state? string its /proc state letter ("S", "D", ...)
---@field error? string "EPERM": kill() was refused; nil: SIGKILL was sent and it stayed

---@class reload.ProcessInfo
---@field pid integer
---@field ppid integer
---@field pgid integer
---@field comm string

--- A command and every process it creates, started through a keeper. "exit" is the last
--- event, exactly once, when the whole tree is gone; the handle is held until then.
---@class reload.Process
local Process = {}

---@return integer|nil pid of the main command (nil before "started" or if exec failed)
function Process:pid() end

---@return integer|nil
function Process:pgid() end

---@return integer
function Process:keeper_pid() end

---@return "starting"|"running"|"main-exited"|"stopping"|"forcing"|"exited"
function Process:status() end

--- Polite signal to the whole tree, SIGKILL after the grace; idempotent. The result is the
--- "exit" event.
--- linger: a next run may be queued (Process:next) after this stop; without it the keeper
--- exits once the tree is empty.
---@param opts? { signal?: reload.Signal, grace_ms?: integer, linger?: boolean }
---@return true
function Process:stop(opts) end

--- Starts the command of a run spawned with hold = true; once, and not after a stop. With
--- cmd (string: /bin/sh -c; table: argv) and env ("K=V" list; nil: reload's own), the
--- command is given now: a run may be spawned held without cmd, before the change is known.
---@param opts? { cmd?: string|string[], env?: string[] }
---@return true
function Process:go(opts) end

--- Queues the run after this one in the same keeper, which starts it itself the moment this
--- run's tree is empty ("tree-empty", then "started" of the next run, through this handle).
--- nil and why when the keeper cannot: it runs nothing, has finished (its tree was reported
--- empty without a next run, or it gave up on survivors), or has one queued already.
---@param opts { cmd: string|string[], env?: string[] }
---@return true|nil, string|nil
function Process:next(opts) end

--- The queued next run is not wanted: "dropped" follows, or, when the keeper had started it
--- already, that run is stopped and reported like any other.
---@return true
function Process:drop_next() end

--- Straight to the SIGKILL sweeps.
---@return true
function Process:kill() end

--- Sends a signal without teardown.
---@param sig reload.Signal
---@param scope? "main"|"group"|"tree" default "group"
---@return true
function Process:signal(sig, scope) end

--- Live descendants of the keeper (the whole tree), parents before children.
---@return reload.ProcessInfo[]
function Process:descendants() end

--- Writes to the command's stdin (spawned with stdin = "pipe", else raises).
---@param data string
---@return true|nil ok, string? err, string? code
function Process:write(data) end

---@return true
function Process:close_stdin() end

--- Sets the size of the run's pty (spawned with pty); its foreground group gets SIGWINCH.
---@param cols integer
---@param rows integer
---@return true|nil ok, string? err, string? code
function Process:resize(cols, rows) end

--- Stops a running tree (default signal and grace); idempotent. Also __close.
function Process:close() end

--- Starts cmd under a keeper.
---@param opts reload.SpawnOptions
---@return reload.Process|nil process, string? err, string? code
function core.spawn(opts) end

--- Creates path with mode 0600 and writes data to it. The path must not exist, not even as a
--- symbolic link (O_EXCL|O_NOFOLLOW: nothing is followed or truncated).
---@param path string
---@param data string
---@return true|nil ok, string? err, string? code
function core.write_private(path, data) end

--- True when stdin is a terminal whose foreground process group is reload's (only then may a
--- command be given it: a reload started with `&` must not take it from the shell).
---@return boolean
function core.tty_foreground() end

--- Makes reload's group the foreground of the terminal on stdin again (SIGTTOU blocked
--- meanwhile); true at once when stdin is no terminal or reload has the foreground already.
---@return true|nil ok, string? err, string? code
function core.tty_reclaim() end
---@class reload.Socket
local Socket = {}

--- The descriptor (CLOEXEC in reload: a command gets it only through spawn's `listen`).
---@return integer
function Socket:fd() end

--- The port it is bound to (the kernel's choice when asked for port 0).
---@return integer
function Socket:port() end

---@return string
function Socket:host() end

--- Closes it (idempotent); connections still waiting in its backlog are reset.
---@return true
function Socket:close() end

---@class reload.ListenOptions
---@field host? string a numeric IPv4 or IPv6 address; default "127.0.0.1"
---@field port integer 0 for any free port
---@field backlog? integer default SOMAXCONN (the kernel caps it at net.core.somaxconn)

--- A listening TCP socket (socket, SO_REUSEADDR, bind, listen) that nothing accepts on in
--- reload: luv's listen would accept on reload's loop; connections wait in the backlog for the
--- command the socket is passed to.
---@param opts reload.ListenOptions
---@return reload.Socket|nil socket, string? err, string? code
function core.listen(opts) end

---@class reload.Glob
local Glob = {}

--- True when the relative, '/'-separated path (or one of its parent directories) matches.
--- Gitignore semantics: a pattern with no '/' matches a name at any depth; `{a,b}` braces.
---@param path string
---@param is_dir? boolean
---@return boolean
function Glob:match(path, is_dir) end

--- Compiles a glob, or a list of them where a later `!pattern` excludes again.
--- Raises on a malformed pattern.
---@param pattern string|string[]
---@return reload.Glob
function core.glob(pattern) end

---@param pattern string
---@param path string
---@param is_dir? boolean
---@return boolean
function core.glob_match(pattern, path, is_dir) end

---@class reload.Ignore
local Ignore = {}

--- The full decision: defaults, every .gitignore, .git/info/exclude, extra patterns.
---@param path string relative to root
---@param is_dir? boolean
---@return boolean
function Ignore:ignored(path, is_dir) end

--- Forgets the cached .gitignore of a directory (re-read on next use).
---@param dir string
function Ignore:forget(dir) end

---@class reload.IgnoreOptions
---@field root? string absolute root (required when gitignore = true)
---@field patterns? string[] extra gitignore-syntax patterns
---@field defaults? boolean .git, node_modules, editor temp files (default true)
---@field gitignore? boolean read .gitignore files and .git/info/exclude (default true)

---@param opts reload.IgnoreOptions
---@return reload.Ignore
function core.ignore(opts) end

---@class reload.WatchEvent
---@field path? string relative to the root (none for "overflow", "root-gone", "root-back")
---@field kind "create"|"modify"|"remove"|"rename"|"close"|"overflow"|"root-gone"|"root-back"
--- "root-gone": the root itself went (nothing is watched); "root-back": a directory is at its
--- path again, watched anew (an "overflow" comes with it)
---@field dir? boolean the path is a directory (stands for its whole subtree)
---@field from? string "rename": the old path

---@class reload.WatchOptions
---@field root string absolute project root
---@field ignore? string[] extra gitignore-syntax patterns
---@field defaults? boolean default true
---@field gitignore? boolean default true
---@field backend? "inotify"|"poll" default "inotify"
---@field poll_interval_ms? integer default 500
---@field on_events fun(batch: reload.WatchEvent[]) one call per batch
---@field on_error? fun(message: string) non-fatal problems (watch limit, unreadable directory)

---@class reload.Watcher
local Watcher = {}

---@class reload.WatchStats
---@field backend string
---@field dirs integer watched directories (inotify and polled)
---@field files integer files seen (approximate after start)
---@field watches integer inotify watches
---@field polled_dirs integer
---@field events integer
---@field errors integer
---@field last_error? string

---@return reload.WatchStats
function Watcher:stats() end

---@param path string
---@param is_dir? boolean
---@return boolean
function Watcher:ignored(path, is_dir) end

--- Idempotent; also __gc and __close.
function Watcher:close() end

--- Watches a tree recursively; ignored directories never get a watch.
---@param opts reload.WatchOptions
---@return reload.Watcher|nil watcher, string? err, string? code
function core.watch(opts) end

---@class reload.HttpEvent
---@field type "head"|"body"|"done"|"upgrade"
---@field at? integer "head", "done", "upgrade": offset in data of the last byte of the head or
--- message ("upgrade": data after it is not HTTP)
---@field from? integer "body": data:sub(from, to) are body bytes, chunked framing removed
---@field to? integer
---@field method? string "head" of a request
---@field url? string
---@field status? integer "head" of a response
---@field reason? string
---@field major? integer
---@field minor? integer
---@field headers? string[][] { { name, value }, ... } as received, in order
---@field keep_alive? boolean
---@field upgrade? boolean
---@field chunked? boolean
---@field length? integer Content-Length, when given and not chunked
---@field no_body? boolean a response to a HEAD request (see no_body())

---@class reload.HttpParser
local HttpParser = {}

--- Parses the next bytes of the stream.
---@param data string not empty
---@return reload.HttpEvent[]|nil events, string? err, string? code "HPE_*"
function HttpParser:execute(data) end

--- The stream ended: completes a body read to the end of the connection.
---@return reload.HttpEvent[]|nil events, string? err, string? code
function HttpParser:finish() end

--- The next response answers a HEAD request: it has no body.
---@return true
function HttpParser:no_body() end

--- A new stream.
---@return true
function HttpParser:reset() end

--- Idempotent; also __gc and __close.
function HttpParser:close() end

--- An incremental HTTP/1.x parser (libhttp-parser): mechanism for the dev proxy.
---@param kind "request"|"response"
---@return reload.HttpParser
function core.http_parser(kind) end

return core
