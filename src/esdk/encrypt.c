/*
 * The encrypt stream: asks the CMM for materials on first use, writes the header and its tag,
 * then framed body (one frame buffered at most, so memory stays constant for any input size)
 * and, for signed suites, the ECDSA footer. After a failure it stays failed.
 */
#include <stdlib.h>
#include <string.h>

#include "common/secret.h"
#include "esdk/body.h"

enum enc_state { ENC_NEW, ENC_BODY, ENC_DONE, ENC_FAILED };

struct coffer_encryptor {
    coffer_cmm *cmm;
    coffer_write_fn out_fn;
    void *out_ctx;
    coffer_commitment_policy policy;
    uint16_t suite; /* 0 = per policy */
    uint32_t frame_len;
    size_t max_edks;
    coffer_ec *ec;
    uint64_t pt_len_hint;
    enum enc_state state;
    coffer_err fail_rc; /* sticky error */
    coffer_header *hdr;
    coffer_enc_materials *mat;
    uint8_t key[ESDK_MAX_KEY_LEN]; /* derived content key */
    EVP_CIPHER_CTX *gcm;
    EVP_MD_CTX *sig;    /* signed suites */
    uint32_t seq;       /* next sequence number */
    coffer_buf pending; /* secret: plaintext not yet framed */
    coffer_buf frame;   /* scratch for one serialized frame */
    coffer_buf aad;     /* scratch */
};

coffer_encryptor *coffer_encryptor_new(coffer_cmm *cmm)
{
    if (!cmm) {
        coffer_fail(COFFER_ERR_USAGE, "encryptor needs a CMM");
        return NULL;
    }
    coffer_encryptor *e = calloc(1, sizeof(*e));
    if (!e || !(e->gcm = EVP_CIPHER_CTX_new()) || !(e->ec = coffer_ec_new())) {
        coffer_encryptor_free(e);
        coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        return NULL;
    }
    e->cmm = coffer_cmm_retain(cmm);
    e->policy = COFFER_COMMIT_REQUIRE_ENCRYPT_REQUIRE_DECRYPT;
    e->frame_len = COFFER_DEFAULT_FRAME_LENGTH;
    e->pt_len_hint = UINT64_MAX;
    e->seq = 1;
    coffer_buf_init(&e->pending, true);
    return e;
}

void coffer_encryptor_free(coffer_encryptor *e)
{
    if (!e) {
        return;
    }
    coffer_cmm_release(e->cmm);
    coffer_ec_free(e->ec);
    coffer_header_free(e->hdr);
    coffer_enc_materials_free(e->mat);
    coffer_secure_zero(e->key, sizeof(e->key));
    EVP_CIPHER_CTX_free(e->gcm);
    EVP_MD_CTX_free(e->sig);
    coffer_buf_free(&e->pending);
    coffer_buf_free(&e->frame);
    coffer_buf_free(&e->aad);
    free(e);
}

#define ENSURE_ENC_SETTABLE(e) ENSURE((e) != NULL && (e)->state == ENC_NEW, COFFER_ERR_USAGE)

coffer_err esdk_encryptor_set_output(coffer_encryptor *e, coffer_write_fn fn, void *ctx)
{
    ENSURE_ENC_SETTABLE(e);
    e->out_fn = fn;
    e->out_ctx = ctx;
    return COFFER_OK;
}

int coffer_encryptor_set_output(coffer_encryptor *e, coffer_write_fn fn, void *ctx)
{
    return esdk_status(esdk_encryptor_set_output(e, fn, ctx));
}

static coffer_err esdk_encryptor_set_commitment_policy(coffer_encryptor *e, coffer_commitment_policy p)
{
    ENSURE_ENC_SETTABLE(e);
    ENSURE(p >= COFFER_COMMIT_REQUIRE_ENCRYPT_REQUIRE_DECRYPT &&
               p <= COFFER_COMMIT_FORBID_ENCRYPT_ALLOW_DECRYPT,
           COFFER_ERR_USAGE);
    e->policy = p;
    return COFFER_OK;
}

int coffer_encryptor_set_commitment_policy(coffer_encryptor *e, coffer_commitment_policy p)
{
    return esdk_status(esdk_encryptor_set_commitment_policy(e, p));
}

