-- reload's own Reloadfile: while working on reload, rebuild it and rerun the unit specs on
-- every change to the C core, the Lua engine or the specs.
ignore { "build*/", "bench/results/" }

service "unit" {
  watch = { "src/**", "lua/**/*.lua", "spec/**/*.lua", "CMakeLists.txt" },
  build = "scripts/build",
  run = { "lua5.4", "/usr/bin/busted", "spec/unit" },
  restart = "never",
}
