/*
 * Fuzz target for what the AWS KMS keyring reads from outside: the provider info of an EDK
 * (a key ARN, from the message being decrypted) and the JSON answer of KMS. The input is split at
 * its first NUL: the part before is the ARN, checked by the parser and by the strict and
 * discovery filters; the part after is a KMS answer, read as GenerateDataKey/Encrypt results and
 * as an error document. Properties: no crash, and an ARN accepted by a strict keyring is exactly
 * its configured id.
 */
#include <stdint.h>
#include <stdlib.h>

#include "../../src/esdk/keyring_kms.c"

#define FUZZ_ARN "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab"

static struct kms_keyring *strict_kr, *discovery_kr;
static coffer_ec *empty_ec;

static void fuzz_init(void)
{
    setenv("AWS_ACCESS_KEY_ID", "AKIDFUZZ", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
    const char *ids[] = {FUZZ_ARN};
    const char *accts[] = {"000000000000"};
    struct coffer_kms_keyring_options s = {.key_ids = ids, .n_key_ids = 1, .endpoint = "http://127.0.0.1:1"};
    struct coffer_kms_keyring_options d = {.discovery = true,
                                           .region = "us-east-1",
                                           .endpoint = "http://127.0.0.1:1",
                                           .discovery_partition = "aws",
                                           .discovery_accounts = accts,
                                           .n_discovery_accounts = 1};
    strict_kr = (struct kms_keyring *)coffer_keyring_kms_new(&s);
    discovery_kr = (struct kms_keyring *)coffer_keyring_kms_new(&d);
    empty_ec = coffer_ec_new();
    if (!strict_kr || !discovery_kr || !empty_ec) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!strict_kr) {
        fuzz_init();
    }
    const uint8_t *nul = memchr(data, 0, size);
    size_t arn_len = nul ? (size_t)(nul - data) : size;
    struct kms_arn arn;
    coffer_edk e = {(const uint8_t *)KMS_PROVIDER_ID, strlen(KMS_PROVIDER_ID), data, arn_len, data, size};

    (void)kms_arn_parse(coffer_cursor_from(data, arn_len), &arn);
    if (kms_edk_wanted(strict_kr, &e, &arn) &&
        !coffer_cursor_eq_str(coffer_cursor_from(data, arn_len), FUZZ_ARN)) {
        abort();
    }
    (void)kms_edk_wanted(discovery_kr, &e, &arn);

    if (nul) {
        const uint8_t *body = nul + 1;
        size_t body_len = size - arn_len - 1;
        json_t *doc = json_loadb((const char *)body, body_len, JSON_REJECT_DUPLICATES, NULL);
        char type[AWSCLIENT_ERROR_TYPE_LEN], msg[AWSCLIENT_ERROR_MESSAGE_LEN];
        awsclient_json_error(coffer_cursor_from(body, body_len), type, msg);
        coffer_enc_materials *m =
            esdk_enc_materials_new(esdk_suite_find(COFFER_SUITE_AES256_GCM_HKDF_SHA512_COMMIT), empty_ec);
        coffer_buf pt = COFFER_BUF_INIT;
        coffer_buf_init(&pt, true);
        if (m && json_is_object(doc)) {
            (void)kms_add_edk(m, doc, "GenerateDataKey");
            (void)kms_json_get_b64(doc, "GenerateDataKey", "Plaintext", &pt);
            kms_json_wipe_string(doc, "Plaintext");
        }
        coffer_buf_free(&pt);
        coffer_enc_materials_free(m);
        json_decref(doc);
    }
    coffer_clear_err();
    return 0;
}
