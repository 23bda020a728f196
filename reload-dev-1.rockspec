-- reload's Lua modules as a rock (the engine and the built-in recipes), so that recipes can be
-- developed and tested with busted against them. The C core and the executable are built with
-- CMake (see README.md).
package = "reload"
version = "dev-1"
source = { url = "." }
description = {
  summary = "Hot-reload engine: the Lua engine and recipes",
  license = "MIT",
}
dependencies = { "lua >= 5.4" }
build = {
  type = "builtin",
  modules = {
    ["reload.cli"] = "lua/reload/cli.lua",
    ["reload.clock"] = "lua/reload/clock.lua",
    ["reload.debounce"] = "lua/reload/debounce.lua",
    ["reload.dsl"] = "lua/reload/dsl.lua",
    ["reload.engine"] = "lua/reload/engine.lua",
    ["reload.log"] = "lua/reload/log.lua",
    ["reload.ports"] = "lua/reload/ports.lua",
    ["reload.recipe"] = "lua/reload/recipe.lua",
    ["reload.service"] = "lua/reload/service.lua",
    ["reload.signals"] = "lua/reload/signals.lua",
    ["reload.recipes.c"] = "lua/reload/recipes/c.lua",
    ["reload.recipes.go"] = "lua/reload/recipes/go.lua",
    ["reload.recipes.node"] = "lua/reload/recipes/node.lua",
    ["reload.recipes.python"] = "lua/reload/recipes/python.lua",
    ["reload.recipes.rust"] = "lua/reload/recipes/rust.lua",
  },
}
