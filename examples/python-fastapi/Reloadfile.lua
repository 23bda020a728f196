-- The python-fastapi example: uvicorn (without --reload) on http://127.0.0.1:8000 (PORT
-- overrides it). Edit message.py.
local py = require("reload.recipes.python")

service "api" (py.fastapi {
  app = "main:app",
  port = tonumber(os.getenv("PORT") or "8000"),
})
