-- The multi example: a one-shot task, an API that needs it, and a front that needs the API.
-- `after` starts a service once those it names are up: a task once it exited 0, a service with
-- `ready` once it listens on its port.
local node = require("reload.recipes.node")

local api_port = os.getenv("API_PORT") or "8083"
local web_port = os.getenv("WEB_PORT") or "8084"

service "seed" {
  run = "mkdir -p data && date +%s%N > data/seed.txt && echo seeded",
  watch = { "seed.sql" },
  task = true,
}

service "api" (node.app {
  main = "api.js",
  env = { PORT = api_port },
  ready = { port = tonumber(api_port) },
  after = { "seed" },
  watch = replace { "api.js" },       -- only its own file, not every .js the recipe watches
})

service "web" (node.app {
  main = "web.js",
  env = { PORT = web_port, API_PORT = api_port },
  ready = { port = tonumber(web_port) },
  after = { "api" },
  watch = replace { "web.js" },
})
