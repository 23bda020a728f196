-- The node example: edit message.js or server.js; `reload --debug` runs it under --inspect.
local node = require("reload.recipes.node")

service "web" (node.app {
  main = "server.js",
  env = { PORT = os.getenv("PORT") or "8081" },
  ready = { port = tonumber(os.getenv("PORT") or "8081") },
  inspect = flag("debug") and "127.0.0.1:9229" or nil,
})
