/*
 * glob.c: git's wildmatch rules compiled once, and gitignore semantics on top (anchoring,
 * directory-only rules, negation, nested .gitignore files, .git/info/exclude, precedence), so
 * that the watcher can prune its walk in C and the engine can match its watch globs.
 *
 * The reference is git itself (dir.c and wildmatch.c of git 2.39): the differential spec
 * compares every decision with `git check-ignore`. Where git has a quirk that changes results
 * (the literal prefix of an anchored pattern is compared before wildmatch runs on the rest,
 * so a "**" right after that prefix counts as leading), this file reproduces it.
 *
 * Lua: core.glob, core.glob_match, core.ignore; metatables reload.Glob and reload.Ignore.
 */
#include "glob.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

/* Patterns longer than this are refused (program) or never match (files): wildmatch
 * backtracks, and a bound keeps a hostile .gitignore from stalling the watcher. */
#define RL_PATTERN_MAX 4096
/* Brace expansion of one program pattern produces at most this many alternatives. */
#define RL_BRACE_MAX 256
/* .gitignore files larger than this are read only up to it (git refuses files > 100 MiB). */
#define RL_GITIGNORE_MAX (8 * 1024 * 1024)

/* String map ---------------------------------------------------------------------------------- */

typedef struct {
  char *key;
  size_t len;
  uint64_t hash;
  void *value;
} rl_slot_t;

struct rl_map {
  rl_slot_t *slots;
  size_t cap; /* power of two */
  size_t used; /* live + tombstones */
  size_t live;
};

static char rl_tombstone;

static uint64_t rl_hash(const char *s, size_t len)
{
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ull;
  }
  return h;
}

rl_map_t *rl_map_new(void)
{
  return calloc(1, sizeof(rl_map_t));
}

void rl_map_free(rl_map_t *m, void (*free_value)(void *))
{
  if (!m)
    return;
  for (size_t i = 0; i < m->cap; i++) {
    rl_slot_t *s = &m->slots[i];
    if (s->key && s->key != &rl_tombstone) {
      if (free_value)
        free_value(s->value);
      free(s->key);
    }
  }
  free(m->slots);
  free(m);
}

static rl_slot_t *rl_map_find(const rl_map_t *m, const char *key, size_t len, uint64_t h)
{
  if (!m->cap)
    return NULL;
  for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    rl_slot_t *s = &m->slots[i];
    if (!s->key)
      return NULL;
    if (s->key != &rl_tombstone && s->hash == h && s->len == len && !memcmp(s->key, key, len))
      return s;
  }
}

void *rl_map_get(const rl_map_t *m, const char *key, size_t len)
{
  rl_slot_t *s = rl_map_find(m, key, len, rl_hash(key, len));
  return s ? s->value : NULL;
}

static int rl_map_grow(rl_map_t *m)
{
  size_t cap = m->cap ? m->cap * 2 : 16;
  if (m->live * 4 < m->cap)
    cap = m->cap; /* mostly tombstones: rehash in place size */
  rl_slot_t *slots = calloc(cap, sizeof *slots);
  if (!slots)
    return -1;
  for (size_t i = 0; i < m->cap; i++) {
    rl_slot_t *s = &m->slots[i];
    if (!s->key || s->key == &rl_tombstone)
      continue;
    size_t j = s->hash & (cap - 1);
    while (slots[j].key)
      j = (j + 1) & (cap - 1);
    slots[j] = *s;
  }
  free(m->slots);
  m->slots = slots;
  m->cap = cap;
  m->used = m->live;
  return 0;
}

void *rl_map_put(rl_map_t *m, const char *key, size_t len, void *value, int *oom)
{
  uint64_t h = rl_hash(key, len);
  *oom = 0;
  rl_slot_t *s = rl_map_find(m, key, len, h);
  if (s) {
    void *old = s->value;
    s->value = value;
    return old;
  }
  if ((m->used + 1) * 4 >= m->cap * 3 && rl_map_grow(m) < 0) {
    *oom = 1;
    return NULL;
  }
  char *k = malloc(len + 1);
  if (!k) {
    *oom = 1;
    return NULL;
  }
  memcpy(k, key, len);
  k[len] = '\0';
  size_t i = h & (m->cap - 1);
  while (m->slots[i].key && m->slots[i].key != &rl_tombstone)
    i = (i + 1) & (m->cap - 1);
  if (!m->slots[i].key)
    m->used++;
  m->slots[i] = (rl_slot_t){k, len, h, value};
  m->live++;
  return NULL;
}

