/*
 * Fuzz target for the sealed-record reader (seal_record_open): arbitrary bytes opened under a
 * fixed root key and a fresh keyring over an in-memory store. Nothing but a record this process
 * sealed can open (the term keys are random per run), so any success is a forgery and aborts.
 * Each input is also sealed and opened back as a plaintext, checking the round trip, and the
 * same twice over through the sealed view of the store: the input as a stored value never
 * opens, and as a value put through the view it reads back unchanged.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "seal/seal.h"
#include "seal/seal_provider.h"

static seal *g_seal;
static store *g_store, *g_view;

static void fuzz_init(void)
{
    uint8_t key[SEAL_ROOT_KEY_LEN];
    struct seal_provider *p = NULL;
    memset(key, 0x5a, sizeof(key));
    coffer_log_set_level(COFFER_LOG_OFF); /* every refused record is logged: noise here */
    if (store_open("mem:", &g_store) != COFFER_OK ||
        seal_provider_raw_new(coffer_cursor_from(key, sizeof(key)), &p) != COFFER_OK ||
        seal_open(p, g_store, &g_seal) != COFFER_OK ||
        seal_store_wrap(g_seal, g_store, &g_view) != COFFER_OK) {
        abort();
    }
}

static void put(store *st, const char *key, const uint8_t *data, size_t size)
{
    store_txn *t = NULL;
    if (store_txn_begin(st, &t) != COFFER_OK ||
        store_txn_put(t, key, coffer_cursor_from(data, size)) != COFFER_OK ||
        store_txn_commit(t) != COFFER_OK) {
        abort();
    }
}

static void through_the_view(const uint8_t *data, size_t size)
{
    coffer_buf out = COFFER_SECRET_BUF_INIT;
    put(g_store, "fuzz/stored", data, size);
    if (store_get(g_view, "fuzz/stored", &out) != COFFER_ERR_STORE || out.len != 0) {
        abort(); /* served a value the view never sealed */
    }
    put(g_view, "fuzz/stored", data, size);
    if (store_get(g_view, "fuzz/stored", &out) != COFFER_OK || out.len != size ||
        (size && memcmp(out.data, data, size) != 0)) {
        abort();
    }
    coffer_buf_free(&out);
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
    if (size <= STORE_VALUE_MAX - SEAL_OVERHEAD) {
        through_the_view(data, size);
    }
    return 0;
}
