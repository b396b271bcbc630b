/*
 * The audit trail's identity on this node (audit_key.c): its node id, and the RSA key that
 * signs its digests, kept under the seal.
 */
#ifndef COFFER_SERVER_AUDIT_KEY_H
#define COFFER_SERVER_AUDIT_KEY_H

#include <stddef.h>

#include "audit/audit.h"
#include "crypto/crypto.h"
#include "store/store.h"

/*
 * The default node id: the host name (reduced to the characters a node id allows) and the
 * first 12 hex digits of the SHA-256 of the data dir's real path, so two servers on one host
 * with different data dirs keep separate chains.
 */
coffer_err server_node_id_default(const char *data_dir, char out[AUDIT_NODE_ID_MAX + 1])
    __attribute__((warn_unused_result));

/*
 * Node `node_id`'s digest signing key from `records` (the sealed view of the store: the key is
 * sealed there, never in clear), generated and stored on first start. *out is NULL on failure.
 */
coffer_err server_audit_key_load(store *records, const char *node_id, crypto_pkey **out)
    __attribute__((warn_unused_result));

#endif
