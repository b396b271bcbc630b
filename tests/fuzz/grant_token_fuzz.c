/*
 * Fuzz target for the KMS grant token reader (src/kms/kms_authz.c, kms_grant_token_parse):
 * untrusted tokens arrive in GrantTokens on every KMS request and in RetireGrant. Property: a
 * token the reader accepts names a well-formed grant (valid key id, 64-hex grant id, 12-digit
 * account), and a fresh token made from those fields parses back to the same fields.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kms/kms_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[4096];
    if (size >= sizeof(text)) {
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    struct kms_grant_ref g;
    coffer_err rc = kms_grant_token_parse(text, &g);
    if (rc != COFFER_OK) {
        if (rc != COFFER_ERR_INVALID_GRANT_TOKEN) {
            abort();
        }
        return 0;
    }
    if (!kms_key_id_valid(g.key_id) || !kms_grant_id_valid(g.grant_id) ||
        strlen(g.account) != API_ACCOUNT_ID_LEN) {
        abort();
    }
    char *again = NULL;
    struct kms_grant_ref g2;
    if (kms_grant_token_make(g.account, g.region, g.key_id, g.grant_id, &again) != COFFER_OK ||
        kms_grant_token_parse(again, &g2) != COFFER_OK || memcmp(&g, &g2, sizeof(g)) != 0) {
        abort();
    }
    free(again);
    return 0;
}
