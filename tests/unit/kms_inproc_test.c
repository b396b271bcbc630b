/*
 * Unit tests for the events of KMS's in-process calls (src/kms/kms_inproc.c): written with the
 * audit line writer to the daemon's trail (kms_service_set_trail), each is the very line the
 * JSON tree given to the event sink becomes in a trail (audit_trail_append), for Encrypt,
 * Decrypt and GenerateDataKey, allowed and refused, with a node id; an event too large for
 * the writer is bounded as a tree is. Runs on "mem:" with a real seal over a temp root key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "audit/audit.h"
#include "common/buf.h"
#include "kms/kms.h"

#define ACCOUNT "111122223333"
#define REGION "us-east-1"
#define VIA "secretsmanager." REGION ".amazonaws.com"
#define NODE "node-a"

struct env {
    char dir[64];
    store *st;
    seal *sl;
    struct kms_service *svc;
    const struct kms_api *kms;
    struct api_caller caller;
    struct api_call call; /* the calling service's request */
    char key_id[64];
};

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    snprintf(e->dir, sizeof(e->dir), "/tmp/kmsinproc.XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    char root[128];
    snprintf(root, sizeof(root), "%s/root.key", e->dir);
    assert_int_equal(store_open("mem:", &e->st), COFFER_OK);
    assert_int_equal(seal_open_keyfile(root, true, e->st, &e->sl), COFFER_OK);
    assert_int_equal(kms_service_new(e->st, e->sl, REGION, &e->svc), COFFER_OK);
    e->kms = kms_module.interface(e->svc);
    snprintf(e->caller.account_id, sizeof(e->caller.account_id), ACCOUNT);
    snprintf(e->caller.principal_arn, sizeof(e->caller.principal_arn), "arn:aws:iam::" ACCOUNT ":user/alice");
    snprintf(e->caller.principal_id, sizeof(e->caller.principal_id), "AIDAEXAMPLE");
    snprintf(e->caller.access_key_id, sizeof(e->caller.access_key_id), "AKIAEXAMPLE");
    e->caller.principal_kind = API_PRINCIPAL_USER;
    e->call = (struct api_call){.caller = &e->caller,
                                .region = REGION,
                                .request_id = "11111111-2222-3333-4444-555555555555",
                                .operation = "GetSecretValue",
                                .now_ms = 1765000000000LL};

    /* One key, made the way a client makes it. */
    const struct api_service *api = kms_service_api(e->svc);
    const struct api_op *op = api_service_find_op(api, "CreateKey", strlen("CreateKey"));
    assert_non_null(op);
    json_t *in = json_object();
    struct api_call create = e->call;
    create.operation = "CreateKey";
    create.input = in;
    assert_int_equal(op->handler(api->state, &create), COFFER_OK);
    snprintf(e->key_id, sizeof(e->key_id), "%s",
             json_string_value(json_object_get(json_object_get(create.output, "KeyMetadata"), "KeyId")));
    json_decref(create.output);
    json_decref(create.audit_request);
    json_decref(create.audit_response);
    json_decref(create.audit_resources);
    json_decref(in);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    kms_service_free(e->svc);
    seal_free(e->sl);
    store_close(e->st);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
    assert_int_equal(system(cmd), 0);
    free(e);
    return 0;
}

static coffer_err sink_append(void *ctx, json_t *event)
{
    return audit_trail_append(ctx, event);
}

static audit_trail *trail_open(struct env *e, const char *name)
{
    char dir[128];
    snprintf(dir, sizeof(dir), "%s/%s", e->dir, name);
    struct audit_trail_options o = {.node_id = NODE};
    audit_trail *t = NULL;
    assert_int_equal(audit_trail_open_ex(dir, &o, &t), COFFER_OK);
    return t;
}

/* The lines of trail `name`, each without its previousEventHash and with its eventID (random)
 * blanked: what must not differ between the two ways of writing. */
static char *trail_text(struct env *e, const char *name, size_t *lines)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/%s/trail-000001.jsonl", e->dir, name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    coffer_buf out;
    coffer_buf_init(&out, false);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    *lines = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        const char *hash = "{\"previousEventHash\":\"";
        assert_memory_equal(line, hash, strlen(hash));
        char *id = strstr(line, "\"eventID\":\"");
        assert_non_null(id);
        memset(id + strlen("\"eventID\":\""), 'x', 36);
        size_t skip = strlen(hash) + 64 + 2;
        assert_int_equal(coffer_buf_append(&out, line + skip, (size_t)n - skip), COFFER_OK);
        (*lines)++;
    }
    free(line);
    fclose(f);
    assert_int_equal(coffer_buf_append_u8(&out, 0), COFFER_OK);
    return (char *)out.data;
}

