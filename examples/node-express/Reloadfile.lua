-- The node-express example: `npm install`, then `reload` runs `npm run start` on
-- http://127.0.0.1:3000 (PORT overrides it). Edit message.js. `reload --debug` runs it with the
-- inspector on 127.0.0.1:9229 (INSPECT_LISTEN overrides it), given to node, not to npm.
local node = require("reload.recipes.node")

service "api" (node.express {
  script = "start",
  port = tonumber(os.getenv("PORT") or "3000"),
  inspect = flag("debug") and (os.getenv("INSPECT_LISTEN") or "127.0.0.1:9229") or nil,
})
