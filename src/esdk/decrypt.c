/*
 * The decrypt stream: buffers input only until the next unit (header, frame, footer) is
 * complete, parses it through bounds-checked cursors, authenticates it and writes plaintext.
 * For signed suites plaintext is held until the footer signature verifies unless the caller
 * opted into streaming release. After a failure it stays failed and wipes what it holds.
 */
#include <stdlib.h>
#include <string.h>

#include "common/secret.h"
#include "esdk/body.h"

enum dec_state { DEC_HEADER, DEC_FRAMES, DEC_SINGLE, DEC_FOOTER, DEC_DONE, DEC_FAILED };

struct coffer_decryptor {
    coffer_cmm *cmm;
    coffer_write_fn out_fn;
    void *out_ctx;
    coffer_commitment_policy policy;
    size_t max_edks;
    coffer_ec *reproduced; /* may be NULL */
    bool streaming_release;
    bool started;
    enum dec_state state;
    coffer_err fail_rc;
    coffer_header *hdr;
    coffer_dec_materials *mat;
    uint8_t key[ESDK_MAX_KEY_LEN];
    EVP_CIPHER_CTX *gcm;
    EVP_MD_CTX *sig;
    uint32_t seq;    /* expected sequence number */
    coffer_buf in;   /* unconsumed input */
    coffer_buf pt;   /* secret: scratch for one frame */
    coffer_buf held; /* secret: plaintext waiting for the signature */
    coffer_buf aad;
};

coffer_decryptor *coffer_decryptor_new(coffer_cmm *cmm)
{
    if (!cmm) {
        coffer_fail(COFFER_ERR_USAGE, "decryptor needs a CMM");
        return NULL;
    }
    coffer_decryptor *d = calloc(1, sizeof(*d));
    if (!d || !(d->gcm = EVP_CIPHER_CTX_new())) {
        coffer_decryptor_free(d);
        coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        return NULL;
    }
    d->cmm = coffer_cmm_retain(cmm);
    d->policy = COFFER_COMMIT_REQUIRE_ENCRYPT_REQUIRE_DECRYPT;
    d->seq = 1;
    coffer_buf_init(&d->pt, true);
    coffer_buf_init(&d->held, true);
    return d;
}

void coffer_decryptor_free(coffer_decryptor *d)
{
    if (!d) {
        return;
    }
    coffer_cmm_release(d->cmm);
    coffer_ec_free(d->reproduced);
    coffer_header_free(d->hdr);
    coffer_dec_materials_free(d->mat);
    coffer_secure_zero(d->key, sizeof(d->key));
    EVP_CIPHER_CTX_free(d->gcm);
    EVP_MD_CTX_free(d->sig);
    coffer_buf_free(&d->in);
    coffer_buf_free(&d->pt);
    coffer_buf_free(&d->held);
    coffer_buf_free(&d->aad);
    free(d);
}

#define ENSURE_DEC_SETTABLE(d) ENSURE((d) != NULL && !(d)->started, COFFER_ERR_USAGE)

coffer_err esdk_decryptor_set_output(coffer_decryptor *d, coffer_write_fn fn, void *ctx)
{
    ENSURE_DEC_SETTABLE(d);
    d->out_fn = fn;
    d->out_ctx = ctx;
    return COFFER_OK;
}

int coffer_decryptor_set_output(coffer_decryptor *d, coffer_write_fn fn, void *ctx)
{
    return esdk_status(esdk_decryptor_set_output(d, fn, ctx));
}

static coffer_err esdk_decryptor_set_commitment_policy(coffer_decryptor *d, coffer_commitment_policy p)
{
    ENSURE_DEC_SETTABLE(d);
    ENSURE(p >= COFFER_COMMIT_REQUIRE_ENCRYPT_REQUIRE_DECRYPT &&
               p <= COFFER_COMMIT_FORBID_ENCRYPT_ALLOW_DECRYPT,
           COFFER_ERR_USAGE);
    d->policy = p;
    return COFFER_OK;
}

int coffer_decryptor_set_commitment_policy(coffer_decryptor *d, coffer_commitment_policy p)
{
    return esdk_status(esdk_decryptor_set_commitment_policy(d, p));
}

static coffer_err esdk_decryptor_set_max_edks(coffer_decryptor *d, size_t max_edks)
{
    ENSURE_DEC_SETTABLE(d);
    d->max_edks = max_edks;
    return COFFER_OK;
}

int coffer_decryptor_set_max_edks(coffer_decryptor *d, size_t max_edks)
{
    return esdk_status(esdk_decryptor_set_max_edks(d, max_edks));
}

