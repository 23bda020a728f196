/*
 * ignore.c: gitignore semantics on top of wildmatch.c (anchoring, directory-only rules,
 * negation, nested .gitignore files, .git/info/exclude, precedence, built-in defaults) and the
 * program's own patterns with {a,b} alternatives, so that the watcher can prune its walk in C
 * and the engine can match its watch globs.
 *
 * The reference is git itself (dir.c of git 2.39): the differential spec compares every
 * decision with `git check-ignore`. Where git has a quirk that changes results (the literal
 * prefix of an anchored pattern is compared before wildmatch runs on the rest, so a "**" right
 * after that prefix counts as leading), this file reproduces it.
 *
 * Boundary: plain C and file reading; no Lua (glob.c is the binding), so the fuzzer links it
 * alone.
 */
#include "ignore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "longpath.h"
#include "map.h"
#include "wildmatch.h"

/* Brace expansion of one program pattern produces at most this many alternatives, from at most
 * this many groups nested at most this deep. */
#define RL_BRACE_MAX 256
#define RL_BRACE_GROUPS 64
#define RL_BRACE_DEPTH 32
/* A rules file larger than this is not read at all (a partial read would cut a line, and so
 * change a pattern); git 2.39 reads any size, newer git versions refuse pattern and attribute
 * files over 100 MiB as well. */
#define RL_GITIGNORE_MAX (100 * 1024 * 1024)

/* The value cached for a directory known to have no .gitignore. */
static char rl_no_rules;

enum {
  RL_PAT_NEGATIVE = 1,  /* "!": re-includes */
  RL_PAT_MUSTBEDIR = 2, /* trailing '/': directories only */
  RL_PAT_NODIR = 4,     /* no '/': matches the basename at any depth */
  RL_PAT_NEVER = 8,     /* malformed: git's wildmatch aborts, so it never matches */
};

typedef struct {
  unsigned flags;
  char *prefix; /* literal start of an anchored pattern, compared before wildmatch runs; for a
                 * basename pattern without wildcards (or "*" + such), the literal (suffix) */
  size_t prefixlen;
  int literal; /* basename pattern: 1 = the whole name is prefix, 2 = "*" + prefix */
  rl_wild_t wild;
} rl_pat_t;

struct rl_ilist {
  char *base; /* directory of the rules, relative, "" or ending in '/' */
  size_t baselen;
  rl_pat_t *pats;
  size_t n, cap;
};

static int rl_glob_special(char c)
{
  return c == '*' || c == '?' || c == '[' || c == '\\';
}

static void rl_pat_free(rl_pat_t *pat)
{
  free(pat->prefix);
  rl_wild_free(&pat->wild);
}

/* Compiles one gitignore line (already trimmed, not a comment). Returns NULL, or the reason it
 * is malformed (the pattern is then kept as never-matching). */
static const char *rl_pat_compile(rl_pat_t *pat, const char *s)
{
  memset(pat, 0, sizeof *pat);
  if (*s == '!') {
    pat->flags |= RL_PAT_NEGATIVE;
    s++;
  }
  size_t len = strlen(s);
  if (len > RL_PATTERN_MAX) {
    pat->flags |= RL_PAT_NEVER;
    return "pattern too long";
  }
  size_t nowild = 0;
  while (s[nowild] && !rl_glob_special(s[nowild]))
    nowild++;
  if (len && s[len - 1] == '/') {
    len--;
    pat->flags |= RL_PAT_MUSTBEDIR;
  }
  if (nowild > len)
    nowild = len;
  if (!memchr(s, '/', len))
    pat->flags |= RL_PAT_NODIR;
  const char *why;
  if (pat->flags & RL_PAT_NODIR) {
    /* git's shortcuts, which most names take: a plain name, or "*" and a plain suffix ("*.o"),
     * compared without running the matcher (the common case of the walk). */
    size_t plain = 0;
    while (plain < len && !rl_glob_special(s[plain]))
      plain++;
    size_t tail = 1;
    while (len && tail < len && !rl_glob_special(s[tail]))
      tail++;
    if (plain == len)
      pat->literal = 1;
    else if (len && s[0] == '*' && tail == len)
      pat->literal = 2;
    if (pat->literal) {
      size_t off = pat->literal == 2;
      pat->prefix = strndup(s + off, len - off);
      pat->prefixlen = len - off;
      if (!pat->prefix)
        return "out of memory";
    }
    why = rl_wild_compile(&pat->wild, s, len, 0);
  } else {
    if (*s == '/') {
      s++;
      len--;
      nowild--;
    }
    pat->prefix = malloc(nowild + 1);
    if (!pat->prefix)
      return "out of memory";
    memcpy(pat->prefix, s, nowild);
    pat->prefix[nowild] = '\0';
    pat->prefixlen = nowild;
    why = rl_wild_compile(&pat->wild, s + nowild, len - nowild, 1);
  }
  if (why)
    pat->flags |= RL_PAT_NEVER;
  return why;
}

