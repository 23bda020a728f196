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
