/*
 * The message header of the ESDK format, versions 1 and 2: reader and writer side by side
 * (message-header.md). The reader works on untrusted bytes through bounds-checked cursors,
 * reports a short input separately so streams can wait for more, and checks every limit
 * before it allocates.
 */
#include <stdlib.h>
#include <string.h>

#include "esdk/esdk_internal.h"

/* A short read: the stream may retry once more bytes arrive. */
#define RD(expr)                                                                                             \
    do {                                                                                                     \
        if ((expr) != COFFER_OK) {                                                                           \
            *truncated = true;                                                                               \
            FAIL_OUT(COFFER_ERR_BAD_MESSAGE, "header truncated");                                            \
        }                                                                                                    \
    } while (0)
#define BAD(cond, ...)                                                                                       \
    do {                                                                                                     \
        if (cond) {                                                                                          \
            FAIL_OUT(COFFER_ERR_BAD_MESSAGE, __VA_ARGS__);                                                   \
        }                                                                                                    \
    } while (0)

coffer_header *esdk_header_new(void)
{
    return calloc(1, sizeof(coffer_header));
}

void coffer_header_free(coffer_header *h)
{
    if (!h) {
        return;
    }
    coffer_ec_free(h->ec);
    esdk_edk_list_clean(&h->edks);
    free(h);
}

static coffer_err parse_edks(coffer_cursor *c, size_t max_edks, coffer_header *h, bool *truncated)
{
    coffer_err rc = COFFER_OK;
    uint16_t count;

    /* message-header.md §Encrypted Data Key Count */
    RD(cur_read_u16be(c, &count));
    BAD(count == 0, "header has no encrypted data keys");
    if (max_edks && count > max_edks) {
        FAIL_OUT(COFFER_ERR_LIMIT, "message has %u encrypted data keys, limit is %zu", count, max_edks);
    }
    for (uint16_t i = 0; i < count; i++) {
        uint16_t n;
        coffer_cursor pid, info, ct;
        /* §Encrypted Data Keys: Key Provider ID Length, Key Provider ID */
        RD(cur_read_u16be(c, &n));
        RD(cur_read_bytes(c, n, &pid));
        /* §Encrypted Data Keys: Key Provider Information Length, Key Provider Information */
        RD(cur_read_u16be(c, &n));
        RD(cur_read_bytes(c, n, &info));
        /* §Encrypted Data Keys: Encrypted Data Key Length, Encrypted Data Key */
        RD(cur_read_u16be(c, &n));
        RD(cur_read_bytes(c, n, &ct));
        TRY_OUT(esdk_edk_list_add(&h->edks, pid, info, ct));
    }
out:
    return rc;
}

coffer_err esdk_header_parse(coffer_cursor *in, size_t max_edks, coffer_header **out, bool *truncated)
{
    coffer_err rc = COFFER_OK;
    coffer_cursor c = *in; /* work on a copy; hand back the advance only on success */
    coffer_header *h = esdk_header_new();
    uint8_t version, type;
    uint16_t suite_id, aad_len;
    coffer_cursor aad;
    uint32_t reserved;
    uint8_t iv_len = ESDK_IV_LEN;

    *truncated = false;
    *out = NULL;
    ENSURE(h != NULL, COFFER_ERR_NOMEM);
    /* message-header.md §Version */
    RD(cur_read_u8(&c, &version));
    BAD(version != 1 && version != 2, "unsupported message version %u", version);
    h->version = version;
    if (version == 1) {
        /* §Type (v1 only): 0x80, customer authenticated encrypted data */
        RD(cur_read_u8(&c, &type));
        BAD(type != 0x80, "unsupported message type 0x%02x", type);
    }
    /* §Algorithm Suite ID */
    RD(cur_read_u16be(&c, &suite_id));
    h->suite = esdk_suite_find(suite_id);
    BAD(h->suite == NULL, "unknown algorithm suite 0x%04x", suite_id);
    BAD(h->suite->version != version, "suite 0x%04x is not valid in message version %u", suite_id, version);
    /* §Message ID: 16 bytes in v1, 32 in v2 */
    h->message_id_len = version == 1 ? ESDK_MSG_ID_V1_LEN : ESDK_MSG_ID_V2_LEN;
    RD(cur_copy_bytes(&c, h->message_id, h->message_id_len));
    /* §AAD Length, §AAD (the serialized encryption context) */
    RD(cur_read_u16be(&c, &aad_len));
    RD(cur_read_bytes(&c, aad_len, &aad));
    TRY_OUT(esdk_ec_parse(aad, &h->ec));
    /* §Encrypted Data Key Count, §Encrypted Data Keys */
    TRY_OUT(parse_edks(&c, max_edks, h, truncated));
    /* §Content Type: 0x01 non-framed, 0x02 framed */
    RD(cur_read_u8(&c, &h->content_type));
    BAD(h->content_type != ESDK_CONTENT_NONFRAMED && h->content_type != ESDK_CONTENT_FRAMED,
        "unknown content type %u", h->content_type);
    if (version == 1) {
        /* §Reserved (v1 only): four zero bytes */
        RD(cur_read_u32be(&c, &reserved));
        BAD(reserved != 0, "reserved header field is not zero");
        /* §IV Length (v1 only): must match the suite */
        RD(cur_read_u8(&c, &iv_len));
        BAD(iv_len != ESDK_IV_LEN, "IV length %u does not match the suite", iv_len);
    }
    /* §Frame Length: 0 for non-framed content */
    RD(cur_read_u32be(&c, &h->frame_length));
    BAD(h->content_type == ESDK_CONTENT_NONFRAMED && h->frame_length != 0,
        "non-framed message with a frame length");
    BAD(h->content_type == ESDK_CONTENT_FRAMED && h->frame_length == 0, "framed message with frame length 0");
    if (version == 2) {
        /* §Algorithm Suite Data (v2): the commitment key */
        RD(cur_copy_bytes(&c, h->suite_data, ESDK_COMMIT_LEN));
    }
    h->body_len = in->len - c.len;
    /* §Header Authentication: IV (v1 only), then the tag */
    if (version == 1) {
        RD(cur_copy_bytes(&c, h->auth_iv, ESDK_IV_LEN));
    }
    RD(cur_copy_bytes(&c, h->auth_tag, ESDK_TAG_LEN));
    h->total_len = in->len - c.len;
    *in = c;
    *out = h;
    h = NULL;
out:
    coffer_header_free(h);
    return rc;
}

