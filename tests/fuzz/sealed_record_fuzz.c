/*
 * Fuzz target for the sealed-record reader (seal_record_open): arbitrary bytes opened under a
 * fixed root key and a fresh keyring over an in-memory store. Nothing but a record this process
 * sealed can open (the term keys are random per run), so any success is a forgery and aborts.
 * Each input is also sealed and opened back as a plaintext, checking the round trip.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "seal/seal.h"
#include "seal/seal_provider.h"

static seal *g_seal;
static store *g_store;

static void fuzz_init(void)
{
    uint8_t key[SEAL_ROOT_KEY_LEN];
    struct seal_provider *p = NULL;
    memset(key, 0x5a, sizeof(key));
    if (store_open("mem:", &g_store) != COFFER_OK ||
        seal_provider_raw_new(coffer_cursor_from(key, sizeof(key)), &p) != COFFER_OK ||
        seal_open(p, g_store, &g_seal) != COFFER_OK) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (g_seal == NULL) {
        fuzz_init();
    }
    coffer_buf out = COFFER_SECRET_BUF_INIT, sealed = COFFER_BUF_INIT;
    if (seal_record_open(g_seal, "fuzz/record", coffer_cursor_from(data, size), &out) == COFFER_OK) {
        abort(); /* opened bytes we never sealed */
    }
    if (out.len != 0) {
        abort(); /* a failed open must append nothing */
    }
    if (seal_record_seal(g_seal, "fuzz/record", coffer_cursor_from(data, size), &sealed) != COFFER_OK ||
        sealed.len != size + SEAL_OVERHEAD ||
        seal_record_open(g_seal, "fuzz/record", coffer_buf_cursor(&sealed), &out) != COFFER_OK ||
        out.len != size || (size && memcmp(out.data, data, size) != 0)) {
        abort();
    }
    coffer_buf_free(&out);
    coffer_buf_free(&sealed);
    return 0;
}