void *rl_map_del(rl_map_t *m, const char *key, size_t len)
{
  rl_slot_t *s = rl_map_find(m, key, len, rl_hash(key, len));
  if (!s)
    return NULL;
  void *old = s->value;
  free(s->key);
  s->key = &rl_tombstone;
  s->value = NULL;
  m->live--;
  return old;
}

void rl_map_each(const rl_map_t *m, void (*fn)(const char *key, size_t len, void *value, void *ud),
                 void *ud)
{
  for (size_t i = 0; i < m->cap; i++) {
    rl_slot_t *s = &m->slots[i];
    if (s->key && s->key != &rl_tombstone)
      fn(s->key, s->len, s->value, ud);
  }
}

/* Compiled wildmatch --------------------------------------------------------------------------- */

enum { RL_TOK_END, RL_TOK_LIT, RL_TOK_ANY, RL_TOK_CLASS, RL_TOK_STAR };

typedef struct {
  uint8_t type;
  uint8_t ch; /* RL_TOK_LIT */
  uint8_t match_slash; /* RL_TOK_STAR: may cross '/' ("**" in a path, any '*' in a basename) */
  uint8_t zero_dirs; /* RL_TOK_STAR: "**" followed by '/': first try matching no directory */
  uint32_t cls; /* RL_TOK_CLASS: index into the bitmaps */
} rl_tok_t;

typedef struct {
  rl_tok_t *tok;
  uint8_t (*cls)[32]; /* one 256-bit set per class */
  int pathname; /* '?', '*' and classes never match '/' */
} rl_wild_t;

enum { RL_WM_MATCH, RL_WM_NOMATCH, RL_WM_ABORT_ALL, RL_WM_ABORT_TO_STARSTAR };

static int rl_bit(const uint8_t *set, unsigned char c)
{
  return set[c >> 3] & (1u << (c & 7));
}

static void rl_set_bit(uint8_t *set, unsigned c)
{
  set[c >> 3] = (uint8_t)(set[c >> 3] | (1u << (c & 7)));
}

static int rl_wild_star(const rl_wild_t *w, size_t i, const char *text);

/* Matches tokens from i against text. The two abort results prune backtracking exactly as
 * wildmatch does: once the text ran out behind a star, no later start of an outer star can do
 * better. */
static int rl_wild_at(const rl_wild_t *w, size_t i, const char *text)
{
  for (;; i++, text++) {
    const rl_tok_t *t = &w->tok[i];
    unsigned char c = (unsigned char)*text;
    if (t->type == RL_TOK_END)
      return c ? RL_WM_NOMATCH : RL_WM_MATCH;
    if (!c && t->type != RL_TOK_STAR)
      return RL_WM_ABORT_ALL;
    switch (t->type) {
    case RL_TOK_LIT:
      if (c != t->ch)
        return RL_WM_NOMATCH;
      break;
    case RL_TOK_ANY:
      if (w->pathname && c == '/')
        return RL_WM_NOMATCH;
      break;
    case RL_TOK_CLASS:
      if (!rl_bit(w->cls[t->cls], c))
        return RL_WM_NOMATCH;
      break;
    default:
      return rl_wild_star(w, i, text);
    }
  }
}

