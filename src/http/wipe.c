/*
 * Wiping the evbuffers that carry bodies (see wipe.h). Sits in the listener, below the pipeline.
 */
#include "http/wipe.h"

#include <stdint.h>

#include "common/secret.h"

#define HTTP_WIPE_BATCH 16 /* extents peeked per round: the loop covers any number of them */

/* Where a referenced response goes once wiped. A seam so that a test can look at the block
 * between the wipe and the release. */
static void (*http_wipe_release)(void *p, size_t n) = coffer_secret_free;

/* Zeroes the first `total` bytes of `b`. */
static void http_evbuf_wipe_prefix(struct evbuffer *b, size_t total)
{
    struct evbuffer_ptr pos;
    size_t done = 0;
    while (done < total) {
        struct evbuffer_iovec vec[HTTP_WIPE_BATCH];
        if (evbuffer_ptr_set(b, &pos, done, EVBUFFER_PTR_SET) != 0) {
            return;
        }
        int n = evbuffer_peek(b, -1, &pos, vec, HTTP_WIPE_BATCH);
        if (n <= 0) {
            return;
        }
        /* peek fills at most HTTP_WIPE_BATCH extents, even when it counts more. */
        size_t before = done;
        for (int i = 0; i < n && i < HTTP_WIPE_BATCH && done < total; i++) {
            size_t k = vec[i].iov_len < total - done ? vec[i].iov_len : total - done;
            coffer_secure_zero(vec[i].iov_base, k);
            done += k;
        }
        if (done == before) {
            return;
        }
    }
}

void http_evbuf_wipe(struct evbuffer *b)
{
    http_evbuf_wipe_prefix(b, evbuffer_get_length(b));
}

/* libevent calls this once the referenced bytes are drained (sent) or the evbuffer is freed. */
static void http_evbuf_secret_cleanup(const void *data, size_t len, void *extra)
{
    size_t cap = (size_t)(uintptr_t)extra;
    coffer_secure_zero((void *)data, cap);
    http_wipe_release((void *)data, cap);
}

coffer_err http_evbuf_add_secret(struct evbuffer *b, coffer_buf *body)
{
    ENSURE(body->secret, COFFER_ERR_USAGE);
    if (body->len == 0) {
        coffer_buf_free(body);
        return COFFER_OK;
    }
    if (evbuffer_add_reference(b, body->data, body->len, http_evbuf_secret_cleanup,
                               (void *)(uintptr_t)body->cap) != 0) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    coffer_buf_init(body, true);
    return COFFER_OK;
}

void http_evbuf_coalesce_secret(struct evbuffer *b)
{
    size_t len = evbuffer_get_length(b);
    if (len == 0 || evbuffer_peek(b, -1, NULL, NULL, 0) <= 1) {
        return;
    }
    uint8_t *one = coffer_secret_alloc(len);
    if (one == NULL) {
        return; /* still correct, only sent as several pieces */
    }
    if (evbuffer_copyout(b, one, len) != (ev_ssize_t)len ||
        evbuffer_add_reference(b, one, len, http_evbuf_secret_cleanup, (void *)(uintptr_t)len) != 0) {
        coffer_secret_free(one, len);
        return;
    }
    /* The copy is queued behind the originals: drop those (wiped first, references released by
     * their own cleanups), leaving the one extent. */
    http_evbuf_wipe_prefix(b, len);
    evbuffer_drain(b, len);
}