coffer_err esdk_decryptor_set_ec(coffer_decryptor *d, const coffer_ec *ec)
{
    ENSURE_DEC_SETTABLE(d);
    coffer_ec *c = coffer_ec_clone(ec);
    ENSURE(c != NULL, COFFER_ERR_NOMEM);
    coffer_ec_free(d->reproduced);
    d->reproduced = c;
    return COFFER_OK;
}

int coffer_decryptor_set_ec(coffer_decryptor *d, const coffer_ec *ec)
{
    return esdk_status(esdk_decryptor_set_ec(d, ec));
}

static coffer_err esdk_decryptor_set_streaming_release(coffer_decryptor *d, bool on)
{
    ENSURE_DEC_SETTABLE(d);
    d->streaming_release = on;
    return COFFER_OK;
}

int coffer_decryptor_set_streaming_release(coffer_decryptor *d, bool on)
{
    return esdk_status(esdk_decryptor_set_streaming_release(d, on));
}

const coffer_header *coffer_decryptor_header(const coffer_decryptor *d)
{
    return d ? d->hdr : NULL;
}

static coffer_err dec_release(coffer_decryptor *d, const uint8_t *p, size_t n)
{
    if (n == 0) {
        return COFFER_OK;
    }
    if (d->sig && !d->streaming_release) {
        return coffer_buf_append(&d->held, p, n);
    }
    if (d->out_fn && d->out_fn(d->out_ctx, p, n) != 0) {
        return coffer_fail(COFFER_ERR_IO, "output sink refused the data");
    }
    return COFFER_OK;
}

/* Header parsed: fetch materials, derive the key, check commitment and the header tag. */
static coffer_err dec_header_done(coffer_decryptor *d, coffer_cursor raw)
{
    coffer_err rc = COFFER_OK;
    coffer_edk *views = NULL;
    coffer_header *h = d->hdr;
    const struct esdk_suite *s = h->suite;
    uint8_t commit[ESDK_COMMIT_LEN] = {0};

    TRY_OUT(esdk_policy_check_decrypt(d->policy, s));
    TRY_OUT(esdk_edk_list_views(&h->edks, &views));
    coffer_dec_request req = {s->id, d->policy, h->ec, d->reproduced, views, h->edks.n};
    TRY_OUT(esdk_cmm_get_dec_materials(d->cmm, &req, &d->mat));
    if (d->mat->suite != s || d->mat->data_key.len != s->key_len) {
        FAIL_OUT(COFFER_ERR_CANNOT_DECRYPT, "materials do not fit the message");
    }
    TRY_OUT(esdk_suite_derive(s, coffer_buf_cursor(&d->mat->data_key),
                              coffer_cursor_from(h->message_id, h->message_id_len), d->key, commit));
    /* algorithm-suites.md §Key Commitment: constant time, the commitment is key-derived */
    if (esdk_suite_commits(s) && crypto_memcmp(commit, h->suite_data, ESDK_COMMIT_LEN) != 0) {
        FAIL_OUT(COFFER_ERR_COMMITMENT_MISMATCH, "key commitment mismatch");
    }
    /* message-header.md §Header Authentication */
    TRY_OUT(esdk_header_auth_aad(coffer_cursor_from(raw.ptr, h->body_len), d->mat->ec, d->mat->required_keys,
                                 &d->aad));
    /* One key for the header tag and every frame: key the context once, then only IVs change. */
    TRY_OUT(esdk_gcm_key(d->gcm, false, d->key, s->key_len));
    TRY_OUT(esdk_gcm_open_keyed(d->gcm, h->auth_iv, coffer_buf_cursor(&d->aad), coffer_cursor_from(NULL, 0),
                                h->auth_tag, NULL));
    if (esdk_suite_signed(s)) {
        TRY_OUT(esdk_sig_init(s, d->mat->verify_key, false, &d->sig));
        TRY_OUT(esdk_sig_update(d->sig, coffer_cursor_from(raw.ptr, h->total_len)));
    }
    d->state = h->content_type == ESDK_CONTENT_FRAMED ? DEC_FRAMES : DEC_SINGLE;
out:
    coffer_secure_zero(commit, sizeof(commit));
    free(views);
    return rc;
}

/* Decrypts one authenticated unit into d->pt then releases it. */
static coffer_err dec_open(coffer_decryptor *d, enum esdk_body_kind kind, uint32_t seq, const uint8_t *iv,
                           coffer_cursor ct, const uint8_t *tag)
{
    /* message-body.md §IV: producers write the sequence number, but other SDKs accept any IV
     * (the KAT carries such messages); GCM authenticates it as the nonce either way. */
    (void)seq;
    TRY(esdk_body_aad(d->hdr, kind, seq, ct.len, &d->aad));
    coffer_buf_reset(&d->pt);
    TRY(coffer_buf_reserve(&d->pt, ct.len ? ct.len : 1));
    TRY(esdk_gcm_open_keyed(d->gcm, iv, coffer_buf_cursor(&d->aad), ct, tag, d->pt.data));
    d->pt.len = ct.len;
    coffer_err rc = dec_release(d, d->pt.data, d->pt.len);
    coffer_buf_reset(&d->pt);
    return rc;
}

