/*
 * Shared by the encrypt and decrypt streams: the per-frame AAD and IV of the message body
 * (message-body.md §Framed Data, §Non-Framed Data, message-body-aad.md).
 */
#ifndef COFFER_ESDK_BODY_H
#define COFFER_ESDK_BODY_H

#include "esdk/esdk_internal.h"

enum esdk_body_kind { ESDK_BODY_FRAME, ESDK_BODY_FINAL, ESDK_BODY_SINGLE };
#define ESDK_FINAL_SEQ_MARK 0xFFFFFFFFu

/* message-body-aad.md: message id || body AAD content || sequence number || content length */
coffer_err esdk_body_aad(const coffer_header *h, enum esdk_body_kind kind, uint32_t seq, uint64_t len,
                         coffer_buf *out);
/* message-body.md §IV: the sequence number, big-endian, left-padded with zeros to 12 bytes */
void esdk_body_iv(uint32_t seq, uint8_t iv[ESDK_IV_LEN]);
/* The header tag's AAD: the header body plus the authenticate-only context pairs. */
coffer_err esdk_header_auth_aad(coffer_cursor header_body, const coffer_ec *ec,
                                const coffer_ec *required_keys, coffer_buf *out);

#endif
