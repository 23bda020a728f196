-- core.glob: git's wildmatch rules with gitignore anchoring, plus {a,b} alternatives.
local core = require("reload.core")

local function yes(pattern, path, is_dir)
  assert(core.glob_match(pattern, path, is_dir),
    ("%q should match %q%s"):format(pattern, path, is_dir and " (dir)" or ""))
end

local function no(pattern, path, is_dir)
  assert(not core.glob_match(pattern, path, is_dir),
    ("%q should not match %q%s"):format(pattern, path, is_dir and " (dir)" or ""))
end

describe("core.glob", function()
  it("matches *, ? and basenames at any depth when the pattern has no slash", function()
    yes("*.go", "main.go")
    yes("*.go", "cmd/api/main.go")
    yes("ma?n.go", "cmd/main.go")
    no("*.go", "main.goo")
    no("?", "ab")
  end)

  it("anchors patterns with a leading or middle slash", function()
    yes("/main.go", "main.go")
    no("/main.go", "cmd/main.go")
    yes("cmd/*.go", "cmd/main.go")
    no("cmd/*.go", "x/cmd/main.go")
    no("cmd/*.go", "cmd/api/main.go")
  end)

  it("follows ** rules", function()
    yes("**/*.go", "main.go")
    yes("**/*.go", "a/b/c.go")
    yes("a/**/b", "a/b")
    yes("a/**/b", "a/x/y/b")
    no("a/**/b", "ab")
    yes("a/**", "a/x/y")
    no("a/**", "a")
    yes("**/vendor", "x/vendor", true)
    no("a**b/c", "ax/yb/c") -- ** not a whole segment: one segment only
    yes("a**b/c", "axyb/c")
  end)

  it("treats a trailing slash as directories only, and everything below them", function()
    yes("build/", "build", true)
    no("build/", "build")
    yes("build/", "build/out/x.o")
    yes("build", "build/x.o")
  end)

  it("supports classes, ranges, negation and named classes", function()
    yes("[abc].c", "b.c")
    yes("[a-c].c", "b.c")
    no("[!a-c].c", "b.c")
    yes("[^a-c].c", "d.c")
    yes("[[:digit:]][[:alpha:]]", "1x")
    no("[[:upper:]]", "a")
    yes("[]]", "]")
    yes("[a-]", "-")
    no("a[/]b", "a/b")
  end)

  it("honours escapes", function()
    yes("\\*.go", "*.go")
    no("\\*.go", "x.go")
    yes("\\!x", "!x")
    yes("\\#x", "#x")
    yes("a\\?", "a?")
  end)

  it("expands {a,b} alternatives, nested", function()
    yes("*.{c,h}", "x.c")
    yes("*.{c,h}", "x.h")
    no("*.{c,h}", "x.o")
    yes("src/{a,b/{c,d}}.go", "src/b/d.go")
    yes("\\{a,b\\}", "{a,b}")
  end)

  it("decides lists the gitignore way: the last match wins, ! excludes again", function()
    local g = core.glob({ "**/*.go", "!**/*_test.go", "go.mod" })
    assert.is_true(g:match("cmd/main.go"))
    assert.is_false(g:match("cmd/main_test.go"))
    assert.is_true(g:match("go.mod"))
    assert.is_false(g:match("README.md"))
  end)

  it("raises a clear message on a malformed pattern", function()
    assert.has_error(function() core.glob("[abc") end,
      "bad glob: unterminated '[' in pattern '[abc'")
    assert.has_error(function() core.glob("[[:nope:]]") end,
      "bad glob: unknown character class in pattern '[[:nope:]]'")
    assert.has_error(function() core.glob("a\\") end, "bad glob: trailing '\\' in pattern 'a\\'")
    assert.has_error(function() core.glob("a{b") end, "bad glob: unmatched '{' in pattern 'a{b'")
    assert.has_error(function() core.glob("") end, "bad glob: empty pattern")
    assert.has_error(function() core.glob("!x") end)
    assert.has_error(function() core.glob({ "ok", 3 }) end)
  end)

  it("does not stall on a pathological pattern", function()
    local t = os.clock()
    local p = ("*a"):rep(30) .. "b"
    assert.is_false(core.glob_match(p, ("a"):rep(60)))
    local q = ("**/a"):rep(10) .. "/b"
    assert.is_false(core.glob_match(q, ("a/"):rep(30) .. "c"))
    assert.is_true(os.clock() - t < 1)
  end)
end)