static coffer_err esdk_encryptor_set_suite(coffer_encryptor *e, uint16_t suite)
{
    ENSURE_ENC_SETTABLE(e);
    ENSURE(esdk_suite_find(suite) != NULL, COFFER_ERR_USAGE);
    e->suite = suite;
    return COFFER_OK;
}

int coffer_encryptor_set_suite(coffer_encryptor *e, uint16_t suite)
{
    return esdk_status(esdk_encryptor_set_suite(e, suite));
}

static coffer_err esdk_encryptor_set_frame_length(coffer_encryptor *e, uint32_t frame_length)
{
    ENSURE_ENC_SETTABLE(e);
    ENSURE(frame_length > 0 && frame_length <= INT32_MAX, COFFER_ERR_USAGE);
    e->frame_len = frame_length;
    return COFFER_OK;
}

int coffer_encryptor_set_frame_length(coffer_encryptor *e, uint32_t frame_length)
{
    return esdk_status(esdk_encryptor_set_frame_length(e, frame_length));
}

static coffer_err esdk_encryptor_set_max_edks(coffer_encryptor *e, size_t max_edks)
{
    ENSURE_ENC_SETTABLE(e);
    e->max_edks = max_edks;
    return COFFER_OK;
}

int coffer_encryptor_set_max_edks(coffer_encryptor *e, size_t max_edks)
{
    return esdk_status(esdk_encryptor_set_max_edks(e, max_edks));
}

coffer_err esdk_encryptor_set_ec(coffer_encryptor *e, const coffer_ec *ec)
{
    ENSURE_ENC_SETTABLE(e);
    coffer_ec *c = coffer_ec_clone(ec);
    ENSURE(c != NULL, COFFER_ERR_NOMEM);
    coffer_ec_free(e->ec);
    e->ec = c;
    return COFFER_OK;
}

int coffer_encryptor_set_ec(coffer_encryptor *e, const coffer_ec *ec)
{
    return esdk_status(esdk_encryptor_set_ec(e, ec));
}

coffer_err esdk_encryptor_set_plaintext_length(coffer_encryptor *e, uint64_t len)
{
    ENSURE_ENC_SETTABLE(e);
    e->pt_len_hint = len;
    return COFFER_OK;
}

int coffer_encryptor_set_plaintext_length(coffer_encryptor *e, uint64_t len)
{
    return esdk_status(esdk_encryptor_set_plaintext_length(e, len));
}

const coffer_header *coffer_encryptor_header(const coffer_encryptor *e)
{
    return e && e->state != ENC_NEW ? e->hdr : NULL;
}

static coffer_err enc_emit(coffer_encryptor *e, const uint8_t *p, size_t n)
{
    if (e->sig) {
        TRY(esdk_sig_update(e->sig, coffer_cursor_from(p, n)));
    }
    if (e->out_fn && n && e->out_fn(e->out_ctx, p, n) != 0) {
        return coffer_fail(COFFER_ERR_IO, "output sink refused the data");
    }
    return COFFER_OK;
}

