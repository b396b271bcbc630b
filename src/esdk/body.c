/*
 * Per-frame AAD and IV construction shared by both stream directions (message-body-aad.md).
 */
#include <string.h>

#include "esdk/body.h"

coffer_err esdk_body_aad(const coffer_header *h, enum esdk_body_kind kind, uint32_t seq, uint64_t len,
                         coffer_buf *out)
{
    static const char *const content[] = {"AWSKMSEncryptionClient Frame",
                                          "AWSKMSEncryptionClient Final Frame",
                                          "AWSKMSEncryptionClient Single Block"};
    coffer_buf_reset(out);
    TRY(coffer_buf_append(out, h->message_id, h->message_id_len));
    TRY(coffer_buf_append_str(out, content[kind]));
    TRY(coffer_buf_append_u32be(out, seq));
    TRY(coffer_buf_append_u64be(out, len));
    return COFFER_OK;
}

void esdk_body_iv(uint32_t seq, uint8_t iv[ESDK_IV_LEN])
{
    memset(iv, 0, ESDK_IV_LEN);
    iv[8] = (uint8_t)(seq >> 24);
    iv[9] = (uint8_t)(seq >> 16);
    iv[10] = (uint8_t)(seq >> 8);
    iv[11] = (uint8_t)seq;
}

coffer_err esdk_header_auth_aad(coffer_cursor header_body, const coffer_ec *ec,
                                const coffer_ec *required_keys, coffer_buf *out)
{
    coffer_buf_reset(out);
    TRY(coffer_buf_append_cur(out, header_body));
    return esdk_ec_serialize_subset(ec, required_keys, out);
}