static int rl_wild_star(const rl_wild_t *w, size_t i, const char *text)
{
  const rl_tok_t *star = &w->tok[i];
  const rl_tok_t *next = &w->tok[i + 1];
  /* "**" + "/": the slash may match nothing at all (a/ ** /b matches a/b). */
  if (star->zero_dirs && rl_wild_at(w, i + 2, text) == RL_WM_MATCH)
    return RL_WM_MATCH;
  if (next->type == RL_TOK_END) {
    if (!star->match_slash && strchr(text, '/'))
      return RL_WM_ABORT_TO_STARSTAR;
    return RL_WM_MATCH;
  }
  if (!star->match_slash && next->type == RL_TOK_LIT && next->ch == '/') {
    /* One '*' before a slash takes the rest of this path segment. */
    const char *slash = strchr(text, '/');
    if (!slash)
      return RL_WM_ABORT_ALL;
    return rl_wild_at(w, i + 1, slash);
  }
  for (; *text; text++) {
    int r = rl_wild_at(w, i + 1, text);
    if (r != RL_WM_NOMATCH) {
      if (!star->match_slash || r != RL_WM_ABORT_TO_STARSTAR)
        return r;
    } else if (!star->match_slash && *text == '/') {
      return RL_WM_ABORT_TO_STARSTAR;
    }
  }
  return RL_WM_ABORT_ALL;
}

static int rl_wild_match(const rl_wild_t *w, const char *text)
{
  return rl_wild_at(w, 0, text) == RL_WM_MATCH;
}

static void rl_wild_free(rl_wild_t *w)
{
  free(w->tok);
  free(w->cls);
  w->tok = NULL;
  w->cls = NULL;
}

/* Sets the members of a named class ("alpha"); ASCII only, as git's ctype. 0 if unknown. */
static int rl_class_named(uint8_t *set, const char *name, size_t len)
{
  static const char *const names[] = {"alnum", "alpha", "blank", "cntrl", "digit", "graph",
                                      "lower", "print", "punct", "space", "upper", "xdigit"};
  int which = -1;
  for (int k = 0; k < 12; k++)
    if (strlen(names[k]) == len && !memcmp(names[k], name, len))
      which = k;
  if (which < 0)
    return 0;
  for (unsigned c = 1; c < 128; c++) {
    int lower = c >= 'a' && c <= 'z', upper = c >= 'A' && c <= 'Z', digit = c >= '0' && c <= '9';
    int print = c >= 0x20 && c < 0x7f;
    int in = 0;
    switch (which) {
    case 0: in = lower || upper || digit; break;
    case 1: in = lower || upper; break;
    case 2: in = c == ' ' || c == '\t'; break;
    case 3: in = c < 0x20 || c == 0x7f; break;
    case 4: in = digit; break;
    case 5: in = print && c != ' '; break;
    case 6: in = lower; break;
    case 7: in = print; break;
    case 8: in = print && c != ' ' && !lower && !upper && !digit; break;
    case 9: in = c == ' ' || c == '\t' || c == '\n' || c == '\r'; break;
    case 10: in = upper; break;
    default: in = digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); break;
    }
    if (in)
      rl_set_bit(set, c);
  }
  return 1;
}

static unsigned rl_at(const char *p, size_t n, size_t i)
{
  return i < n ? (unsigned char)p[i] : 0u;
}

/* Parses the class that starts at p[*j] == '[' into set, following wildmatch's reading of it
 * (']' first is literal, '!' or '^' negates, ranges, [:name:], '\' escapes). On success *j is
 * the index of the closing ']'. Returns NULL or what is malformed. */
static const char *rl_class_parse(const char *p, size_t n, size_t *j, uint8_t *set, int pathname)
{
  size_t k = *j;
#define AT(x) rl_at(p, n, (x))
  unsigned c = AT(++k);
  int negated = 0;
  if (c == '^' || c == '!') {
    negated = 1;
    c = AT(++k);
  }
  unsigned prev = 0;
  do {
    if (!c)
      return "unterminated '['";
    if (c == '\\') {
      c = AT(++k);
      if (!c)
        return "unterminated '['";
      rl_set_bit(set, c);
    } else if (c == '-' && prev && AT(k + 1) && AT(k + 1) != ']') {
      c = AT(++k);
      if (c == '\\') {
        c = AT(++k);
        if (!c)
          return "unterminated '['";
      }
      for (unsigned x = prev; x <= c; x++)
        rl_set_bit(set, x);
      c = 0; /* a range cannot start another range */
    } else if (c == '[' && AT(k + 1) == ':') {
      size_t s = k + 2, e = s;
      while (AT(e) && AT(e) != ']')
        e++;
      if (!AT(e))
        return "unterminated '['";
      if (e < s + 1 || AT(e - 1) != ':') {
        rl_set_bit(set, '['); /* no ":]": an ordinary '[' */
        continue;
      }
      if (!rl_class_named(set, p + s, e - s - 1))
        return "unknown character class";
      k = e;
      c = 0;
    } else {
      rl_set_bit(set, c);
    }
  } while (prev = c, c = AT(++k), c != ']');
#undef AT
  if (negated)
    for (size_t b = 0; b < 32; b++)
      set[b] = (uint8_t)~set[b];
  set[0] &= (uint8_t)~1u;
  if (pathname)
    set['/' >> 3] &= (uint8_t) ~(1u << ('/' & 7));
  *j = k;
  return NULL;
}

