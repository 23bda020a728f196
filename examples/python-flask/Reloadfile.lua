-- The python-flask example: flask run --no-reload on http://127.0.0.1:5000 (PORT overrides it).
-- Edit message.py; `reload --debug` runs it under debugpy (attach to 127.0.0.1:5678, or
-- DEBUGPY_LISTEN): the editor stays attached across restarts by reconnecting.
local py = require("reload.recipes.python")

service "web" (py.flask {
  app = "app",
  port = tonumber(os.getenv("PORT") or "5000"),
  debugpy = flag("debug") and (os.getenv("DEBUGPY_LISTEN") or "127.0.0.1:5678") or nil,
})
