-- The go-dlv example: `reload` runs the API; `reload --debug` runs it under Delve (headless,
-- --continue, attach with `dlv connect 127.0.0.1:2345`). Edit cmd/api/message.go.
local go = require("reload.recipes.go")

local port = os.getenv("PORT") or "8082"

service "api" (go.service {
  name = "api",
  pkg = "./cmd/api",
  env = { PORT = port },
  ready = { port = tonumber(port) },
  debug = flag("debug") and { listen = os.getenv("DLV_LISTEN") or "127.0.0.1:2345" } or nil,
})
