/*
 * Wiping the evbuffers that carry request and response bodies. Bodies hold plaintext and key
 * material (Encrypt/Decrypt/GenerateDataKey, CreateAccessKey, STS credentials); libevent frees
 * its chains without clearing them, so the listener wipes what it read and hands responses to
 * libevent by reference, with a cleanup that wipes our copy once libevent has sent it.
 */
#ifndef COFFER_HTTP_WIPE_H
#define COFFER_HTTP_WIPE_H

#include <event2/buffer.h>

#include "common/buf.h"

/* Zeroes every byte `b` holds, over all of its extents whatever the chunking. The length is
 * unchanged: drain or free `b` afterwards. */
void http_evbuf_wipe(struct evbuffer *b);

/* Appends the bytes of the secret buffer `body` to `b` without copying them: `b` references
 * them, and once libevent is done with them (sent and drained, or the evbuffer freed) a cleanup
 * wipes the whole allocation and frees it. The reference survives evbuffer_add_buffer moves, as
 * evhttp_send_reply does. On success takes ownership of body's storage and leaves `body` empty;
 * on failure `body` is untouched. COFFER_ERR_USAGE if `body` is not a secret buffer. */
coffer_err http_evbuf_add_secret(struct evbuffer *b, coffer_buf *body) __attribute__((warn_unused_result));

/* Makes the bytes of `b` one extent, so that a TLS bufferevent sends them as one record (one
 * SSL_write, one write(2)) instead of one per extent (evhttp's headers, then the body). The copy
 * is a secret allocation referenced by `b` like http_evbuf_add_secret's, and the extents it
 * replaces are wiped before they are released. Best effort: on allocation failure `b` is left
 * as it was. */
void http_evbuf_coalesce_secret(struct evbuffer *b);

#endif
