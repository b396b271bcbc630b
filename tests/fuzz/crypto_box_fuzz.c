/*
 * Fuzz target for the crypto_box reader (src/crypto/crypto_box.c): the boxes of key material a
 * peer region sends. Property: opening arbitrary bytes with a fixed recipient key never
 * crashes, and fails with InvalidCiphertextException leaving nothing in the output.
 */
#include <stdint.h>
#include <stdlib.h>

#include "crypto/crypto.h"
#include "crypto/crypto_box.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static coffer_buf priv = COFFER_BUF_INIT;
    if (priv.len == 0) {
        crypto_pkey *k = NULL;
        if (crypto_pkey_generate(CRYPTO_PKEY_EC_P256, &k) != COFFER_OK ||
            crypto_pkey_private_der(k, &priv) != COFFER_OK) {
            abort();
        }
        crypto_pkey_free(k);
    }
    coffer_buf out = COFFER_SECRET_BUF_INIT;
    coffer_err rc = crypto_ecies_open(coffer_buf_cursor(&priv), coffer_cursor_from_str("aad"),
                                      coffer_cursor_from(data, size), &out);
    if (rc != COFFER_ERR_INVALID_CIPHERTEXT || out.len != 0) {
        abort();
    }
    coffer_buf_free(&out);
    return 0;
}
