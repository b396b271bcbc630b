/*
 * Fuzz target for the Query-protocol form reader. Properties: no crash or leak; a parse either
 * succeeds or fails with ValidationError; and a parsed form, re-encoded with coffer_url_encode,
 * parses back to the same object (round trip).
 */
#include <stdint.h>
#include <stdlib.h>

#include "common/codec.h"
#include "http/query.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *j = NULL;
    coffer_err rc = query_form_parse(coffer_cursor_from(data, size), &j);
    if (rc != COFFER_OK) {
        if (rc != COFFER_ERR_VALIDATION && rc != COFFER_ERR_NOMEM) {
            abort();
        }
        return 0;
    }
    coffer_buf enc = COFFER_BUF_INIT;
    const char *key;
    json_t *val;
    bool first = true;
    json_object_foreach(j, key, val)
    {
        if ((!first && coffer_buf_append_str(&enc, "&") != COFFER_OK) ||
            coffer_url_encode(key, &enc) != COFFER_OK || coffer_buf_append_str(&enc, "=") != COFFER_OK ||
            coffer_url_encode(json_string_value(val), &enc) != COFFER_OK) {
            abort();
        }
        first = false;
    }
    json_t *back = NULL;
    if (query_form_parse(coffer_buf_cursor(&enc), &back) != COFFER_OK || !json_equal(j, back)) {
        abort();
    }
    /* The writer must accept anything the reader produced. */
    coffer_buf xml = COFFER_BUF_INIT;
    if (query_xml_response("Fuzz", "ns", j, "r", &xml) != COFFER_OK) {
        abort();
    }
    coffer_buf_free(&xml);
    json_decref(back);
    coffer_buf_free(&enc);
    json_decref(j);
    return 0;
}
