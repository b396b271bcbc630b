/*
 * The audit digest signing key and the node id (see audit_key.h). The key is an RSA-2048 pair
 * (CloudTrail signs digests with SHA256withRSA) generated on the first start of a node and
 * stored as a record through the barrier, so it exists in clear only in this process; its
 * public half is published by the audit trail itself, beside the digests.
 */
#include "server/audit_key.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/codec.h"
#include "common/log.h"

#define HOST_PART_MAX 40
#define DIR_HASH_HEX 12

coffer_err server_node_id_default(const char *data_dir, char out[AUDIT_NODE_ID_MAX + 1])
{
    char host[256] = "";
    char real[PATH_MAX];
    if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
        snprintf(host, sizeof(host), "node");
    }
    host[sizeof(host) - 1] = '\0';
    size_t n = 0;
    for (const char *p = host; *p != '\0' && n < HOST_PART_MAX; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                  c == '_' || c == '-';
        out[n++] = ok ? c : '-';
    }
    const char *dir = realpath(data_dir, real) != NULL ? real : data_dir;
    uint8_t h[CRYPTO_SHA256_LEN];
    char hex[2 * CRYPTO_SHA256_LEN + 1];
    crypto_sha256(dir, strlen(dir), h);
    coffer_hex_encode(h, sizeof(h), hex);
    snprintf(out + n, AUDIT_NODE_ID_MAX + 1 - n, "-%.*s", DIR_HASH_HEX, hex);
    return audit_node_id_valid(out) ? COFFER_OK : coffer_fail(COFFER_ERR_CONFIG, "cannot derive a node id");
}

coffer_err server_audit_key_load(store *records, const char *node_id, crypto_pkey **out)
{
    coffer_err rc = COFFER_OK;
    coffer_buf der = COFFER_SECRET_BUF_INIT;
    store_txn *txn = NULL;
    crypto_pkey *k = NULL;
    char name[sizeof(AUDIT_SIGNING_KEY_RECORD) + AUDIT_NODE_ID_MAX];
    *out = NULL;
    snprintf(name, sizeof(name), AUDIT_SIGNING_KEY_RECORD "%s", node_id);
    coffer_err got = store_get(records, name, &der);
    if (got == COFFER_OK) {
        TRY_OUT(crypto_pkey_from_private_der(CRYPTO_PKEY_RSA_2048, coffer_buf_cursor(&der), &k));
        goto done;
    }
    if (got != COFFER_ERR_NOT_FOUND) {
        rc = got; /* the store said why */
        goto out;
    }
    TRY_OUT(crypto_pkey_generate(CRYPTO_PKEY_RSA_2048, &k));
    TRY_OUT(crypto_pkey_private_der(k, &der));
    TRY_OUT(store_txn_begin(records, &txn));
    TRY_OUT(store_txn_put(txn, name, coffer_buf_cursor(&der)));
    rc = store_txn_commit(txn);
    txn = NULL;
    TRY_OUT(rc);
    log_info("audit: created the digest signing key of node %s (sealed record %s)", node_id, name);
done:
    *out = k;
    k = NULL;
out:
    store_txn_abort(txn);
    crypto_pkey_free(k);
    coffer_buf_free(&der);
    return rc;
}
