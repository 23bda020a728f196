std = "lua54"
max_line_length = 100
codes = true
exclude_files = { "build*/**" }

files["spec/**"] = { std = "+busted", max_string_line_length = false }
files["Reloadfile.lua"] = { read_globals = { "service", "ignore", "flag", "steps", "replace", "run", "watch" } }
files["examples/**/Reloadfile.lua"] = { read_globals = { "service", "ignore", "flag", "steps", "replace", "run", "watch" } }
-- LuaLS stubs: declarations only.
files["types/**"] = { ignore = { "212", "241" } }