#define NEED(expr)                                                                                           \
    do {                                                                                                     \
        if ((expr) != COFFER_OK) {                                                                           \
            coffer_clear_err();                                                                              \
            *need_more = true;                                                                               \
            return COFFER_OK;                                                                                \
        }                                                                                                    \
    } while (0)

/* message-body.md §Framed Data: one regular or final frame. */
static coffer_err dec_frame(coffer_decryptor *d, coffer_cursor *in, bool *need_more)
{
    coffer_cursor c = *in;
    uint32_t seq, len;
    coffer_cursor iv, ct, tag;
    bool final = false;

    /* §Regular Frame: Sequence Number (or the final-frame marker) */
    NEED(cur_read_u32be(&c, &seq));
    if (seq == ESDK_FINAL_SEQ_MARK) {
        final = true;
        /* §Final Frame: Sequence Number */
        NEED(cur_read_u32be(&c, &seq));
    }
    if (seq != d->seq) {
        return coffer_fail(COFFER_ERR_BAD_MESSAGE, "frame out of sequence");
    }
    /* §IV */
    NEED(cur_read_bytes(&c, ESDK_IV_LEN, &iv));
    len = d->hdr->frame_length;
    if (final) {
        /* §Final Frame: Encrypted Content Length, at most the frame length */
        NEED(cur_read_u32be(&c, &len));
        if (len > d->hdr->frame_length) {
            return coffer_fail(COFFER_ERR_BAD_MESSAGE, "final frame longer than the frame length");
        }
    }
    /* §Encrypted Content, §Authentication Tag */
    NEED(cur_read_bytes(&c, len, &ct));
    NEED(cur_read_bytes(&c, ESDK_TAG_LEN, &tag));
    TRY(dec_open(d, final ? ESDK_BODY_FINAL : ESDK_BODY_FRAME, seq, iv.ptr, ct, tag.ptr));
    if (d->sig) {
        TRY(esdk_sig_update(d->sig, coffer_cursor_from(in->ptr, in->len - c.len)));
    }
    if (final) {
        d->state = d->sig ? DEC_FOOTER : DEC_DONE;
    } else if (d->seq == ESDK_FINAL_SEQ_MARK - 1) {
        return coffer_fail(COFFER_ERR_BAD_MESSAGE, "too many frames");
    }
    d->seq++;
    *in = c;
    return COFFER_OK;
}

/* message-body.md §Non-Framed Data: IV, length, content, tag, with sequence number 1. */
static coffer_err dec_single(coffer_decryptor *d, coffer_cursor *in, bool *need_more)
{
    coffer_cursor c = *in;
    coffer_cursor iv, ct, tag;
    uint64_t len;

    NEED(cur_read_bytes(&c, ESDK_IV_LEN, &iv));
    NEED(cur_read_u64be(&c, &len));
    if (len > ESDK_MAX_SINGLE_BLOCK || len > SIZE_MAX - ESDK_TAG_LEN) {
        return coffer_fail(COFFER_ERR_BAD_MESSAGE, "non-framed content too long");
    }
    NEED(cur_read_bytes(&c, (size_t)len, &ct));
    NEED(cur_read_bytes(&c, ESDK_TAG_LEN, &tag));
    TRY(dec_open(d, ESDK_BODY_SINGLE, 1, iv.ptr, ct, tag.ptr));
    if (d->sig) {
        TRY(esdk_sig_update(d->sig, coffer_cursor_from(in->ptr, in->len - c.len)));
    }
    d->state = d->sig ? DEC_FOOTER : DEC_DONE;
    *in = c;
    return COFFER_OK;
}

/* message-footer.md: Signature Length, Signature */
static coffer_err dec_footer(coffer_decryptor *d, coffer_cursor *in, bool *need_more)
{
    coffer_cursor c = *in;
    uint16_t n;
    coffer_cursor sig;
    NEED(cur_read_u16be(&c, &n));
    NEED(cur_read_bytes(&c, n, &sig));
    TRY(esdk_sig_verify_final(d->sig, sig));
    EVP_MD_CTX_free(d->sig);
    d->sig = NULL;
    d->state = DEC_DONE;
    *in = c;
    /* Now authenticated: release what was held. */
    coffer_err rc = dec_release(d, d->held.data, d->held.len);
    coffer_buf_free(&d->held);
    return rc;
}

