/*
 * glob_fuzz.c: libFuzzer target for the gitignore parser and the wildmatch compiler/matcher
 * (src/glob.c). Input: a .gitignore body, a NUL, then program patterns and paths, one per line
 * ("/" at the end of a path: a directory). Built and run by scripts/fuzz.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "glob.h"

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
  char *rules = strndup(buf, rules_len);
  if (ig && rules) {
    rl_ignore_set_rules(ig, "", 0, rules, rules_len);
    /* The same rules as the rules of a nested directory. */
    memcpy(rules, buf, rules_len);
    rl_ignore_set_rules(ig, "sub", 3, rules, rules_len);
    char *rest = rules_len < size ? buf + rules_len + 1 : buf + size;
    char err[256];
    for (char *line = rest, *end; *line; line = end + 1) {
      end = strchr(line, '\n');
      if (!end)
        end = line + strlen(line);
      char saved = *end;
      *end = '\0';
      size_t len = strlen(line);
      if (len && line[0] == '+') {
        rl_ignore_add(ig, line + 1, 1, err, sizeof err); /* a program pattern, braces on */
      } else {
        int is_dir = len && line[len - 1] == '/';
        rl_ignore_path(ig, line, len, is_dir);
      }
      *end = saved;
      if (!saved)
        break;
    }
  }
  free(rules);
  rl_ignore_free(ig);
  free(buf);
  return 0;
}