/* Builds the header from the materials, writes it with its authentication tag. */
static coffer_err enc_start(coffer_encryptor *e)
{
    coffer_err rc = COFFER_OK;
    coffer_buf body = COFFER_BUF_INIT;
    uint8_t commit[ESDK_COMMIT_LEN] = {0};
    coffer_enc_request req = {e->ec, e->suite, e->policy, e->pt_len_hint};

    TRY_OUT(esdk_cmm_get_enc_materials(e->cmm, &req, &e->mat));
    const struct esdk_suite *s = e->mat->suite;
    TRY_OUT(esdk_policy_check_encrypt(e->policy, s));
    if (e->max_edks && e->mat->edks.n > e->max_edks) {
        FAIL_OUT(COFFER_ERR_LIMIT, "%zu encrypted data keys exceed the limit of %zu", e->mat->edks.n,
                 e->max_edks);
    }
    if (!(e->hdr = esdk_header_new())) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    e->hdr->version = s->version;
    e->hdr->suite = s;
    e->hdr->message_id_len = s->version == 1 ? ESDK_MSG_ID_V1_LEN : ESDK_MSG_ID_V2_LEN;
    TRY_OUT(crypto_random(e->hdr->message_id, e->hdr->message_id_len));
    /* Authenticate-only pairs stay out of the stored context. */
    if (!(e->hdr->ec = coffer_ec_clone(e->mat->ec))) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < e->mat->required_keys->n; i++) {
        TRY_OUT(esdk_ec_remove(e->hdr->ec, coffer_buf_cursor(&e->mat->required_keys->v[i].key)));
    }
    for (size_t i = 0; i < e->mat->edks.n; i++) {
        const struct esdk_edk *k = &e->mat->edks.v[i];
        TRY_OUT(esdk_edk_list_add(&e->hdr->edks, coffer_buf_cursor(&k->provider_id),
                                  coffer_buf_cursor(&k->provider_info), coffer_buf_cursor(&k->ciphertext)));
    }
    e->hdr->content_type = ESDK_CONTENT_FRAMED;
    e->hdr->frame_length = e->frame_len;
    TRY_OUT(esdk_suite_derive(s, coffer_buf_cursor(&e->mat->data_key),
                              coffer_cursor_from(e->hdr->message_id, e->hdr->message_id_len), e->key,
                              commit));
    memcpy(e->hdr->suite_data, commit, ESDK_COMMIT_LEN);
    /* One key for the header tag and every frame: key the context once, then only IVs change. */
    TRY_OUT(esdk_gcm_key(e->gcm, true, e->key, s->key_len));
    TRY_OUT(esdk_header_write_body(e->hdr, &body));
    e->hdr->body_len = body.len;
    /* message-header.md §Header Authentication: GCM over nothing, AAD = header (+ required pairs), zero IV */
    TRY_OUT(esdk_header_auth_aad(coffer_buf_cursor(&body), e->mat->ec, e->mat->required_keys, &e->aad));
    TRY_OUT(esdk_gcm_seal_keyed(e->gcm, e->hdr->auth_iv, coffer_buf_cursor(&e->aad),
                                coffer_cursor_from(NULL, 0), NULL, e->hdr->auth_tag));
    if (s->version == 1) {
        TRY_OUT(coffer_buf_append(&body, e->hdr->auth_iv, ESDK_IV_LEN));
    }
    TRY_OUT(coffer_buf_append(&body, e->hdr->auth_tag, ESDK_TAG_LEN));
    e->hdr->total_len = body.len;
    if (esdk_suite_signed(s)) {
        TRY_OUT(esdk_sig_init(s, e->mat->signing_key, true, &e->sig));
    }
    /* A known short input never needs a whole frame of (locked, wiped-on-free) buffer. */
    TRY_OUT(coffer_buf_reserve(&e->pending,
                               e->pt_len_hint < e->frame_len ? (size_t)e->pt_len_hint : e->frame_len));
    TRY_OUT(enc_emit(e, body.data, body.len));
out:
    coffer_secure_zero(commit, sizeof(commit));
    coffer_buf_free(&body);
    return rc;
}

/* message-body.md §Framed Data: a regular or the final frame. */
static coffer_err enc_frame(coffer_encryptor *e, coffer_cursor pt, bool final)
{
    uint8_t iv[ESDK_IV_LEN];
    enum esdk_body_kind kind = final ? ESDK_BODY_FINAL : ESDK_BODY_FRAME;

    if (!final && e->seq == ESDK_FINAL_SEQ_MARK) {
        return coffer_fail(COFFER_ERR_LIMIT, "message has too many frames");
    }
    esdk_body_iv(e->seq, iv);
    coffer_buf_reset(&e->frame);
    if (final) {
        TRY(coffer_buf_append_u32be(&e->frame, ESDK_FINAL_SEQ_MARK));
    }
    TRY(coffer_buf_append_u32be(&e->frame, e->seq));
    TRY(coffer_buf_append(&e->frame, iv, sizeof(iv)));
    if (final) {
        TRY(coffer_buf_append_u32be(&e->frame, (uint32_t)pt.len));
    }
    TRY(esdk_body_aad(e->hdr, kind, e->seq, pt.len, &e->aad));
    TRY(coffer_buf_reserve(&e->frame, pt.len + ESDK_TAG_LEN));
    uint8_t *ct = e->frame.data + e->frame.len;
    TRY(esdk_gcm_seal_keyed(e->gcm, iv, coffer_buf_cursor(&e->aad), pt, ct, ct + pt.len));
    e->frame.len += pt.len + ESDK_TAG_LEN;
    e->seq++;
    return enc_emit(e, e->frame.data, e->frame.len);
}