/* Compiles p[0..n) (raw pattern text: escapes still in it). Returns NULL or what is wrong. */
static const char *rl_wild_compile(rl_wild_t *w, const char *p, size_t n, int pathname)
{
  memset(w, 0, sizeof *w);
  w->pathname = pathname;
  w->tok = calloc(n + 1, sizeof *w->tok);
  size_t nclass = 0;
  for (size_t i = 0; i < n; i++)
    nclass += p[i] == '[';
  w->cls = nclass ? calloc(nclass, sizeof *w->cls) : NULL;
  if (!w->tok || (nclass && !w->cls))
    return "out of memory";
  size_t t = 0, c = 0;
  for (size_t i = 0; i < n; i++) {
    rl_tok_t *tk = &w->tok[t++];
    unsigned char ch = (unsigned char)p[i];
    if (ch == '\\') {
      if (i + 1 >= n)
        return "trailing '\\'";
      tk->type = RL_TOK_LIT;
      tk->ch = (uint8_t)p[++i];
    } else if (ch == '?') {
      tk->type = RL_TOK_ANY;
    } else if (ch == '[') {
      tk->type = RL_TOK_CLASS;
      tk->cls = (uint32_t)c;
      const char *why = rl_class_parse(p, n, &i, w->cls[c++], pathname);
      if (why)
        return why;
    } else if (ch == '*') {
      size_t run = 1;
      while (i + run < n && p[i + run] == '*')
        run++;
      tk->type = RL_TOK_STAR;
      tk->match_slash = (uint8_t)!pathname;
      if (run > 1 && pathname) {
        /* "**" is special only as a whole path segment (git's rule). */
        size_t a = i + run;
        int at_start = i == 0 || p[i - 1] == '/';
        int at_end = a == n || p[a] == '/' || (p[a] == '\\' && a + 1 < n && p[a + 1] == '/');
        tk->match_slash = (uint8_t)(at_start && at_end);
        tk->zero_dirs = (uint8_t)(at_start && at_end && a < n && p[a] == '/');
      }
      i += run - 1;
    } else {
      tk->type = RL_TOK_LIT;
      tk->ch = ch;
    }
  }
  w->tok[t].type = RL_TOK_END;
  return NULL;
}

/* gitignore patterns ----------------------------------------------------------------------- */