/* A path being decided, with its last component found once rather than once per pattern. */
typedef struct {
  const char *path, *base;
  size_t len, baselen;
  int is_dir;
} rl_subject_t;

static int rl_pat_match(const rl_pat_t *pat, const rl_ilist_t *l, const rl_subject_t *s)
{
  if (pat->flags & RL_PAT_NEVER)
    return 0;
  if ((pat->flags & RL_PAT_MUSTBEDIR) && !s->is_dir)
    return 0;
  if (pat->flags & RL_PAT_NODIR) {
    const char *base = s->base;
    size_t baselen = s->baselen;
    if (pat->literal == 1)
      return baselen == pat->prefixlen && !memcmp(base, pat->prefix, baselen);
    if (pat->literal == 2)
      return baselen >= pat->prefixlen &&
             !memcmp(base + baselen - pat->prefixlen, pat->prefix, pat->prefixlen);
    /* A pattern that starts with a plain character cannot match a name that does not. */
    const rl_tok_t *first = &pat->wild.tok[0];
    if (first->type == RL_TOK_LIT && (unsigned char)base[0] != first->ch)
      return 0;
    return rl_wild_match(&pat->wild, base);
  }
  if (s->len < l->baselen + 1 || memcmp(s->path, l->base, l->baselen))
    return 0;
  const char *name = s->path + l->baselen;
  size_t namelen = s->len - l->baselen;
  if (pat->prefixlen) {
    if (pat->prefixlen > namelen || memcmp(pat->prefix, name, pat->prefixlen))
      return 0;
    name += pat->prefixlen;
  }
  return rl_wild_match(&pat->wild, name);
}

static rl_ilist_t *rl_ilist_new(const char *base, size_t baselen)
{
  rl_ilist_t *l = calloc(1, sizeof *l);
  if (!l)
    return NULL;
  l->base = malloc(baselen + 2);
  if (!l->base) {
    free(l);
    return NULL;
  }
  memcpy(l->base, base, baselen);
  if (baselen)
    l->base[baselen++] = '/';
  l->base[baselen] = '\0';
  l->baselen = baselen;
  return l;
}

static void rl_ilist_free(void *p)
{
  rl_ilist_t *l = p;
  if (!l || l == (void *)&rl_no_rules)
    return;
  for (size_t i = 0; i < l->n; i++)
    rl_pat_free(&l->pats[i]);
  free(l->pats);
  free(l->base);
  free(l);
}

/* Appends a compiled line; returns the malformation (still appended) or NULL. */
static const char *rl_ilist_add(rl_ilist_t *l, const char *line, int *oom)
{
  *oom = 0;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 8;
    rl_pat_t *pats = realloc(l->pats, cap * sizeof *pats);
    if (!pats) {
      *oom = 1;
      return "out of memory";
    }
    l->pats = pats;
    l->cap = cap;
  }
  const char *why = rl_pat_compile(&l->pats[l->n++], line);
  return why;
}

/* Which rule of the list matches last (later lines win): 1 ignore, 0 re-include, -1 none. */
static int rl_ilist_decide(const rl_ilist_t *l, const rl_subject_t *s)
{
  if (!l)
    return -1;
  for (size_t i = l->n; i-- > 0;)
    if (rl_pat_match(&l->pats[i], l, s))
      return (l->pats[i].flags & RL_PAT_NEGATIVE) ? 0 : 1;
  return -1;
}

