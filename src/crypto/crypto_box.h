/*
 * Sealing bytes to a recipient's public key (ECIES over P-256): the sender needs only the
 * recipient's SubjectPublicKeyInfo, and only the holder of the private key can open the box.
 * KMS uses it to hand key material to a peer region without the material ever being readable
 * outside the two servers' barriers, whatever carries the box (even a TLS terminator).
 *
 * Box format (all integers big endian):
 *
 *   offset   size   field
 *   0        1      version           = 0x01
 *   1        2      epk_len           E
 *   3        E      ephemeral key     DER SubjectPublicKeyInfo, P-256
 *   3+E      n+16   ciphertext||tag   AES-256-GCM, key and IV from HKDF-SHA256 below
 *
 *   shared  = ECDH(ephemeral private, recipient public)
 *   okm     = HKDF-SHA256(ikm = shared, salt = ephemeral SPKI || recipient SPKI,
 *                         info = "coffer box v1") -> 32-byte key || 12-byte IV
 *   AAD     = version || epk_len || ephemeral SPKI || caller's aad
 *
 * A fresh ephemeral key per box makes the key and IV single-use, so a fixed IV derived with
 * the key is safe; binding both public keys into the salt ties a box to its recipient.
 * Thread-safe; no state.
 */
#ifndef COFFER_CRYPTO_CRYPTO_BOX_H
#define COFFER_CRYPTO_CRYPTO_BOX_H

#include "common/buf.h"
#include "common/err.h"

#define CRYPTO_BOX_VERSION 1

/*
 * Seals `plaintext` to `recipient_spki` (DER SubjectPublicKeyInfo of a P-256 key) binding
 * `aad`; appends the box to `out`. COFFER_ERR_VALIDATION for a key that is not P-256.
 */
coffer_err crypto_ecies_seal(coffer_cursor recipient_spki, coffer_cursor aad, coffer_cursor plaintext,
                             coffer_buf *out) __attribute__((warn_unused_result));

/*
 * Opens `box` with the recipient's private key (DER PKCS#8, P-256) and `aad`; appends the
 * plaintext to `out` (give it a secret buffer). Any malformation, another recipient, another
 * aad or a flipped bit: COFFER_ERR_INVALID_CIPHERTEXT, nothing appended.
 */
coffer_err crypto_ecies_open(coffer_cursor recipient_private_der, coffer_cursor aad, coffer_cursor box,
                             coffer_buf *out) __attribute__((warn_unused_result));

#endif