/* Encrypt, Decrypt, GenerateDataKey, each allowed and refused; the last with `big_ec`. */
static void calls(struct env *e, const json_t *big_ec)
{
    json_t *ec =
        json_pack("{s:s, s:s}", "SecretARN", "arn:aws:secretsmanager:" REGION ":" ACCOUNT ":secret:db-AbCdEf",
                  "SecretVersionId", "v1");
    assert_non_null(ec);
    char *blob = NULL, arn[256];
    const char pt[] = "a secret value";
    coffer_buf plain;
    assert_int_equal(e->kms->encrypt(e->svc, &e->call, VIA, e->key_id, ec,
                                     (coffer_cursor){(const uint8_t *)pt, sizeof(pt) - 1}, &blob, arn,
                                     sizeof(arn)),
                     COFFER_OK);
    assert_int_equal(e->kms->decrypt(e->svc, &e->call, VIA, blob, ec, &plain, arn, sizeof(arn)), COFFER_OK);
    assert_memory_equal(plain.data, pt, sizeof(pt) - 1);
    coffer_buf_free(&plain);
    char *dk_blob = NULL;
    assert_int_equal(e->kms->generate_data_key(e->svc, &e->call, VIA, e->key_id, ec, 32, &plain, &dk_blob,
                                               arn, sizeof(arn)),
                     COFFER_OK);
    coffer_buf_free(&plain);
    free(dk_blob);
    /* Refused: no such key; a context that does not match. */
    char *none = NULL;
    assert_int_not_equal(e->kms->encrypt(e->svc, &e->call, VIA, "alias/none", ec,
                                         (coffer_cursor){(const uint8_t *)pt, sizeof(pt) - 1}, &none, arn,
                                         sizeof(arn)),
                         COFFER_OK);
    json_t *other = json_pack("{s:s}", "SecretARN", "other");
    assert_int_not_equal(e->kms->decrypt(e->svc, &e->call, VIA, blob, other, &plain, arn, sizeof(arn)),
                         COFFER_OK);
    coffer_buf_free(&plain);
    if (big_ec != NULL) {
        (void)e->kms->decrypt(e->svc, &e->call, VIA, blob, big_ec, &plain, arn, sizeof(arn));
        coffer_buf_free(&plain);
    }
    free(blob);
    json_decref(other);
    json_decref(ec);
}

/* The events of the same calls: through the sink as trees, then through the line writer. */
static void same_lines(struct env *e, const json_t *big_ec, size_t want_lines)
{
    audit_trail *tree = trail_open(e, "tree");
    kms_service_set_event_sink(e->svc, sink_append, tree);
    calls(e, big_ec);
    kms_service_set_event_sink(e->svc, NULL, NULL);
    audit_trail_close(tree);

    audit_trail *line = trail_open(e, "line");
    kms_service_set_trail(e->svc, line);
    calls(e, big_ec);
    kms_service_set_trail(e->svc, NULL);
    audit_trail_close(line);

    size_t n_tree = 0, n_line = 0;
    char *a = trail_text(e, "tree", &n_tree);
    char *b = trail_text(e, "line", &n_line);
    assert_int_equal(n_tree, want_lines);
    assert_int_equal(n_line, want_lines);
    assert_string_equal(a, b);
    /* What the integration suites read: the service's identity, the context, errors, node. */
    assert_non_null(strstr(b, "\"invokedBy\":\"secretsmanager.amazonaws.com\""));
    assert_non_null(strstr(b, "\"eventName\":\"GenerateDataKey\""));
    assert_non_null(strstr(b, "\"errorCode\":\"NotFoundException\""));
    assert_non_null(strstr(b, "\"SecretVersionId\":\"v1\""));
    assert_non_null(strstr(b, "\"nodeId\":\"" NODE "\"}\n"));
    assert_null(strstr(b, "a secret value"));
    free(a);
    free(b);
}

static void test_line_is_the_tree_line(void **state)
{
    same_lines(*state, NULL, 5);
}

static void test_oversized_event_is_bounded_as_a_tree(void **state)
{
    /* A context of 200 KB: the writer hands it back, the trail omits the member. */
    json_t *big = json_object();
    char *v = malloc(2001);
    assert_non_null(v);
    memset(v, 'c', 2000);
    v[2000] = 0;
    for (int i = 0; i < 100; i++) {
        char k[16];
        snprintf(k, sizeof(k), "k%d", i);
        assert_int_equal(json_object_set_new(big, k, json_string(v)), 0);
    }
    free(v);
    same_lines(*state, big, 6);
    size_t n = 0;
    char *text = trail_text(*state, "line", &n);
    assert_non_null(strstr(text, "\"requestParameters\":{\"omitted\":true"));
    free(text);
    json_decref(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_line_is_the_tree_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_event_is_bounded_as_a_tree, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
