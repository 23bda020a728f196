-- The python-django example: Django's runserver on http://127.0.0.1:8000 (PORT overrides it),
-- with --noreload (reload is the reloader). Edit hello/message.py; `reload --debug` runs it under
-- debugpy (attach to 127.0.0.1:5678, or DEBUGPY_LISTEN).
local py = require("reload.recipes.python")

service "web" (py.django {
  port = tonumber(os.getenv("PORT") or "8000"),
  debugpy = flag("debug") and (os.getenv("DEBUGPY_LISTEN") or "127.0.0.1:5678") or nil,
})
