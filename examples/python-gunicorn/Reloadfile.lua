-- The python-gunicorn example: gunicorn with 2 workers on http://127.0.0.1:8000 (PORT overrides
-- it). Edit message.py: TERM lets each worker finish its request (gunicorn's graceful stop,
-- --graceful-timeout 2), then the new master starts.
local py = require("reload.recipes.python")

service "web" (py.gunicorn {
  app = "app:app",
  port = tonumber(os.getenv("PORT") or "8000"),
  workers = 2,
})
