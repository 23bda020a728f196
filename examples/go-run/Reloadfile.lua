-- The go-run example: `go run .` on http://127.0.0.1:8085 (PORT overrides it), after a check
-- build (go build -o /dev/null .) that keeps the old one serving through a compile error. Edit
-- message.go; `reload --debug` runs it under `dlv debug` (attach to 127.0.0.1:2345, or
-- DLV_LISTEN), stopped with SIGKILL.
local go = require("reload.recipes.go")

local port = os.getenv("PORT") or "8085"

service "api" (go.run {
  pkg = ".",
  env = { PORT = port },
  ready = { port = tonumber(port) },
  debug = flag("debug") and { listen = os.getenv("DLV_LISTEN") or "127.0.0.1:2345" } or nil,
})
