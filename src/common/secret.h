/*
 * The locked allocator for key material and plaintext: pages are mlock()ed so they are never
 * swapped, marked MADV_DONTDUMP so they never reach a core file, and wiped before they are
 * released. Sanitizer and fuzzing builds skip madvise (ASan's allocator does not like it).
 */
#ifndef COFFER_COMMON_SECRET_H
#define COFFER_COMMON_SECRET_H

#include <stdbool.h>
#include <stddef.h>

/* Zeroed block of n bytes, or NULL. An mlock failure (RLIMIT_MEMLOCK) does not fail the
 * allocation: the block is still wiped at free, and coffer_secret_lock_failed reports it. */
void *coffer_secret_alloc(size_t n);
/* true the first time it is called after a secret block could not be locked in memory (it may
 * then be swapped out), false otherwise: a program that has a log warns once. */
bool coffer_secret_lock_failed(void);
/* Wipes the block then frees it. Accepts NULL. n is the size given to coffer_secret_alloc
 * (the pool records the real size; sanitizer builds use n). */
void coffer_secret_free(void *p, size_t n);
/* A wipe the compiler may not elide (OPENSSL_cleanse). */
void coffer_secure_zero(void *p, size_t n);
/* free() and realloc() that wipe the whole usable block before giving it back, for libraries
 * whose buffers hold request and response bytes without knowing they are secret: jansson
 * (json_set_alloc_funcs) and libevent (event_set_mem_functions). Blocks come from plain
 * malloc, so these may be installed after the library has already allocated. */
void coffer_wipe_free(void *p);
void *coffer_wipe_realloc(void *p, size_t n);
/* Turns off core dumps and ptrace attach for this process (PR_SET_DUMPABLE 0, RLIMIT_CORE 0). */
int coffer_process_harden(void);

#endif
