/*
 * glob_fuzz.c: libFuzzer target for the gitignore parser and the wildmatch compiler/matcher
 * (src/ignore.c, src/wildmatch.c; no Lua). Input: a .gitignore body, a NUL, then program
 * patterns and paths, one per line ("+" first: a program pattern, braces on; "/" at the end of
 * a path: a directory). Lines are cut by length, so a NUL inside one reaches the matcher as it
 * would from Lua. Built and run by scripts/fuzz, with fuzz/glob.dict.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ignore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  char *buf = malloc(size + 1);
  if (!buf)
    return 0;
  memcpy(buf, data, size);
  buf[size] = '\0';
  size_t rules_len = strnlen(buf, size);
  rl_ignore_t *ig = rl_ignore_new(NULL, 0, 1);
  char *rules = malloc(rules_len + 1);
  if (ig && rules) {
    memcpy(rules, buf, rules_len);
    rl_ignore_set_rules(ig, "", 0, rules, rules_len);
    /* The same rules as the rules of a nested directory. */
    memcpy(rules, buf, rules_len);
    rl_ignore_set_rules(ig, "sub", 3, rules, rules_len);
    char err[256];
    char *line = rules_len < size ? buf + rules_len + 1 : buf + size;
    char *end_of_input = buf + size;
    while (line < end_of_input) {
      char *end = memchr(line, '\n', (size_t)(end_of_input - line));
      if (!end)
        end = end_of_input;
      size_t len = (size_t)(end - line);
      /* Each line in a copy of its own size, so that ASan sees any read past its end. */
      char *one = malloc(len + 1);
      if (!one)
        break;
      memcpy(one, line, len);
      one[len] = '\0';
      if (len && one[0] == '+') {
        rl_ignore_add(ig, one + 1, len - 1, 1, err, sizeof err);
      } else {
        int is_dir = len && one[len - 1] == '/';
        rl_ignore_path(ig, one, len, is_dir);
      }
      free(one);
      line = end + 1;
    }
  }
  free(rules);
  rl_ignore_free(ig);
  free(buf);
  return 0;
}
