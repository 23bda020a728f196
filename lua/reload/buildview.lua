--- What a build shows while it runs and when it ends.
---
--- Theory of operation. A build's output is collected, not shown, for a moment: most builds
--- pass quickly and quietly. Past `live_ms` (at once with -v) it is shown as it comes, prefixed
--- `name build |`; on a terminal, past `progress_after_ms`, a progress line gives the time and
--- the step. When the build ends, a passing build's output (warnings) is shown if it was not
--- already, cut to its first lines and a count when long; a failing build's, in full.
local M = {}
M.__index = M

local log = require("reload.log")

M.live_ms = 1000
M.progress_after_ms = 2000
M.progress_every_ms = 200
M.summary_lines = 20 -- a passing build's output beyond this is cut to its head
M.summary_head = 10

local function writer(name)
  return log.prefixer(name .. " build", 1, #name + 6, log.out)
end

--- Starts showing a running build (a pipeline job).
---@param name string the service
---@param job reload.Job
---@param clock table
---@return table view with :finish()
function M.watch(name, job, clock)
  local self = setmetatable({ name = name, job = job, clock = clock }, M)
  local function live()
    job:go_live(writer(name))
  end
  if log.level >= 2 then
    live()
  end
  local t0 = clock.now()
  self.live = clock.after(M.live_ms, live)
  local function tick()
    local i, n, label = job:progress()
    log.status(name, ("%s: building %s · step %d/%d %s"):format(name,
      log.duration(clock.now() - t0), i, n, label))
    self.progress = clock.after(M.progress_every_ms, tick)
  end
  if log.tty then
    self.progress = clock.after(M.progress_after_ms, tick)
  end
  return self
end

--- The build ended (or was cancelled): no more live output or progress line.
function M:finish()
  for _, key in ipairs({ "live", "progress" }) do
    if self[key] then
      self[key]:stop()
      self[key] = nil
    end
  end
  log.clear_status(self.name)
end

--- Shows a build's output, prefixed: in full, or (summary) the first lines and a count.
---@param name string
---@param output string|nil
---@param summary boolean
function M.output(name, output, summary)
  if not output or output == "" then
    return
  end
  local lines = {}
  for line in output:gmatch("[^\n]*\n?") do
    if line ~= "" then
      lines[#lines + 1] = line:sub(-1) == "\n" and line or line .. "\n"
    end
  end
  local shown = lines
  if summary and #lines > M.summary_lines then
    shown = table.move(lines, 1, M.summary_head, 1, {})
  end
  local write = writer(name)
  write(table.concat(shown))
  write(nil)
  if #shown < #lines then
    log.info("%s: ... %d more lines of build output (reload -v shows them as they come)", name,
      #lines - #shown)
  end
end

--- "make gen 0.31 s, make 1.20 s": each step's duration.
---@param steps table[]|nil
---@return string
function M.step_times(steps)
  local parts = {}
  for _, step in ipairs(steps or {}) do
    parts[#parts + 1] = ("%s %s"):format(step.label, log.duration(step.ms or 0))
  end
  return table.concat(parts, ", ")
end

return M
