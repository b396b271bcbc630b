/*
 * One-shot helpers over the streams: whole input in, whole output out in one malloc'd buffer
 * (freed with coffer_bytes_free, which wipes it).
 */
#include <stdlib.h>
#include <string.h>

#include "common/secret.h"
#include "esdk/esdk_internal.h"

struct sink {
    uint8_t *p;
    size_t len;
    size_t cap;
    bool failed;
};

/* Grows by copying so that no plaintext is left behind in a freed block. */
static int sink_write(void *ctx, const uint8_t *p, size_t n)
{
    struct sink *s = ctx;
    if (s->cap - s->len < n) {
        size_t ncap = s->cap ? s->cap : 4096;
        while (ncap - s->len < n) {
            if (ncap > SIZE_MAX / 2) {
                return -1;
            }
            ncap *= 2;
        }
        uint8_t *q = malloc(ncap);
        if (!q) {
            return -1;
        }
        if (s->len) {
            memcpy(q, s->p, s->len);
        }
        coffer_bytes_free(s->p, s->cap);
        s->p = q;
        s->cap = ncap;
    }
    memcpy(s->p + s->len, p, n);
    s->len += n;
    return 0;
}

static coffer_err sink_result(struct sink *s, coffer_err rc, uint8_t **out, size_t *out_len)
{
    if (rc != COFFER_OK) {
        coffer_bytes_free(s->p, s->cap);
        return rc;
    }
    if (!s->p) {
        s->p = malloc(1);
        if (!s->p) {
            return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        }
        s->cap = 1;
    }
    /* The tail past len was never written (the sink only appends, and grows by copying into a
     * fresh block), so coffer_bytes_free(p, len) wipes every byte that ever held output. */
    *out = s->p;
    *out_len = s->len;
    return COFFER_OK;
}

static coffer_err esdk_encryptor_run(coffer_encryptor *e, const uint8_t *in, size_t len, uint8_t **out,
                                     size_t *out_len)
{
    ENSURE(e && out && out_len, COFFER_ERR_USAGE);
    struct sink s = {0};
    coffer_err rc = COFFER_OK;
    TRY_OUT(esdk_encryptor_set_output(e, sink_write, &s));
    TRY_OUT(esdk_encryptor_set_plaintext_length(e, len));
    TRY_OUT(esdk_encryptor_update(e, in, len));
    TRY_OUT(esdk_encryptor_finish(e));
out:
    return sink_result(&s, rc, out, out_len);
}

int coffer_encryptor_run(coffer_encryptor *e, const uint8_t *in, size_t len, uint8_t **out, size_t *out_len)
{
    return esdk_status(esdk_encryptor_run(e, in, len, out, out_len));
}

static coffer_err esdk_decryptor_run(coffer_decryptor *d, const uint8_t *in, size_t len, uint8_t **out,
                                     size_t *out_len)
{
    ENSURE(d && out && out_len, COFFER_ERR_USAGE);
    struct sink s = {0};
    coffer_err rc = COFFER_OK;
    TRY_OUT(esdk_decryptor_set_output(d, sink_write, &s));
    TRY_OUT(esdk_decryptor_update(d, in, len));
    TRY_OUT(esdk_decryptor_finish(d));
out:
    return sink_result(&s, rc, out, out_len);
}

int coffer_decryptor_run(coffer_decryptor *d, const uint8_t *in, size_t len, uint8_t **out, size_t *out_len)
{
    return esdk_status(esdk_decryptor_run(d, in, len, out, out_len));
}

static coffer_err esdk_encrypt(coffer_cmm *cmm, const coffer_ec *ec, const uint8_t *in, size_t len,
                               uint8_t **out, size_t *out_len)
{
    coffer_encryptor *e = coffer_encryptor_new(cmm);
    ENSURE(e != NULL, COFFER_ERR_USAGE);
    coffer_err rc = COFFER_OK;
    if (ec) {
        TRY_OUT(esdk_encryptor_set_ec(e, ec));
    }
    rc = esdk_encryptor_run(e, in, len, out, out_len);
out:
    coffer_encryptor_free(e);
    return rc;
}

int coffer_encrypt(coffer_cmm *cmm, const coffer_ec *ec, const uint8_t *in, size_t len, uint8_t **out,
                   size_t *out_len)
{
    return esdk_status(esdk_encrypt(cmm, ec, in, len, out, out_len));
}

static coffer_err esdk_decrypt(coffer_cmm *cmm, const coffer_ec *reproduced_ec, const uint8_t *in, size_t len,
                               uint8_t **out, size_t *out_len)
{
    coffer_decryptor *d = coffer_decryptor_new(cmm);
    ENSURE(d != NULL, COFFER_ERR_USAGE);
    coffer_err rc = COFFER_OK;
    if (reproduced_ec) {
        TRY_OUT(esdk_decryptor_set_ec(d, reproduced_ec));
    }
    rc = esdk_decryptor_run(d, in, len, out, out_len);
out:
    coffer_decryptor_free(d);
    return rc;
}

int coffer_decrypt(coffer_cmm *cmm, const coffer_ec *reproduced_ec, const uint8_t *in, size_t len,
                   uint8_t **out, size_t *out_len)
{
    return esdk_status(esdk_decrypt(cmm, reproduced_ec, in, len, out, out_len));
}
