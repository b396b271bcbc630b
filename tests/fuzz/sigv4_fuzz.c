/*
 * libFuzzer target for the SigV4 verifier (src/auth/sigv4.c), the first parser every request
 * reaches. Each input is used three ways:
 *   1. as an Authorization header value for sigv4_parse_authorization;
 *   2. as a whole request ("METHOD PATH?QUERY" line, "Name: value" lines, blank line, body) for
 *      sigv4_verify with a fixed credential lookup, which must fail cleanly or succeed;
 *   3. as the path, query, header values and body of a request that is signed and then
 *      verified: the round trip must succeed whenever signing does.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sigv4.h"

#define FZ_AKID "AKIDEXAMPLE"
#define FZ_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define FZ_NOW 1440938160 /* 2015-08-30T12:36:00Z */
#define FZ_MAX_HDRS 32

static coffer_err fz_lookup(void *ctx, coffer_cursor akid, const char *token, struct sigv4_identity *out)
{
    (void)ctx;
    (void)token;
    if (!coffer_cursor_eq_str(akid, FZ_AKID)) {
        return coffer_fail(COFFER_ERR_UNRECOGNIZED_CLIENT, "unknown");
    }
    return coffer_buf_from(&out->secret, FZ_SECRET, strlen(FZ_SECRET), true);
}

static coffer_err verify(const struct sigv4_request *r)
{
    struct sigv4_verify_opts o = {"us-east-1", "kms", FZ_NOW, SIGV4_DEFAULT_SKEW_S};
    struct sigv4_identity who;
    memset(&who, 0, sizeof(who));
    coffer_err rc = sigv4_verify(r, &o, fz_lookup, NULL, &who);
    sigv4_identity_clean(&who);
    return rc;
}

/* 2: the input as a raw request. `text` is a NUL-terminated private copy we may cut up. */
static void fuzz_request(char *text)
{
    struct sigv4_header h[FZ_MAX_HDRS];
    size_t n = 0;
    char *body = strstr(text, "\n\n");
    if (body != NULL) {
        *body = '\0';
        body += 2;
    }
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    const char *method = line ? line : "POST", *path = "/", *query = "";
    char *sp = line ? strchr(line, ' ') : NULL;
    if (sp != NULL) {
        *sp = '\0';
        path = sp + 1;
        char *q = strchr(sp + 1, '?');
        if (q != NULL) {
            *q = '\0';
            query = q + 1;
        }
    }
    while ((line = strtok_r(NULL, "\n", &save)) != NULL && n < FZ_MAX_HDRS) {
        char *colon = strchr(line, ':');
        if (colon == NULL) {
            continue;
        }
        *colon = '\0';
        h[n].name = line;
        h[n].value = colon + 1;
        n++;
    }
    struct sigv4_request r = {method, path, query, h, n, coffer_cursor_from(body, body ? strlen(body) : 0),
                              false};
    (void)verify(&r);
}

/* 3: sign then verify a request whose variable parts come from the input. */
static void fuzz_round_trip(const uint8_t *data, size_t size)
{
    /* fields separated by 0x00: path, query, value0, value1, body (NUL-free by construction) */
    char *copy = malloc(size + 6);
    if (copy == NULL) {
        return;
    }
    memcpy(copy, data, size);
    memset(copy + size, 0, 6);
    const char *field[5];
    char *p = copy;
    for (int i = 0; i < 5; i++) {
        field[i] = p;
        p += strlen(p) + (p < copy + size ? 1 : 0);
        if (p > copy + size) {
            p = copy + size;
        }
    }
    struct sigv4_header h[5] = {{"Host", "kms.us-east-1.amazonaws.com"},
                                {"X-Amz-Date", "20150830T123600Z"},
                                {"X-Fuzz-A", field[2]},
                                {"x-fuzz-b", field[3]},
                                {"X-Fuzz-A", field[3]}};
    struct sigv4_request r = {
        "POST", field[0], field[1], h, 5, coffer_cursor_from(field[4], strlen(field[4])), false};
    struct sigv4_credentials c = {FZ_AKID, FZ_SECRET, NULL};
    coffer_buf a = COFFER_BUF_INIT;
    coffer_err rc =
        sigv4_sign(&r, &c, "us-east-1", "kms", "20150830T123600Z", "host;x-amz-date;x-fuzz-a;x-fuzz-b", &a);
    if (rc == COFFER_OK && coffer_buf_nul_terminate(&a) == COFFER_OK) {
        struct sigv4_header h2[6];
        memcpy(h2, h, sizeof(h));
        h2[5].name = "Authorization";
        h2[5].value = (const char *)a.data;
        r.headers = h2;
        r.n_headers = 6;
        if (verify(&r) != COFFER_OK) {
            fprintf(stderr, "round trip failed: %s\n", coffer_last_message());
            abort();
        }
    }
    coffer_buf_free(&a);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sigv4_authorization auth;
    (void)sigv4_parse_authorization(coffer_cursor_from(data, size), &auth);

    char *text = malloc(size + 1);
    if (text == NULL) {
        return 0;
    }
    memcpy(text, data, size);
    text[size] = '\0';
    fuzz_request(text);
    free(text);

    fuzz_round_trip(data, size);
    return 0;
}