enum {
  RL_PAT_NEGATIVE = 1, /* "!": re-includes */
  RL_PAT_MUSTBEDIR = 2, /* trailing '/': directories only */
  RL_PAT_NODIR = 4, /* no '/': matches the basename at any depth */
  RL_PAT_NEVER = 8, /* malformed: git's wildmatch aborts, so it never matches */
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
  if (!l || l == (void *)&rl_tombstone)
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

/* Reads a rules file; NULL if it is missing, unreadable or a symbolic link (git, since 2.32,
 * does not follow in-tree .gitignore symlinks). */
static rl_ilist_t *rl_ilist_read(const char *file, const char *base, size_t baselen)
{
  int fd = open(file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return NULL;
  struct stat st;
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return NULL;
  }
  size_t size = st.st_size > RL_GITIGNORE_MAX ? RL_GITIGNORE_MAX : (size_t)st.st_size;
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

/* The decision ------------------------------------------------------------------------------ */

struct rl_ignore {
  char *root; /* absolute, no trailing '/'; NULL: no files */
  int gitignore;
  rl_ilist_t *program; /* patterns given by the program: highest precedence */
  rl_ilist_t *exclude; /* .git/info/exclude */
  rl_ilist_t *defaults; /* built-in: lowest precedence */
  rl_map_t *dirs; /* dir relpath -> rl_ilist_t*, or the tombstone for "has none" */
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
  ".git", ".hg/", ".svn/", "node_modules/",
  ".*.sw[a-px]", ".*.swpx", "*~", "4913", ".#*", "#*#",
  "*___jb_tmp___", "*___jb_old___", "*.kate-swp", ".goutputstream-*",
  "sed" RL_ALNUM RL_ALNUM RL_ALNUM RL_ALNUM RL_ALNUM RL_ALNUM, ".DS_Store",
  "__pycache__/", "*.pyc", "*.timestamp-*.mjs", ".svelte-kit/", "*-go-tmp-umask", "__debug_bin*",
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
      ig->exclude = rl_ilist_read(file, "", 0);
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

/* Expands the first {a,b} group of s (unescaped) into out; recursion handles the rest. */
static int rl_brace_expand(const char *s, char **out, size_t *n, const char **why)
{
  size_t len = strlen(s), open = len, close = len;
  int depth = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] == '\\' && i + 1 < len) {
      i++;
    } else if (s[i] == '{') {
      if (depth++ == 0)
        open = i;
    } else if (s[i] == '}') {
      if (depth == 0) {
        *why = "unmatched '}'";
        return -1;
      }
      if (--depth == 0 && close == len)
        close = i;
    }
  }
  if (depth) {
    *why = "unmatched '{'";
    return -1;
  }
  if (open == len) {
    if (*n >= RL_BRACE_MAX) {
      *why = "too many brace alternatives";
      return -1;
    }
    out[(*n)++] = strdup(s);
    return out[*n - 1] ? 0 : -1;
  }
  size_t start = open + 1;
  depth = 0;
  for (size_t i = open + 1; i <= close; i++) {
    if (s[i] == '\\' && i + 1 < close) {
      i++;
      continue;
    }
    if (s[i] == '{')
      depth++;
    if (s[i] == '}' && i < close)
      depth--;
    if ((s[i] == ',' && depth == 0) || i == close) {
      size_t alt = i - start, tail = len - close - 1;
      char *one = malloc(open + alt + tail + 1);
      if (!one)
        return -1;
      memcpy(one, s, open);
      memcpy(one + open, s + start, alt);
      memcpy(one + open + alt, s + close + 1, tail);
      one[open + alt + tail] = '\0';
      int r = rl_brace_expand(one, out, n, why);
      free(one);
      if (r < 0)
        return -1;
      start = i + 1;
    }
  }
  return 0;
}

