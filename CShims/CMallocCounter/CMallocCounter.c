#define _GNU_SOURCE
#include "CMallocCounter.h"

#include <errno.h>
#include <stddef.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static uint64_t allocations;
static int active;

static inline void counted(void) {
    __atomic_fetch_add(&allocations, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&active, 1, __ATOMIC_RELAXED);
}

void *malloc(size_t n) {
    counted();
    return __libc_malloc(n);
}

void *calloc(size_t a, size_t b) {
    counted();
    return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n) {
    counted();
    return __libc_realloc(p, n);
}

void free(void *p) {
    __libc_free(p);
}

void *memalign(size_t alignment, size_t n) {
    counted();
    return __libc_memalign(alignment, n);
}

void *aligned_alloc(size_t alignment, size_t n) {
    counted();
    return __libc_memalign(alignment, n);
}

int posix_memalign(void **out, size_t alignment, size_t n) {
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
    counted();
    void *p = __libc_memalign(alignment, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

uint64_t tb_allocation_count(void) {
    return __atomic_load_n(&allocations, __ATOMIC_RELAXED);
}

int tb_malloc_counter_active(void) {
    return __atomic_load_n(&active, __ATOMIC_RELAXED);
}
