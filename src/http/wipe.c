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

void http_evbuf_wipe(struct evbuffer *b)
{
    struct evbuffer_ptr pos;
    size_t total = evbuffer_get_length(b);
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
        for (int i = 0; i < n && i < HTTP_WIPE_BATCH; i++) {
            coffer_secure_zero(vec[i].iov_base, vec[i].iov_len);
            done += vec[i].iov_len;
        }
        if (done == before) {
            return;
        }
    }
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
