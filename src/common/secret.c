/*
 * Locked allocator for secrets (see secret.h).
 *
 * mlock/munlock per allocation costs two system calls and takes the process-wide mm lock, which
 * serialises worker threads on every request. Small blocks therefore come from a pool: 1 MiB
 * slabs that are mmap'ed, mlock'ed and marked MADV_DONTDUMP once, carved into power-of-two size
 * classes (64 B .. 64 KiB) kept on free lists. A block is wiped when it is freed, so nothing on a
 * free list holds a secret. Larger blocks are mapped on their own. Every block carries a
 * 16-byte header naming its class, so free never depends on the caller's size being right.
 *
 * Sanitizer and fuzzing builds bypass the pool (calloc + wipe) so that ASan sees every
 * allocation and catches overflows and use-after-free in code that handles secrets.
 */
#include "common/secret.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>

/*
 * glibc's explicit_bzero is its vectorised memset behind a barrier the compiler cannot see
 * through: as certain to happen as OPENSSL_cleanse, whose portable loop stores at most eight
 * bytes at a time (a 2 KiB block freed from the pool cost four times as many instructions).
 */
void coffer_secure_zero(void *p, size_t n)
{
    if (p != NULL && n > 0) {
        explicit_bzero(p, n);
    }
}

#if defined(COFFER_SANITIZED)

void *coffer_secret_alloc(size_t n)
{
    return calloc(1, n ? n : 1);
}

void coffer_secret_free(void *p, size_t n)
{
    if (p != NULL) {
        coffer_secure_zero(p, n ? n : 1);
        free(p);
    }
}

bool coffer_secret_lock_failed(void)
{
    return false; /* nothing is locked in sanitizer builds */
}

#else

#define SECRET_HDR 16
#define SECRET_MIN_SHIFT 6  /* 64 B */
#define SECRET_MAX_SHIFT 16 /* 64 KiB */
#define SECRET_CLASSES (SECRET_MAX_SHIFT - SECRET_MIN_SHIFT + 1)
#define SECRET_SLAB (1u << 20)
#define SECRET_BIG_CLASS 0xffu
#define SECRET_MAGIC 0x5ec7e7u

struct secret_hdr {
    uint32_t magic;
    uint32_t cls;  /* size class, or SECRET_BIG_CLASS */
    uint64_t size; /* mapping size for big blocks */
};

struct secret_free_block {
    struct secret_free_block *next;
};

static pthread_mutex_t secret_lock = PTHREAD_MUTEX_INITIALIZER;
static struct secret_free_block *secret_free_lists[SECRET_CLASSES];
static uint8_t *slab_cur; /* bump pointer into the current slab */
static size_t slab_left;
static atomic_bool lock_failed;           /* an mlock of a secret mapping failed */
static atomic_bool lock_failure_reported; /* coffer_secret_lock_failed said so already */

static void *secret_map(size_t n)
{
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return NULL;
    }
    /* Best effort: an unprivileged process has a small RLIMIT_MEMLOCK; wiping still applies,
     * and the failure is kept for the program to report (coffer_secret_lock_failed). */
    if (mlock(p, n) != 0) {
        atomic_store(&lock_failed, true);
    }
    /* Also best effort: it keeps secrets out of core dumps, which coffer_process_harden turns
     * off altogether where the program asks for it. */
    (void)madvise(p, n, MADV_DONTDUMP);
    return p;
}

bool coffer_secret_lock_failed(void)
{
    return atomic_load(&lock_failed) && !atomic_exchange(&lock_failure_reported, true);
}

static int secret_class_of(size_t total)
{
    int shift = SECRET_MIN_SHIFT;
    while (shift <= SECRET_MAX_SHIFT && ((size_t)1 << shift) < total) {
        shift++;
    }
    return shift > SECRET_MAX_SHIFT ? -1 : shift - SECRET_MIN_SHIFT;
}

void *coffer_secret_alloc(size_t n)
{
    size_t total;
    if (__builtin_add_overflow(n ? n : 1, (size_t)SECRET_HDR, &total)) {
        return NULL;
    }
    int cls = secret_class_of(total);
    struct secret_hdr *h;
    if (cls < 0) {
        size_t map = (total + 4095) & ~(size_t)4095;
        h = secret_map(map);
        if (h == NULL) {
            return NULL;
        }
        h->cls = SECRET_BIG_CLASS;
        h->size = map;
    } else {
        size_t block = (size_t)1 << (cls + SECRET_MIN_SHIFT);
        pthread_mutex_lock(&secret_lock);
        struct secret_free_block *f = secret_free_lists[cls];
        if (f != NULL) {
            secret_free_lists[cls] = f->next;
            h = (struct secret_hdr *)f;
        } else {
            if (slab_left < block) {
                /* The tail of the old slab is dropped: at most 64 KiB per MiB. */
                uint8_t *slab = secret_map(SECRET_SLAB);
                if (slab == NULL) {
                    pthread_mutex_unlock(&secret_lock);
                    return NULL;
                }
                slab_cur = slab;
                slab_left = SECRET_SLAB;
            }
            h = (struct secret_hdr *)slab_cur;
            slab_cur += block;
            slab_left -= block;
        }
        pthread_mutex_unlock(&secret_lock);
        /* Blocks are wiped at free; the list link is the only non-zero word left. */
        memset(h, 0, sizeof(struct secret_free_block));
        h->cls = (uint32_t)cls;
        h->size = block;
    }
    h->magic = SECRET_MAGIC;
    return (uint8_t *)h + SECRET_HDR;
}

void coffer_secret_free(void *p, size_t n)
{
    if (p == NULL) {
        return;
    }
    struct secret_hdr *h = (struct secret_hdr *)((uint8_t *)p - SECRET_HDR);
    if (h->magic != SECRET_MAGIC) {
        abort(); /* not ours, or freed twice: never continue with a corrupted pool */
    }
    size_t size = (size_t)h->size;
    coffer_secure_zero(h, size);
    if (h->cls == SECRET_BIG_CLASS) {
        /* The mapping goes away next, which unlocks it anyway: a failure here changes nothing. */
        (void)munlock(h, size);
        munmap(h, size);
        return;
    }
    int cls = secret_class_of(size);
    struct secret_free_block *f = (struct secret_free_block *)h;
    pthread_mutex_lock(&secret_lock);
    f->next = secret_free_lists[cls];
    secret_free_lists[cls] = f;
    pthread_mutex_unlock(&secret_lock);
}

#endif

void coffer_wipe_free(void *p)
{
    if (p != NULL) {
        explicit_bzero(p, malloc_usable_size(p)); /* glibc memset, not optimised away: every free pays it */
        free(p);
    }
}

void *coffer_wipe_realloc(void *p, size_t n)
{
    if (p == NULL) {
        return malloc(n);
    }
    size_t have = malloc_usable_size(p);
    if (n <= have) {
        return p; /* the slack stays inside the block and is wiped with it */
    }
    /* Never let realloc move the bytes and free the old block unwiped. */
    void *q = malloc(n);
    if (q == NULL) {
        return NULL;
    }
    memcpy(q, p, have);
    coffer_wipe_free(p);
    return q;
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
