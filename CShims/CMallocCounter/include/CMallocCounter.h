// Counts heap allocations in the turn-bench process: malloc, calloc, realloc, memalign,
// posix_memalign and aligned_alloc are defined here and forward to glibc's __libc_* entry points.
// Linked only into the turn-bench executable.
#ifndef CMALLOCCOUNTER_H
#define CMALLOCCOUNTER_H

#include <stdint.h>

/// Allocations (any of the functions above that returned memory) since process start.
uint64_t tb_allocation_count(void);
/// 1 when this interposer is the process's malloc (it is, when linked into the executable).
int tb_malloc_counter_active(void);

#endif
