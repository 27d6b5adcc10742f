/* Atomics and the xchg spinlock. 32-bit only: 64-bit atomics would need cmpxchg8b and libatomic. */
#pragma once

#include "types.h"

static inline uint32_t atomic_xchg(volatile uint32_t *p, uint32_t v) {
  __asm__ volatile("xchgl %0, %1" : "+r"(v), "+m"(*p)::"memory");
  return v;
}
static inline uint32_t atomic_add(volatile uint32_t *p, uint32_t v) {  /* returns the new value */
  return __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST);
}
static inline uint32_t atomic_inc(volatile uint32_t *p) { return atomic_add(p, 1); }
static inline uint32_t atomic_load(const volatile uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void atomic_store(volatile uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline bool atomic_cas(volatile uint32_t *p, uint32_t expected, uint32_t desired) {
  return __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

typedef struct {
  volatile uint32_t locked;
} spinlock_t;

#define SPINLOCK_INIT {0}

static inline bool spin_trylock(spinlock_t *l) { return atomic_xchg(&l->locked, 1) == 0; }
static inline void spin_lock(spinlock_t *l) {
  while (atomic_xchg(&l->locked, 1) != 0) {
    while (l->locked) cpu_relax(); /* spin on a plain read: no bus-locked traffic while waiting */
  }
}
/* x86 is TSO: a plain store after a compiler barrier is a release. */
static inline void spin_unlock(spinlock_t *l) {
  compiler_barrier();
  l->locked = 0;
}