/* git's trim_trailing_spaces: unescaped trailing spaces go (tabs stay). */
static void rl_trim_trailing_spaces(char *s)
{
  char *last_space = NULL;
  for (char *p = s; *p; p++) {
    if (*p == ' ') {
      if (!last_space)
        last_space = p;
      continue;
    }
    if (*p == '\\') {
      p++;
      if (!*p)
        return;
    }
    last_space = NULL;
  }
  if (last_space)
    *last_space = '\0';
}

/* Adds every rule of a gitignore buffer (modified in place) as git reads it: BOM, CRLF,
 * comments, blank lines, trailing spaces. */
static int rl_ilist_parse(rl_ilist_t *l, char *buf, size_t size)
{
  if (size >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3)) {
    buf += 3;
    size -= 3;
  }
  char *entry = buf;
  for (size_t i = 0; i <= size; i++) {
    if (i < size && buf[i] != '\n')
      continue;
    if (entry != buf + i && entry[0] != '#') {
      size_t end = i;
      if (end > (size_t)(entry - buf) && buf[end - 1] == '\r')
        end--;
      buf[end] = '\0';
      rl_trim_trailing_spaces(entry);
      int oom;
      rl_ilist_add(l, entry, &oom);
      if (oom)
        return -1;
    }
    entry = buf + i + 1;
  }
  return 0;
}

/* Reads a rules file whole; NULL if it is missing, unreadable, not a regular file (a FIFO would
 * block the open and every read), over RL_GITIGNORE_MAX, or, unless follow, a symbolic link:
 * git (since 2.32) does not follow in-tree .gitignore symlinks, but does follow
 * .git/info/exclude. */
