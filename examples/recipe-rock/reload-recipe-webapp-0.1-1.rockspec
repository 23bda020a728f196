-- An external reload recipe as a rock: `luarocks --lua-version 5.4 --tree TREE make` here,
-- then put TREE/share/lua/5.4/?.lua on LUA_PATH and require("teamrecipes.webapp").
package = "reload-recipe-webapp"
version = "0.1-1"
source = { url = "." }
description = {
  summary = "A team's web service recipe for reload",
  license = "MIT",
}
dependencies = { "lua >= 5.4" }
build = {
  type = "builtin",
  modules = { ["teamrecipes.webapp"] = "teamrecipes/webapp.lua" },
}
