local schema = require("reload.schema")
local helpers = require("spec.helpers")

describe("reload.schema", function()
  it("has a type, a default, a doc line and a merge rule for every key", function()
    local d = schema.defaults("x")
    for _, k in ipairs(schema.keys) do
      assert.is_string(k.type, k.name)
      assert.is_string(k.doc, k.name)
      assert.is_string(k.default_doc, k.name)
      assert.truthy(({ replace = true, append = true, map = true })[k.merge], k.name)
      assert.is_function(k.check, k.name)
      assert.is_not_nil(schema.by_name[k.name])
    end
    assert.are.same({ signal = "TERM", grace = 3 }, d.stop)
    assert.are.same({ "**" }, d.watch)
  end)

  it("is the README's table of service keys", function()
    local readme = helpers.read_file(helpers.root .. "/README.md")
    assert.truthy(readme:find(schema.markdown_table(), 1, true),
      "README.md must contain, as is:\n" .. schema.markdown_table())
  end)

  it("compiles globs with the core: a bad one names its entry, '!' needs an inclusion", function()
    local function err(key, v)
      local ok, e = pcall(schema.check, key, v)
      assert.is_false(ok)
      return e.dsl
    end
    assert.are.equal("'watch'[2]: unterminated '[' in pattern 'src/['",
      err("watch", { "*.c", "src/[" }))
    assert.are.equal("'watch'[1]: empty pattern", err("watch", { "" }))
    assert.matches("'!x' only excludes", err("watch", "!x"))
    assert.matches("'!a' only excludes", err("watch", { "!a", "*.c" }))
    assert.are.same({ "*.go", "!*_test.go" }, schema.check("watch", { "*.go", "!*_test.go" }))
    assert.matches("'ignore'%[1%]: unterminated", err("ignore", "[z"))
    assert.are.same({ "!keep" }, schema.check("ignore", { "!keep" }))
  end)

  it("ready: text is plain, lua_pattern opts in, and both are normalized", function()
    assert.are.same({ pattern = "loaded 100%", plain = true, timeout = 30 },
      schema.check("ready", "loaded 100%"))
    assert.are.same({ port = 80, plain = true, timeout = 30 }, schema.check("ready", 80))
    assert.are.same({ pattern = "port %d+", plain = false, timeout = 5 },
      schema.check("ready", { lua_pattern = "port %d+", timeout = 5 }))
    assert.has_error(function() schema.check("ready", { lua_pattern = "100%" }) end)
    assert.has_error(function() schema.check("ready", { pattern = "a", lua_pattern = "b" }) end)
    assert.has_error(function() schema.check("ready", { timeout = 3 }) end)
    assert.are.same({ port = 80, host = "::1", plain = true, timeout = 30 },
      schema.check("ready", { port = 80, host = "::1" }))
    local ok, e = pcall(schema.check, "ready", { port = 80, host = "localhost" })
    assert.is_false(ok)
    assert.are.equal("'ready.host' must be the IP address the service listens on, beside a " ..
      [[port ("127.0.0.1", "::1", "0.0.0.0"), not 'localhost']], e.dsl)
    assert.has_error(function() schema.check("ready", { pattern = "up", host = "::1" }) end)
    -- Bounded where the core or a timer holds the value (the core's grace is an int of ms).
    assert.has_error(function() schema.check("stop", { grace = 1e9 }) end)
    assert.are.same({ signal = "TERM", grace = 4, to = "main" },
      schema.check("stop", { grace = 4, to = "main" }))
    assert.are.same({ signal = "INT", grace = 3 }, schema.check("stop", { signal = "INT",
      to = "tree" }))
    assert.has_error(function() schema.check("stop", { to = "master" }) end)
    assert.has_error(function() schema.check("debounce", 0 / 0) end)
  end)

  it("a Lua pattern it accepts never raises in string.find, whatever the text", function()
    -- Every pattern of up to 4 items from an alphabet of pattern syntax, against every text of
    -- up to 3 characters: what the checker accepts must never raise; what it refuses must
    -- carry string.find's own message whenever string.find raises for it.
    local atoms = { "a", "%", "[", "]", "(", ")", "^", "$", "*", "-", "?", "%b", "%f", "%1",
      "%a", "b", "()", "%0" }
    local texts = { "" }
    for _, c1 in ipairs({ "a", "b", "(", "]" }) do
      texts[#texts + 1] = c1
      for _, c2 in ipairs({ "a", "b", ")", "[" }) do
        texts[#texts + 1] = c1 .. c2
        texts[#texts + 1] = c1 .. c2 .. "a"
      end
    end
    local checked, refused = 0, 0
    local function try(p)
      local e = schema.lua_pattern_error(p)
      for _, t in ipairs(texts) do
        local ok, msg = pcall(string.find, t, p)
        if e == nil then
          assert(ok, ("accepted %q, but string.find(%q) raised %s"):format(p, t, tostring(msg)))
        elseif not ok then
          assert(tostring(msg):find(e, 1, true),
            ("refused %q with %q, string.find says %s"):format(p, e, tostring(msg)))
        end
      end
      checked = checked + 1
      refused = refused + (e and 1 or 0)
    end
    local function walk(prefix, depth)
      try(prefix)
      if depth == 0 then
        return
      end
      for _, a in ipairs(atoms) do
        walk(prefix .. a, depth - 1)
      end
    end
    walk("", 3)
    assert.is_true(checked > 5000 and refused > 1000, checked .. " " .. refused)
    assert.matches("too complex", schema.lua_pattern_error(("a?"):rep(200)))
    assert.is_nil(schema.lua_pattern_error("listening on %d+"))
  end)

  it("merges a recipe's lists and maps with the user's; replace{} replaces", function()
    assert.are.same({ "**/*.go", "go.mod", "tpl/**" },
      schema.merge_value("watch", { "**/*.go", "go.mod" }, { "tpl/**", "go.mod" }))
    assert.are.same({ "tmp/", "!keep.log" }, schema.merge_value("ignore", "tmp/", "!keep.log"))
    assert.are.same({ PYTHONUNBUFFERED = "1", PORT = "1" },
      schema.merge_value("env", { PYTHONUNBUFFERED = "1" }, { PORT = "1" }))
    assert.are.same({ PORT = "1" },
      schema.merge_value("env", { PYTHONUNBUFFERED = "1" }, schema.replace({ PORT = "1" })))
    assert.are.same({ "x" }, schema.merge_value("watch", { "a" }, schema.replace({ "x" })))
    assert.are.same({ "b" }, schema.merge_value("after", { "a" }, { "b" }))
  end)

  it("turns what a run function returned into argv, or says why not", function()
    assert.are.same({ "/bin/sh", "-c", "x y" }, schema.command("x y"))
    assert.are.same({ "prog", "a" }, schema.command({ "prog", "a" }))
    local argv, why = schema.command(nil)
    assert.is_nil(argv)
    assert.matches("^returned nil; it must return a command", why)
    assert.matches("^returned number", select(2, schema.command(3)))
    assert.matches("^returned an invalid argv", select(2, schema.command({ "a", 1 })))
  end)
end)
