-- The node-vite example (npm create vite@5's layout): `npm install`, then `reload`, and open
-- http://127.0.0.1:5173 (PORT overrides it). Vite serves edits to src/ itself; reload restarts
-- it when vite.config.js, package.json or .env change. `reload --debug` runs Vite with --inspect.
local node = require("reload.recipes.node")

service "web" (node.vite {
  port = tonumber(os.getenv("PORT") or "5173"),
  inspect = flag("debug") and (os.getenv("INSPECT_LISTEN") or "127.0.0.1:9229") or nil,
})