int rl_ignore_add(rl_ignore_t *ig, const char *pattern, int braces, char *err, size_t errlen)
{
  char *alts[RL_BRACE_MAX];
  size_t n = 0;
  const char *why = "out of memory";
  int rc = 0;
  if (!*pattern) {
    snprintf(err, errlen, "empty pattern");
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
    snprintf(err, errlen, "%s in pattern '%s'", why, pattern);
  return rc;
}

const rl_ilist_t *rl_ignore_dir(rl_ignore_t *ig, const char *dir, size_t len, int exists)
{
  if (!ig->gitignore)
    return NULL;
  void *v = rl_map_get(ig->dirs, dir, len);
  if (v)
    return v == (void *)&rl_tombstone ? NULL : v;
  rl_ilist_t *l = NULL;
  if (exists && ig->root) {
    size_t n = strlen(ig->root) + len + 16;
    char *file = malloc(n);
    if (!file)
      return NULL;
    snprintf(file, n, "%s/%.*s%s.gitignore", ig->root, (int)len, dir, len ? "/" : "");
    l = rl_ilist_read(file, dir, len);
    free(file);
  }
  int oom;
  rl_map_put(ig->dirs, dir, len, l ? (void *)l : (void *)&rl_tombstone, &oom);
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

/* Lua ------------------------------------------------------------------------------------------ */

#define RL_GLOB_MT "reload.Glob"
#define RL_IGNORE_MT "reload.Ignore"

typedef struct {
  rl_ignore_t *ig;
} rl_glob_ud_t;

/* Adds one program pattern or raises with the reason. */
static void rl_glob_add_or_raise(lua_State *L, rl_ignore_t *ig, const char *pattern, int braces)
{
  char err[256];
  if (rl_ignore_add(ig, pattern, braces, err, sizeof err) < 0)
    luaL_error(L, "bad glob: %s", err);
}

/* Adds the strings of the list at idx (a string or a table of strings). */
static void rl_glob_add_list(lua_State *L, rl_ignore_t *ig, int idx, int braces, const char *what)
{
  if (lua_type(L, idx) == LUA_TSTRING) {
    rl_glob_add_or_raise(L, ig, lua_tostring(L, idx), braces);
    return;
  }
  if (lua_isnoneornil(L, idx))
    return;
  luaL_argexpected(L, lua_istable(L, idx), idx, what);
  lua_Integer n = luaL_len(L, idx);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, idx, i);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "bad glob: entry %d of the list is a %s, not a string", (int)i,
                 luaL_typename(L, -1));
    rl_glob_add_or_raise(L, ig, lua_tostring(L, -1), braces);
    lua_pop(L, 1);
  }
}

static rl_glob_ud_t *rl_glob_push(lua_State *L, const char *mt, rl_ignore_t *ig)
{
  rl_glob_ud_t *ud = lua_newuserdatauv(L, sizeof *ud, 0);
  ud->ig = ig;
  luaL_setmetatable(L, mt);
  return ud;
}

static rl_ignore_t *rl_check_glob(lua_State *L, int idx, const char *mt)
{
  rl_glob_ud_t *ud = luaL_checkudata(L, idx, mt);
  if (!ud->ig)
    luaL_argerror(L, idx, "freed matcher");
  return ud->ig;
}

/* core.glob(pattern | {pattern, ...}) -> Glob   (raises on a malformed pattern)
 * gitignore syntax plus {a,b} alternatives; in a list the last matching pattern decides and
 * "!" excludes again. */
static int rl_glob_new(lua_State *L)
{
  if (lua_type(L, 1) != LUA_TSTRING)
    luaL_checktype(L, 1, LUA_TTABLE);
  if (lua_type(L, 1) == LUA_TSTRING && lua_tostring(L, 1)[0] == '!')
    return luaL_error(L, "bad glob: '%s' only excludes; put it in a list after the patterns it "
                      "excludes from (or write '\\!' for a literal '!')", lua_tostring(L, 1));
  rl_glob_ud_t *ud = rl_glob_push(L, RL_GLOB_MT, NULL);
  ud->ig = rl_ignore_new(NULL, 0, 0);
  if (!ud->ig)
    return luaL_error(L, "out of memory");
  rl_glob_add_list(L, ud->ig, 1, 1, "string or list of strings");
  return 1;
}

/* handle:method(path[, is_dir]) -> boolean for a handle of metatable mt. */
static int rl_glob_decide(lua_State *L, const char *mt)
{
  rl_ignore_t *ig = rl_check_glob(L, 1, mt);
  size_t len;
  const char *path = luaL_checklstring(L, 2, &len);
  lua_pushboolean(L, rl_ignore_path(ig, path, len, lua_toboolean(L, 3)));
  return 1;
}

/* glob:match(path[, is_dir]) -> boolean   (path relative, '/'-separated) */
static int rl_glob_match(lua_State *L)
{
  return rl_glob_decide(L, RL_GLOB_MT);
}

/* core.glob_match(pattern, path[, is_dir]) -> boolean */
static int rl_glob_match_once(lua_State *L)
{
  luaL_checkstring(L, 1);
  luaL_checkstring(L, 2);
  lua_pushcfunction(L, rl_glob_new);
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  rl_ignore_t *ig = rl_check_glob(L, -1, RL_GLOB_MT);
  size_t len;
  const char *path = lua_tolstring(L, 2, &len);
  lua_pushboolean(L, rl_ignore_path(ig, path, len, lua_toboolean(L, 3)));
  return 1;
}

