-- The sockets example: one text (message.txt) served by four stacks, each on a socket that
-- reload binds once and passes to every run (`listen`, docs/sockets.md). Edit message.txt: each
-- server restarts, and a request made meanwhile waits for the new one instead of being refused.
--   Go       http://127.0.0.1:8091   net.FileListener(os.NewFile(3, ...))
--   Node     http://127.0.0.1:8092   server.listen({ fd: 3 })
--   gunicorn http://127.0.0.1:8093   --bind fd://3          (python.gunicorn { handoff = true })
--   uvicorn  http://127.0.0.1:8094   --fd 3                 (python.fastapi { handoff = true })
-- BASE_PORT moves them all (BASE_PORT+1 ... BASE_PORT+4).
local py = require("reload.recipes.python")

local base = tonumber(os.getenv("BASE_PORT") or "8090")

ignore { "tmp/" }

service "go" {
  watch = { "go/*.go", "message.txt" },
  build = { "go", "build", "-o", "tmp/server", "./go" },
  run = "tmp/server",
  env = { PORT = tostring(base + 1) },
  listen = base + 1,
  ready = { port = base + 1 },
}

service "node" {
  watch = { "server.js", "message.txt" },
  run = { "node", "server.js" },
  env = { PORT = tostring(base + 2) },
  listen = base + 2,
  ready = { port = base + 2 },
}

service "gunicorn" (py.gunicorn {
  app = "wsgi:app",
  port = base + 3,
  workers = 2,
  handoff = true,
  watch = { "message.txt" },
})

service "uvicorn" (py.fastapi {
  app = "asgi:app",
  port = base + 4,
  handoff = true,
  watch = { "message.txt" },
})