static coffer_err dec_process(coffer_decryptor *d, coffer_cursor *c)
{
    bool need_more = false;
    while (!need_more) {
        switch (d->state) {
        case DEC_HEADER: {
            bool truncated = false;
            coffer_cursor before = *c;
            coffer_err rc = esdk_header_parse(c, d->max_edks, &d->hdr, &truncated);
            if (rc != COFFER_OK) {
                if (truncated) {
                    coffer_clear_err();
                    return COFFER_OK;
                }
                return rc;
            }
            TRY(dec_header_done(d, before));
            break;
        }
        case DEC_FRAMES:
            TRY(dec_frame(d, c, &need_more));
            break;
        case DEC_SINGLE:
            TRY(dec_single(d, c, &need_more));
            break;
        case DEC_FOOTER:
            TRY(dec_footer(d, c, &need_more));
            break;
        case DEC_DONE:
            if (c->len) {
                return coffer_fail(COFFER_ERR_BAD_MESSAGE, "trailing bytes after the message");
            }
            return COFFER_OK;
        case DEC_FAILED:
            return d->fail_rc;
        }
    }
    return COFFER_OK;
}

static coffer_err dec_fail(coffer_decryptor *d, coffer_err rc)
{
    d->state = DEC_FAILED;
    d->fail_rc = rc;
    coffer_buf_free(&d->held);
    coffer_buf_free(&d->in);
    coffer_secure_zero(d->key, sizeof(d->key));
    return rc;
}

static uint32_t dec_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* How many of the `avail` next input bytes the unit begun in d->in still needs: a frame's size
 * is known from its first bytes, so only that much is copied behind the held part and the rest
 * is parsed in place. Elsewhere (header, footer) all of it, as the unit's size is not known. */
static size_t dec_unit_missing(const coffer_decryptor *d, size_t avail)
{
    const size_t lead = 4 + 4 + ESDK_IV_LEN + 4; /* final frame: marker, sequence, IV, length */
    const uint8_t *p = d->in.data;
    size_t have = d->in.len, total;
    if (d->state != DEC_FRAMES) {
        return avail;
    }
    if (have < 4) {
        total = 4;
    } else if (dec_be32(p) != ESDK_FINAL_SEQ_MARK) {
        total = 4 + ESDK_IV_LEN + (size_t)d->hdr->frame_length + ESDK_TAG_LEN;
    } else if (have < lead) {
        total = lead;
    } else {
        uint32_t clen = dec_be32(p + lead - 4);
        if (clen > d->hdr->frame_length) {
            return avail; /* dec_frame refuses it */
        }
        total = lead + clen + ESDK_TAG_LEN;
    }
    return total > have && total - have < avail ? total - have : avail;
}

coffer_err esdk_decryptor_update(coffer_decryptor *d, const uint8_t *in, size_t len)
{
    ENSURE(d != NULL && (in || len == 0), COFFER_ERR_USAGE);
    if (d->state == DEC_FAILED) {
        return coffer_fail(d->fail_rc, "stream already failed");
    }
    d->started = true;
    coffer_err rc = COFFER_OK;
    /* A unit split across calls: complete it from the new bytes, taking no more than it needs. */
    while (len > 0 && d->in.len > 0) {
        size_t take = dec_unit_missing(d, len);
        TRY_OUT(coffer_buf_append(&d->in, in, take));
        in += take;
        len -= take;
        coffer_cursor c = coffer_buf_cursor(&d->in);
        TRY_OUT(dec_process(d, &c));
        memmove(d->in.data, c.ptr, c.len);
        d->in.len = c.len;
    }
    if (len > 0 || d->in.len == 0) {
        /* Fast path: parse straight from the caller's bytes, keep only the incomplete tail. */
        coffer_cursor c = coffer_cursor_from(in, len);
        TRY_OUT(dec_process(d, &c));
        TRY_OUT(coffer_buf_append_cur(&d->in, c));
    }
out:
    return rc == COFFER_OK ? COFFER_OK : dec_fail(d, rc);
}

int coffer_decryptor_update(coffer_decryptor *d, const uint8_t *in, size_t len)
{
    return esdk_status(esdk_decryptor_update(d, in, len));
}

coffer_err esdk_decryptor_finish(coffer_decryptor *d)
{
    ENSURE(d != NULL, COFFER_ERR_USAGE);
    if (d->state == DEC_FAILED) {
        return coffer_fail(d->fail_rc, "stream already failed");
    }
    d->started = true;
    if (d->state != DEC_DONE || d->in.len != 0) {
        return dec_fail(d, coffer_fail(COFFER_ERR_BAD_MESSAGE, "message truncated"));
    }
    coffer_secure_zero(d->key, sizeof(d->key));
    return COFFER_OK;
}

int coffer_decryptor_finish(coffer_decryptor *d)
{
    return esdk_status(esdk_decryptor_finish(d));
}
