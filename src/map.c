/*
 * map.c: the string map of map.h: open addressing with linear probing, FNV-1a hashes, deletion
 * by tombstones (rehashed away when they pile up). Plain C, no Lua, no loop.
 */
#include "map.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  char *key;
  size_t len;
  uint64_t hash;
  void *value;
} rl_slot_t;

struct rl_map {
  rl_slot_t *slots;
  size_t cap;  /* power of two */
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