static rl_ilist_t *rl_ilist_read(const char *file, const char *base, size_t baselen, int follow)
{
  int fd = rl_open_long(file, O_RDONLY | O_NONBLOCK | (follow ? 0 : O_NOFOLLOW));
  if (fd < 0)
    return NULL;
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > RL_GITIGNORE_MAX) {
    close(fd);
    return NULL;
  }
  size_t size = (size_t)st.st_size;
  char *buf = malloc(size + 1);
  rl_ilist_t *l = buf ? rl_ilist_new(base, baselen) : NULL;
  size_t got = 0;
  while (l && got < size) {
    ssize_t r = read(fd, buf + got, size - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  close(fd);
  if (l && rl_ilist_parse(l, buf, got) < 0) {
    rl_ilist_free(l);
    l = NULL;
  }
  free(buf);
  return l;
}

/* The decision --------------------------------------------------------------------------------- */

struct rl_ignore {
  char *root; /* absolute, no trailing '/'; NULL: no files */
  int gitignore;
  rl_ilist_t *program;  /* patterns given by the program: highest precedence */
  rl_ilist_t *exclude;  /* .git/info/exclude */
  rl_ilist_t *defaults; /* built-in: lowest precedence */
  rl_map_t *dirs;       /* dir relpath -> rl_ilist_t*, or the tombstone for "has none" */
};

/* Built-in defaults. Version control metadata and dependency trees are never sources a rebuild
 * waits for; then files that editors and tools write next to the one being saved, or only look
 * at: vim's swap files (.x.swp ... .x.swx, .x.swpx, which vim also creates and removes to probe
 * a directory on open) and backups (x~), its "4913" write probe, Emacs locks (.#x) and
 * autosaves (#x#), JetBrains safe-write temporaries, Kate swap files, the GIO temporaries of
 * gedit and GNOME editors, `sed -i` temporaries (sed + 6 letters or digits), and macOS folder
 * metadata. Last, what toolchains write into the tree while a program starts or builds, which
 * would restart it (a loop, when the start writes it): Python's bytecode, Vite 4-5's bundled
 * config (x.config.js.timestamp-<ms>-<hash>.mjs, written beside the config and removed at each
 * start), SvelteKit's generated .svelte-kit/, go build's umask probe (<output>-go-tmp-umask)
 * and Delve's debug binary (__debug_bin, __debug_bin<n> since 1.21). Only names no one gives a
 * source file: Cargo's target/ is a default only where a Cargo.toml says so (reload.detect).
 * docs/watching.md lists them; spec/functional/ignore_spec.lua proves each. */
#define RL_ALNUM "[a-zA-Z0-9]"
static const char *const rl_default_patterns[] = {
    ".git",
    ".hg/",
    ".svn/",
    "node_modules/",
    ".*.sw[a-px]",
    ".*.swpx",
    "*~",
    "4913",
    ".#*",
    "#*#",
    "*___jb_tmp___",
    "*___jb_old___",
    "*.kate-swp",
    ".goutputstream-*",
    "sed" RL_ALNUM RL_ALNUM RL_ALNUM RL_ALNUM RL_ALNUM RL_ALNUM,
    ".DS_Store",
    "__pycache__/",
    "*.pyc",
    "*.timestamp-*.mjs",
    ".svelte-kit/",
    "*-go-tmp-umask",
    "__debug_bin*",
    NULL,
};

rl_ignore_t *rl_ignore_new(const char *root, int gitignore, int defaults)
{
  rl_ignore_t *ig = calloc(1, sizeof *ig);
  if (!ig)
    return NULL;
  ig->gitignore = gitignore && root;
  ig->program = rl_ilist_new("", 0);
  ig->defaults = rl_ilist_new("", 0);
  ig->dirs = rl_map_new();
  if (root) {
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/')
      n--;
    ig->root = strndup(root, n);
  }
  if (!ig->program || !ig->defaults || !ig->dirs || (root && !ig->root)) {
    rl_ignore_free(ig);
    return NULL;
  }
  int oom = 0;
  for (size_t i = 0; defaults && rl_default_patterns[i] && !oom; i++)
    rl_ilist_add(ig->defaults, rl_default_patterns[i], &oom);
  if (ig->gitignore) {
    size_t n = strlen(ig->root) + 32;
    char *file = malloc(n);
    if (file) {
      snprintf(file, n, "%s/.git/info/exclude", ig->root);
      ig->exclude = rl_ilist_read(file, "", 0, 1);
      free(file);
    }
  }
  if (oom) {
    rl_ignore_free(ig);
    return NULL;
  }
  return ig;
}

void rl_ignore_free(rl_ignore_t *ig)
{
  if (!ig)
    return;
  rl_ilist_free(ig->program);
  rl_ilist_free(ig->exclude);
  rl_ilist_free(ig->defaults);
  rl_map_free(ig->dirs, rl_ilist_free);
  free(ig->root);
  free(ig);
}

/* Finds the first top-level {…} group of s[0..len) (unescaped) in *open..*close, checking the
 * whole string on the way. Returns 1 when found, 0 when s has no group, -1 (why) malformed. */
static int rl_brace_find(const char *s, size_t len, size_t *open, size_t *close, const char **why)
{
  int depth = 0;
  *open = *close = len;
  for (size_t i = 0; i < len; i++) {
    if (s[i] == '\\' && i + 1 < len) {
      i++;
    } else if (s[i] == '{') {
      if (depth == 0 && *open == len)
        *open = i;
      if (++depth > RL_BRACE_DEPTH) {
        *why = "braces nested too deeply (over 32 levels)";
        return -1;
      }
    } else if (s[i] == '}') {
      if (depth == 0) {
        *why = "unmatched '}'";
        return -1;
      }
      if (--depth == 0 && *close == len)
        *close = i;
    }
  }
  if (depth) {
    *why = "unmatched '{'";
    return -1;
  }
  return *open < len;
}

/* Expands every {a,b} group of pattern (nested ones included) into out[0..*n), without
 * recursion: a work stack of strings, each step replacing the first group of one string by each
 * of its alternatives. Every string on the stack yields at least one result, so the stack never
 * holds more than RL_BRACE_MAX; with at most RL_BRACE_GROUPS groups, a pattern costs at most
 * RL_BRACE_MAX * RL_BRACE_GROUPS steps of RL_PATTERN_MAX bytes. */
static int rl_brace_expand(const char *pattern, char **out, size_t *n, const char **why)
{
  size_t groups = 0;
  for (const char *c = pattern; *c; c++) {
    if (*c == '\\' && c[1])
      c++;
    else if (*c == '{' && ++groups > RL_BRACE_GROUPS) {
      *why = "too many brace groups (over 64)";
      return -1;
    }
  }
  char *stack[RL_BRACE_MAX];
  size_t top = 0;
  int rc = 0;
  if (!(stack[top++] = strdup(pattern)))
    return -1;
  while (top && rc == 0) {
    char *s = stack[--top];
    size_t len = strlen(s), open, close;
    int found = rl_brace_find(s, len, &open, &close, why);
    if (found <= 0) {
      if (found == 0 && *n >= RL_BRACE_MAX) {
        *why = "too many brace alternatives";
        found = -1;
      }
      if (found == 0)
        out[(*n)++] = s;
      else
        free(s);
      rc = found;
      continue;
    }
    /* The alternatives at depth 0 inside the group, pushed last first so that results keep the
     * pattern's order. */
    size_t ends[RL_BRACE_MAX + 1], nalt = 0;
    int depth = 0;
    for (size_t i = open + 1; i <= close && nalt <= RL_BRACE_MAX; i++) {
      if (s[i] == '\\' && i + 1 < close) {
        i++;
      } else if (s[i] == '{') {
        depth++;
      } else if (s[i] == '}' && i < close) {
        depth--;
      } else if ((s[i] == ',' && depth == 0) || i == close) {
        ends[nalt++] = i;
      }
    }
    if (top + nalt + *n > RL_BRACE_MAX) {
      *why = "too many brace alternatives";
      rc = -1;
    }
    for (size_t k = nalt; k-- > 0 && rc == 0;) {
      size_t start = k ? ends[k - 1] + 1 : open + 1;
      size_t alt = ends[k] - start, tail = len - close - 1;
      char *one = malloc(open + alt + tail + 1);
      if (!one) {
        *why = "out of memory";
        rc = -1;
        break;
      }
      memcpy(one, s, open);
      memcpy(one + open, s + start, alt);
      memcpy(one + open + alt, s + close + 1, tail);
      one[open + alt + tail] = '\0';
      stack[top++] = one;
    }
    free(s);
  }
  while (top)
    free(stack[--top]);
  return rc;
}

int rl_ignore_add(rl_ignore_t *ig, const char *pattern, size_t len, int braces, char *err,
                  size_t errlen)
{
  char *alts[RL_BRACE_MAX];
  size_t n = 0;
  const char *why = "out of memory";
  int rc = 0;
  /* A NUL would cut the pattern short where C reads it; the length bound comes before any work
   * on the pattern, brace expansion included. */
  if (!len) {
    snprintf(err, errlen, "empty pattern");
    return -1;
  }
  if (memchr(pattern, '\0', len)) {
    snprintf(err, errlen, "NUL byte in pattern '%.80s%s'", pattern,
             strlen(pattern) > 80 ? "..." : "");
    return -1;
  }
  if (len > RL_PATTERN_MAX) {
    snprintf(err, errlen, "pattern too long (over %d bytes)", RL_PATTERN_MAX);
    return -1;
  }
  if (braces) {
    rc = rl_brace_expand(pattern, alts, &n, &why);
  } else {
    alts[0] = strdup(pattern);
    n = alts[0] ? 1 : 0;
    rc = n ? 0 : -1;
  }
  for (size_t i = 0; i < n && rc == 0; i++) {
    int oom;
    const char *bad = rl_ilist_add(ig->program, alts[i], &oom);
    if (bad) {
      why = bad;
      rc = -1;
    }
  }
  for (size_t i = 0; i < n; i++)
    free(alts[i]);
  if (rc < 0)
    snprintf(err, errlen, "%s in pattern '%.80s%s'", why, pattern, len > 80 ? "..." : "");
  return rc;
}

const rl_ilist_t *rl_ignore_dir(rl_ignore_t *ig, const char *dir, size_t len, int exists)
{
  if (!ig->gitignore)
    return NULL;
  void *v = rl_map_get(ig->dirs, dir, len);
  if (v)
    return v == (void *)&rl_no_rules ? NULL : v;
  rl_ilist_t *l = NULL;
  if (exists && ig->root) {
    size_t n = strlen(ig->root) + len + 16;
    char *file = malloc(n);
    if (!file)
      return NULL;
    snprintf(file, n, "%s/%.*s%s.gitignore", ig->root, (int)len, dir, len ? "/" : "");
    l = rl_ilist_read(file, dir, len, 0);
    free(file);
  }
  int oom;
  rl_map_put(ig->dirs, dir, len, l ? (void *)l : (void *)&rl_no_rules, &oom);
  if (oom) {
    rl_ilist_free(l); /* not cached: read again next time */
    return NULL;
  }
  return l;
}

int rl_ignore_set_rules(rl_ignore_t *ig, const char *dir, size_t len, char *buf, size_t size)
{
  rl_ilist_t *l = rl_ilist_new(dir, len);
  if (!l || rl_ilist_parse(l, buf, size) < 0) {
    rl_ilist_free(l);
    return -1;
  }
  int oom;
  rl_ilist_free(rl_map_put(ig->dirs, dir, len, l, &oom));
  if (oom) {
    rl_ilist_free(l);
    return -1;
  }
  ig->gitignore = 1;
  return 0;
}

void rl_ignore_forget(rl_ignore_t *ig, const char *dir, size_t len)
{
  rl_ilist_free(rl_map_del(ig->dirs, dir, len));
}

int rl_ignore_decide(const rl_ignore_t *ig, const rl_ilist_t *const *stack, size_t depth,
                     const char *path, size_t len, int is_dir)
{
  const char *slash = memrchr(path, '/', len);
  const char *base = slash ? slash + 1 : path;
  rl_subject_t s = {path, base, len, len - (size_t)(base - path), is_dir};
  /* git's order: command line, then .gitignore files from the deepest up, then exclude files. */
  int r = rl_ilist_decide(ig->program, &s);
  for (size_t i = depth; r < 0 && i-- > 0;)
    r = rl_ilist_decide(stack[i], &s);
  if (r < 0)
    r = rl_ilist_decide(ig->exclude, &s);
  if (r < 0)
    r = rl_ilist_decide(ig->defaults, &s);
  return r == 1;
}

int rl_ignore_path(rl_ignore_t *ig, const char *given, size_t len, int is_dir)
{
  const rl_ilist_t *small[32];
  const rl_ilist_t **stack = small;
  size_t cap = 32, depth = 0;
  int result = 0;
  /* No file name holds a NUL, and the matcher reads NUL-terminated text: such a path would be
   * read short by one part and in full by another. */
  if (memchr(given, '\0', len))
    return 0;
  while (len && given[len - 1] == '/')
    len--;
  /* The matcher reads NUL-terminated text: each parent is cut out in a copy. */
  char *path = strndup(given, len);
  if (!path)
    return 0;
  stack[depth++] = rl_ignore_dir(ig, "", 0, 1);
  for (size_t i = 0; i < len && !result; i++) {
    if (path[i] != '/')
      continue;
    /* A directory on the way that is ignored hides everything below it, '!' included. */
    path[i] = '\0';
    result = rl_ignore_decide(ig, stack, depth, path, i, 1);
    path[i] = '/';
    if (result)
      break;
    if (depth == cap) {
      const rl_ilist_t **bigger = malloc(2 * cap * sizeof *bigger);
      if (!bigger)
        break;
      memcpy(bigger, stack, depth * sizeof *stack);
      if (stack != small)
        free(stack);
      stack = bigger;
      cap *= 2;
    }
    stack[depth++] = rl_ignore_dir(ig, path, i, 1);
  }
  if (!result)
    result = rl_ignore_decide(ig, stack, depth, path, len, is_dir);
  if (stack != small)
    free(stack);
  free(path);
  return result;
}
