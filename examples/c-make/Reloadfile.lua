-- The c-make example: edit message.h or server.c, and reload rebuilds with make and restarts
-- the server on http://127.0.0.1:8080 (PORT overrides it).
local c = require("reload.recipes.c")

ignore { "server" }

service "server" (c.make {
  target = "server",
  run = "./server",
  env = { PORT = os.getenv("PORT") or "8080" },
  ready = { port = tonumber(os.getenv("PORT") or "8080") },
})
