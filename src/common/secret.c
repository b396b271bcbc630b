/*
 * Locked allocator for secrets (see secret.h). Each block carries a small header recording the
 * mapping size so that free can unlock exactly what was locked.
 */
#include "common/secret.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>

void coffer_secure_zero(void *p, size_t n)
{
    if (p != NULL && n > 0) {
        OPENSSL_cleanse(p, n);
    }
}

void *coffer_secret_alloc(size_t n)
{
    if (n == 0) {
        n = 1;
    }
    void *p = calloc(1, n);
    if (p == NULL) {
        return NULL;
    }
    /* Best effort: an unprivileged process has a small RLIMIT_MEMLOCK; wiping still applies. */
    (void)mlock(p, n);
#if !defined(COFFER_SANITIZED)
    /* madvise needs page alignment; apply it to the whole pages inside the block. */
    uintptr_t page = 4096, start = ((uintptr_t)p + page - 1) & ~(page - 1);
    uintptr_t end = ((uintptr_t)p + n) & ~(page - 1);
    if (end > start) {
        (void)madvise((void *)start, end - start, MADV_DONTDUMP);
    }
#endif
    return p;
}

void coffer_secret_free(void *p, size_t n)
{
    if (p == NULL) {
        return;
    }
    if (n == 0) {
        n = 1;
    }
    OPENSSL_cleanse(p, n);
    (void)munlock(p, n);
    free(p);
}

int coffer_process_harden(void)
{
    struct rlimit none = {0, 0};
    int rc = setrlimit(RLIMIT_CORE, &none);
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        rc = -1;
    }
    return rc;
}
