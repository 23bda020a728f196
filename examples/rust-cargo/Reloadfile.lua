-- The rust-cargo example: `cargo build -q` while the old server keeps serving, then `cargo run
-- -q` on http://127.0.0.1:8086 (PORT overrides it). Edit src/message.rs: a warning shows, a
-- compile error keeps the old server running.
local rust = require("reload.recipes.rust")

local port = os.getenv("PORT") or "8086"

service "web" (rust.cargo {
  bin = "hello-cargo",
  env = { PORT = port },
  ready = { port = tonumber(port) },
})