-- Found by attacking the matcher (issue "the C core, hardened"): each case failed, crashed or
-- stalled before the fix.
describe("core.glob under attack", function()
  it("expands every top-level {} group, not only one", function()
    yes("{src,lib}/*.{c,h}", "src/x.c")
    yes("{src,lib}/*.{c,h}", "lib/y.h")
    no("{src,lib}/*.{c,h}", "src/x.o")
    no("{src,lib}/*.{c,h}", "doc/x.c")
    yes("{a,b}{c,d}{e,f}", "bde")
    yes("x{1,2}/{a,{b,c}}", "x2/c")
    no("{a,b}{c,d}", "ab")
  end)

  it("refuses a NUL byte in a pattern or a path rather than truncating or overreading", function()
    assert.has_error(function() core.glob("a\0b") end, "bad glob: NUL byte in pattern 'a'")
    assert.has_error(function() core.glob({ "ok", "*.c\0.h" }) end,
      "bad glob: NUL byte in pattern '*.c'")
    assert.has_error(function() core.glob_match("a", "a\0b") end)
    local g = core.glob("*.c")
    assert.has_error(function() g:match("x.c\0/y") end)
    local ig = core.ignore({ gitignore = false })
    assert.has_error(function() ig:ignored(("d/"):rep(40) .. "\0" .. ("x"):rep(200)) end)
  end)

  it("refuses huge and deeply nested brace patterns without exhausting the stack", function()
    local function raises(fn, prefix)
      local ok, err = pcall(fn)
      assert(not ok, "no error; expected " .. prefix)
      err = tostring(err):gsub("^[^:]*:%d+: ", "")
      assert(tostring(err):sub(1, #prefix) == prefix, ("%q does not start with %q"):format(
        tostring(err):sub(1, 200), prefix))
    end
    raises(function() core.glob(("{"):rep(10000) .. ("}"):rep(10000)) end,
      "bad glob: pattern too long (over 4096 bytes)")
    raises(function() core.glob(("{a,"):rep(3000)) end,
      "bad glob: pattern too long (over 4096 bytes)")
    -- Within the length limit, nesting, groups and alternatives are bounded and answer at once.
    local t = os.clock()
    raises(function() core.glob(("{"):rep(40) .. "x" .. ("}"):rep(40)) end,
      "bad glob: braces nested too deeply (over 32 levels) in pattern '{{{")
    raises(function() core.glob(("{"):rep(1500) .. "x" .. ("}"):rep(1500)) end,
      "bad glob: too many brace groups (over 64) in pattern '{{{")
    raises(function() core.glob(("{a}"):rep(1000)) end, "bad glob: too many brace groups")
    raises(function() core.glob("{" .. (","):rep(4000) .. "}") end,
      "bad glob: too many brace alternatives")
    raises(function() core.glob(("{a,b}"):rep(9)) end,
      "bad glob: too many brace alternatives in pattern '{a,b}")
    yes(("{a,b}"):rep(8), ("ab"):rep(4))
    yes(("{a}"):rep(64), ("a"):rep(64))
    yes(("{"):rep(32) .. "x" .. ("}"):rep(32), "x")
    assert.is_true(os.clock() - t < 1)
  end)

  it("collapses consecutive /** segments: linear time, same answers", function()
    local t = os.clock()
    local deep = ("x/"):rep(100)
    local p16 = "a" .. ("/**"):rep(16) .. "/b"
    assert.is_false(core.glob_match(p16, "a/" .. deep .. "c"))
    assert.is_true(os.clock() - t < 0.2, "16 segments took " .. (os.clock() - t) .. " s")
    local p20 = "a" .. ("/**"):rep(20) .. "/b"
    assert.is_false(core.glob_match(p20, "a/" .. deep .. "c"))
    assert.is_true(core.glob_match(p20, "a/" .. deep .. "b"))
    assert.is_true(os.clock() - t < 0.5, "20 segments took " .. (os.clock() - t) .. " s")
    for _, p in ipairs({ "a/**/**/b", "**/**/b", "a/**/**", "**/**" }) do
      local single = p:gsub("%*%*/%*%*", "**")
      for _, path in ipairs({ "a/b", "a/x/b", "a/x/y/b", "b", "ab", "a", "x/a/b", "a/x" }) do
        assert.are.equal(core.glob_match(single, path), core.glob_match(p, path),
          ("%q and %q disagree on %q"):format(p, single, path))
      end
    end
  end)
end)
