/*
 * map.h: a string-keyed hash map (keys copied, values borrowed): the cache of .gitignore rules
 * per directory (ignore.c) and the coalescing of a watcher's batch (watch_tree.c). Plain C.
 */
#ifndef RELOAD_MAP_H
#define RELOAD_MAP_H

#include <stddef.h>

typedef struct rl_map rl_map_t;

rl_map_t *rl_map_new(void);
/* Frees the map and, with free_value, every value. */
void rl_map_free(rl_map_t *m, void (*free_value)(void *));
void *rl_map_get(const rl_map_t *m, const char *key, size_t len);
/* Returns the previous value (NULL if none); an allocation failure sets *oom (nothing stored). */
void *rl_map_put(rl_map_t *m, const char *key, size_t len, void *value, int *oom);
/* Removes key; returns its value (NULL if none). */
void *rl_map_del(rl_map_t *m, const char *key, size_t len);
/* Calls fn for each entry (do not modify the map meanwhile). */
void rl_map_each(const rl_map_t *m, void (*fn)(const char *key, size_t len, void *value, void *ud),
                 void *ud);

#endif
