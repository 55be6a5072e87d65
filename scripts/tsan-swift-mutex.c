// Preloaded (LD_PRELOAD) into the ThreadSanitizer runs of `scripts/test-sanitizers`; never part of
// a build of the relay.
//
// Why: Synchronization.Mutex on Linux locks with an atomic compare-and-swap on its word, inlined
// into our (instrumented) code, and falls back to _lockSlow/_unlockSlow in libswiftSynchronization
// (PI futex syscalls, not instrumented) when the lock is contended. ThreadSanitizer sees the fast
// path's acquire/release but not the slow path's, so every contended Mutex looks like no lock at
// all: two threads that each held the lock are reported as a "Swift access race". This wraps the
// two slow-path functions and tells ThreadSanitizer what they did (acquire after _lockSlow,
// release before _unlockSlow), on the lock word's address, the same one the fast path uses.
//
// The functions are Swift methods of a ~Copyable struct: the lock word's address is `self`, passed
// in the Swift context register (swiftcall + swift_context), and _lockSlow takes the thread id.
// In a process without ThreadSanitizer (a child that is not ours) the hooks are absent and this
// only forwards.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

extern void __tsan_acquire(void *addr) __attribute__((weak));
extern void __tsan_release(void *addr) __attribute__((weak));

#define LOCK_SLOW "$s15Synchronization12_MutexHandleV9_lockSlowyys6UInt32VF"
#define UNLOCK_SLOW "$s15Synchronization12_MutexHandleV11_unlockSlowyyF"

typedef __attribute__((swiftcall)) void (*lock_slow_fn)(uint32_t, __attribute__((swift_context)) void *);
typedef __attribute__((swiftcall)) void (*unlock_slow_fn)(__attribute__((swift_context)) void *);

static void *next(const char *name) {
    void *f = dlsym(RTLD_NEXT, name);
    if (!f) {
        fprintf(stderr, "tsan-swift-mutex: %s not found\n", name);
        abort();
    }
    return f;
}

__attribute__((swiftcall)) void lock_slow(uint32_t self_id, __attribute__((swift_context)) void *self)
    __asm__(LOCK_SLOW);
__attribute__((swiftcall)) void lock_slow(uint32_t self_id, __attribute__((swift_context)) void *self) {
    static lock_slow_fn real;
    if (!real) real = (lock_slow_fn)next(LOCK_SLOW);
    real(self_id, self);
    if (__tsan_acquire) __tsan_acquire(self);
}

__attribute__((swiftcall)) void unlock_slow(__attribute__((swift_context)) void *self) __asm__(UNLOCK_SLOW);
__attribute__((swiftcall)) void unlock_slow(__attribute__((swift_context)) void *self) {
    static unlock_slow_fn real;
    if (!real) real = (unlock_slow_fn)next(UNLOCK_SLOW);
    if (__tsan_release) __tsan_release(self);
    real(self);
}