coffer_err esdk_header_write_body(const coffer_header *h, coffer_buf *out)
{
    coffer_buf aad = COFFER_BUF_INIT;
    coffer_err rc = COFFER_OK;

    TRY_OUT(esdk_ec_serialize(h->ec, &aad));
    /* message-header.md §Version, §Type (v1), §Algorithm Suite ID, §Message ID */
    TRY_OUT(coffer_buf_append_u8(out, h->version));
    if (h->version == 1) {
        TRY_OUT(coffer_buf_append_u8(out, 0x80));
    }
    TRY_OUT(coffer_buf_append_u16be(out, h->suite->id));
    TRY_OUT(coffer_buf_append(out, h->message_id, h->message_id_len));
    /* §AAD Length, §AAD */
    TRY_OUT(coffer_buf_append_u16be(out, (uint16_t)aad.len));
    TRY_OUT(coffer_buf_append(out, aad.data, aad.len));
    /* §Encrypted Data Key Count, §Encrypted Data Keys */
    if (h->edks.n == 0 || h->edks.n > UINT16_MAX) {
        FAIL_OUT(COFFER_ERR_LIMIT, "bad number of encrypted data keys (%zu)", h->edks.n);
    }
    TRY_OUT(coffer_buf_append_u16be(out, (uint16_t)h->edks.n));
    for (size_t i = 0; i < h->edks.n; i++) {
        const struct esdk_edk *e = &h->edks.v[i];
        TRY_OUT(coffer_buf_append_u16be(out, (uint16_t)e->provider_id.len));
        TRY_OUT(coffer_buf_append(out, e->provider_id.data, e->provider_id.len));
        TRY_OUT(coffer_buf_append_u16be(out, (uint16_t)e->provider_info.len));
        TRY_OUT(coffer_buf_append(out, e->provider_info.data, e->provider_info.len));
        TRY_OUT(coffer_buf_append_u16be(out, (uint16_t)e->ciphertext.len));
        TRY_OUT(coffer_buf_append(out, e->ciphertext.data, e->ciphertext.len));
    }
    /* §Content Type, §Reserved + §IV Length (v1), §Frame Length, §Algorithm Suite Data (v2) */
    TRY_OUT(coffer_buf_append_u8(out, h->content_type));
    if (h->version == 1) {
        TRY_OUT(coffer_buf_append_u32be(out, 0));
        TRY_OUT(coffer_buf_append_u8(out, ESDK_IV_LEN));
    }
    TRY_OUT(coffer_buf_append_u32be(out, h->frame_length));
    if (h->version == 2) {
        TRY_OUT(coffer_buf_append(out, h->suite_data, ESDK_COMMIT_LEN));
    }
out:
    coffer_buf_free(&aad);
    return rc;
}

/* ---- public API ---- */

static coffer_err header_parse_bytes(const uint8_t *msg, size_t len, coffer_header **out, size_t *consumed)
{
    ENSURE(msg && out, COFFER_ERR_USAGE);
    coffer_cursor c = coffer_cursor_from(msg, len);
    bool truncated;
    TRY(esdk_header_parse(&c, 0, out, &truncated));
    if (consumed) {
        *consumed = len - c.len;
    }
    return COFFER_OK;
}

int coffer_header_parse(const uint8_t *msg, size_t len, coffer_header **out, size_t *consumed)
{
    return esdk_status(header_parse_bytes(msg, len, out, consumed));
}

uint8_t coffer_header_version(const coffer_header *h)
{
    return h->version;
}

uint16_t coffer_header_suite(const coffer_header *h)
{
    return h->suite->id;
}

const uint8_t *coffer_header_message_id(const coffer_header *h, size_t *len)
{
    *len = h->message_id_len;
    return h->message_id;
}

const coffer_ec *coffer_header_ec(const coffer_header *h)
{
    return h->ec;
}

size_t coffer_header_edk_count(const coffer_header *h)
{
    return h->edks.n;
}

static coffer_err esdk_header_edk(const coffer_header *h, size_t i, coffer_edk *out)
{
    ENSURE(h && out && i < h->edks.n, COFFER_ERR_USAGE);
    const struct esdk_edk *e = &h->edks.v[i];
    out->provider_id = e->provider_id.data;
    out->provider_id_len = e->provider_id.len;
    out->provider_info = e->provider_info.data;
    out->provider_info_len = e->provider_info.len;
    out->ciphertext = e->ciphertext.data;
    out->ciphertext_len = e->ciphertext.len;
    return COFFER_OK;
}

int coffer_header_edk(const coffer_header *h, size_t i, coffer_edk *out)
{
    return esdk_status(esdk_header_edk(h, i, out));
}

bool coffer_header_framed(const coffer_header *h)
{
    return h->content_type == ESDK_CONTENT_FRAMED;
}

uint32_t coffer_header_frame_length(const coffer_header *h)
{
    return h->frame_length;
}
