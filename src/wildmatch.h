/*
 * wildmatch.h: git's wildmatch rules (wildmatch.c of git 2.39), compiled once into tokens and
 * matched without allocating: '*', '?', '[...]' classes with ranges, negation and [:names:],
 * '\\' escapes, and "**" across directories. Pure computation: no files, no Lua.
 */
#ifndef RELOAD_WILDMATCH_H
#define RELOAD_WILDMATCH_H

#include <stddef.h>
#include <stdint.h>

enum { RL_TOK_END, RL_TOK_LIT, RL_TOK_ANY, RL_TOK_CLASS, RL_TOK_STAR };

typedef struct {
  uint8_t type;
  uint8_t ch;          /* RL_TOK_LIT */
  uint8_t match_slash; /* RL_TOK_STAR: may cross '/' ("**" in a path, any '*' in a basename) */
  uint8_t zero_dirs;   /* RL_TOK_STAR: "**" followed by '/': first try matching no directory */
  uint32_t cls;        /* RL_TOK_CLASS: index into the bitmaps */
} rl_tok_t;

typedef struct {
  rl_tok_t *tok;
  uint8_t (*cls)[32]; /* one 256-bit set per class */
  int pathname;       /* '?', '*' and classes never match '/' */
} rl_wild_t;

/* Compiles p[0..n) (raw pattern text: escapes still in it) into w. pathname: '?', '*' and
 * classes never match '/' and "**" is special (git's WM_PATHNAME). Returns NULL, or what is
 * malformed (w then matches nothing useful; free it all the same). */
const char *rl_wild_compile(rl_wild_t *w, const char *p, size_t n, int pathname);

/* True when text (NUL-terminated) matches. */
int rl_wild_match(const rl_wild_t *w, const char *text);

void rl_wild_free(rl_wild_t *w);

#endif