static int rl_glob_gc(lua_State *L)
{
  rl_glob_ud_t *ud = lua_touserdata(L, 1);
  rl_ignore_free(ud->ig);
  ud->ig = NULL;
  return 0;
}

static int rl_opt_bool(lua_State *L, int idx, const char *key, int dflt)
{
  int t = lua_getfield(L, idx, key);
  int v = t == LUA_TNIL ? dflt : lua_toboolean(L, -1);
  if (t != LUA_TNIL && t != LUA_TBOOLEAN)
    luaL_error(L, "option '%s' must be a boolean, not a %s", key, lua_typename(L, t));
  lua_pop(L, 1);
  return v;
}

/* Builds the matcher that core.ignore and core.watch share from the options table at idx
 * (root, patterns/ignore, defaults, gitignore). Raises on misuse. */
rl_ignore_t *rl_glob_options(lua_State *L, int idx, const char *patterns_key, const char *root)
{
  int defaults = rl_opt_bool(L, idx, "defaults", 1);
  int gitignore = rl_opt_bool(L, idx, "gitignore", 1);
  if (gitignore && !root)
    luaL_error(L, "option 'root' is required when gitignore is on");
  /* Anchored in a userdata so that a raise while adding patterns does not leak it. */
  rl_glob_ud_t *ud = rl_glob_push(L, RL_IGNORE_MT, rl_ignore_new(root, gitignore, defaults));
  if (!ud->ig)
    luaL_error(L, "out of memory");
  lua_getfield(L, idx, patterns_key);
  rl_glob_add_list(L, ud->ig, lua_gettop(L), 0, "list of gitignore patterns");
  lua_pop(L, 1);
  return ud->ig;
}

/* core.ignore{ root=, patterns=, defaults=true, gitignore=true } -> Ignore */
static int rl_glob_ignore_new(lua_State *L)
{
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "root");
  const char *root = lua_tostring(L, -1);
  if (!lua_isnil(L, -1) && (lua_type(L, -1) != LUA_TSTRING || root[0] != '/'))
    return luaL_error(L, "option 'root' must be an absolute path");
  rl_glob_options(L, 1, "patterns", root);
  return 1;
}

/* ignore:ignored(path[, is_dir]) -> boolean */
static int rl_glob_ignored(lua_State *L)
{
  return rl_glob_decide(L, RL_IGNORE_MT);
}

/* ignore:forget(dir) -> true   (re-read dir/.gitignore next time; "" is the root) */
static int rl_glob_forget(lua_State *L)
{
  rl_ignore_t *ig = rl_check_glob(L, 1, RL_IGNORE_MT);
  size_t len;
  const char *dir = luaL_checklstring(L, 2, &len);
  rl_ignore_forget(ig, dir, len);
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg rl_glob_methods[] = {
  {"match",    rl_glob_match},
  {NULL, NULL},
};

static const luaL_Reg rl_ignore_methods[] = {
  {"ignored",  rl_glob_ignored},
  {"forget",   rl_glob_forget},
  {NULL, NULL},
};

static const luaL_Reg rl_glob_meta[] = {
  {"__gc",     rl_glob_gc},
  {"__close",  rl_glob_gc},
  {NULL, NULL},
};

static const luaL_Reg rl_glob_functions[] = {
  {"glob",        rl_glob_new},
  {"glob_match",  rl_glob_match_once},
  {"ignore",      rl_glob_ignore_new},
  {NULL, NULL},
};

static void rl_glob_metatable(lua_State *L, const char *name, const luaL_Reg *methods)
{
  luaL_newmetatable(L, name);
  luaL_setfuncs(L, rl_glob_meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

void rl_glob_open(lua_State *L)
{
  rl_glob_metatable(L, RL_GLOB_MT, rl_glob_methods);
  rl_glob_metatable(L, RL_IGNORE_MT, rl_ignore_methods);
  luaL_setfuncs(L, rl_glob_functions, 0);
}