static coffer_err enc_fail(coffer_encryptor *e, coffer_err rc)
{
    e->state = ENC_FAILED;
    e->fail_rc = rc;
    coffer_buf_reset(&e->pending);
    coffer_secure_zero(e->key, sizeof(e->key));
    return rc;
}

static coffer_err enc_check_state(coffer_encryptor *e)
{
    ENSURE(e != NULL, COFFER_ERR_USAGE);
    if (e->state == ENC_FAILED) {
        return coffer_fail(e->fail_rc, "stream already failed");
    }
    ENSURE(e->state != ENC_DONE, COFFER_ERR_USAGE);
    if (e->state == ENC_NEW) {
        coffer_err rc = enc_start(e);
        if (rc != COFFER_OK) {
            return enc_fail(e, rc);
        }
        e->state = ENC_BODY;
    }
    return COFFER_OK;
}

coffer_err esdk_encryptor_update(coffer_encryptor *e, const uint8_t *in, size_t len)
{
    ENSURE(in || len == 0, COFFER_ERR_USAGE);
    TRY(enc_check_state(e));
    coffer_cursor c = coffer_cursor_from(in, len);
    coffer_err rc = COFFER_OK;
    /* A frame is written only once more data follows it, so the last one can be the final frame.
     * When the plaintext length is known and more is due, a whole frame at the end of this
     * input is not the last one either: it is sealed in place rather than copied aside (and
     * wiped) until the next call. Should the length turn out wrong, the final frame is simply
     * shorter (even empty), which the format allows. */
    while (c.len > 0) {
        if (e->pending.len == e->frame_len) {
            TRY_OUT(enc_frame(e, coffer_buf_cursor(&e->pending), false));
            coffer_buf_reset(&e->pending);
        }
        uint64_t framed = (uint64_t)(e->seq - 1) * e->frame_len;
        bool more_due =
            e->pt_len_hint != UINT64_MAX && e->pt_len_hint > framed && e->pt_len_hint - framed > e->frame_len;
        if (e->pending.len == 0 && (c.len > e->frame_len || (c.len == e->frame_len && more_due))) {
            TRY_OUT(enc_frame(e, coffer_cursor_from(c.ptr, e->frame_len), false));
            c.ptr += e->frame_len;
            c.len -= e->frame_len;
            continue;
        }
        size_t take = e->frame_len - e->pending.len;
        take = take < c.len ? take : c.len;
        TRY_OUT(coffer_buf_append(&e->pending, c.ptr, take));
        c.ptr += take;
        c.len -= take;
    }
out:
    return rc == COFFER_OK ? COFFER_OK : enc_fail(e, rc);
}

int coffer_encryptor_update(coffer_encryptor *e, const uint8_t *in, size_t len)
{
    return esdk_status(esdk_encryptor_update(e, in, len));
}

coffer_err esdk_encryptor_finish(coffer_encryptor *e)
{
    TRY(enc_check_state(e));
    coffer_err rc = COFFER_OK;
    coffer_buf sig = COFFER_BUF_INIT;
    TRY_OUT(enc_frame(e, coffer_buf_cursor(&e->pending), true));
    coffer_buf_reset(&e->pending);
    if (e->sig) {
        /* message-footer.md: signature length, signature (DER) over everything before it */
        TRY_OUT(coffer_buf_append_u16be(&sig, 0));
        TRY_OUT(esdk_sig_sign_final(e->sig, &sig));
        sig.data[0] = (uint8_t)((sig.len - 2) >> 8);
        sig.data[1] = (uint8_t)(sig.len - 2);
        EVP_MD_CTX_free(e->sig);
        e->sig = NULL;
        TRY_OUT(enc_emit(e, sig.data, sig.len));
    }
    e->state = ENC_DONE;
    coffer_secure_zero(e->key, sizeof(e->key));
out:
    coffer_buf_free(&sig);
    return rc == COFFER_OK ? COFFER_OK : enc_fail(e, rc);
}

int coffer_encryptor_finish(coffer_encryptor *e)
{
    return esdk_status(esdk_encryptor_finish(e));
}
