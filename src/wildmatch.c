/*
 * wildmatch.c: the compiled wildmatch of wildmatch.h. The matcher follows git's wildmatch.c
 * result for result, its two abort codes included (they prune backtracking); consecutive "**"
 * segments are compiled as one (each would retry every split of the path: exponential time).
 */
#include "wildmatch.h"

#include <stdlib.h>
#include <string.h>

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
    default: return rl_wild_star(w, i, text);
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

int rl_wild_match(const rl_wild_t *w, const char *text)
{
  return rl_wild_at(w, 0, text) == RL_WM_MATCH;
}

void rl_wild_free(rl_wild_t *w)
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

const char *rl_wild_compile(rl_wild_t *w, const char *p, size_t n, int pathname)
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
        /* "**" segments in a row ("a/ ** / ** /b") mean what one means, but each would try
         * every split of the path again: exponential time. One is kept. */
        while (at_start && a < n && p[a] == '/') {
          size_t b = a + 1;
          while (b < n && p[b] == '*')
            b++;
          if (b - a - 1 < 2 || (b < n && p[b] != '/'))
            break;
          a = b;
          run = a - i;
        }
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
