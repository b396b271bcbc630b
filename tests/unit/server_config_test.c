/*
 * cofferd's configuration: the list settings (--peer, --hsm-cluster, --rotation-function:
 * repeatable, ';'-separated in one value, blank items skipped, a key named again replaces its
 * entry, at most a fixed number of entries, bad ones refused with the reason), and the ca= option of an
 * https --rotation-function.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "server/config.h"

static coffer_err load(struct server_config *cfg, int argc, char **argv)
{
    /* No config file in the (absent) data dir, no COFFER_* variables. */
    unsetenv("COFFER_HSM_CLUSTER");
    unsetenv("COFFER_PEER");
    unsetenv("COFFER_ROTATION_FUNCTION");
    return server_config_load(cfg, argc, argv);
}

static void test_hsm_clusters(void **state)
{
    (void)state;
    static struct server_config cfg;
    char *argv[] = {"cofferd",
                    "--data-dir",
                    "/nonexistent/coffer-config-test",
                    "--hsm-cluster",
                    "cluster-1234567890a=module=/a.so,token=one,pin-file=/pin",
                    ("--hsm-cluster=cluster-1234567890b=module=/b.so,slot=2,pin-env=PIN;"
                     "cluster-1234567890c=module=/c.so,token=three,pin-env=PIN"),
                    "--hsm-cluster",
                    "cluster-1234567890a=module=/a2.so,token=uno,pin-file=/pin,sessions=2"};
    assert_int_equal(load(&cfg, sizeof(argv) / sizeof(argv[0]), argv), COFFER_OK);
    assert_int_equal(cfg.kms.n_hsm_clusters, 3);
    assert_string_equal(cfg.kms.hsm_clusters[0].cluster_id, "cluster-1234567890a");
    assert_string_equal(cfg.kms.hsm_clusters[0].module, "/a2.so"); /* named again: replaced */
    assert_string_equal(cfg.kms.hsm_clusters[0].token, "uno");
    assert_int_equal(cfg.kms.hsm_clusters[0].sessions, 2);
    assert_string_equal(cfg.kms.hsm_clusters[1].cluster_id, "cluster-1234567890b");
    assert_int_equal(cfg.kms.hsm_clusters[1].slot, 2);
    assert_string_equal(cfg.kms.hsm_clusters[2].token, "three");

    char *bad[] = {"cofferd", "--data-dir", "/nonexistent/coffer-config-test", "--hsm-cluster",
                   "cluster-1234567890a=module=/a.so,token=one"};
    assert_int_equal(load(&cfg, sizeof(bad) / sizeof(bad[0]), bad), COFFER_ERR_CONFIG);
    assert_non_null(strstr(coffer_last_message(), "pin-file=PATH or pin-env=NAME"));

    /* The environment variable takes the same form. */
    char *none[] = {"cofferd", "--data-dir", "/nonexistent/coffer-config-test"};
    setenv("COFFER_HSM_CLUSTER", "cluster-1234567890d=module=/d.so,token=d,pin-env=P", 1);
    assert_int_equal(server_config_load(&cfg, 3, none), COFFER_OK);
    unsetenv("COFFER_HSM_CLUSTER");
    assert_int_equal(cfg.kms.n_hsm_clusters, 1);
    assert_string_equal(cfg.kms.hsm_clusters[0].cluster_id, "cluster-1234567890d");
}

static void test_rotation_function_ca(void **state)
{
    (void)state;
    static struct server_config cfg;
    unsetenv("COFFER_ROTATION_FUNCTION");
    char *argv[] = {
        "cofferd",
        "--data-dir",
        "/nonexistent/coffer-config-test",
        "--rotation-function",
        "arn:aws:lambda:us-east-1:000000000000:function:a=https://hook.example/rotate,ca=/dev/null",
        "--rotation-function",
        "arn:aws:lambda:us-east-1:000000000000:function:b=https://hook.example/b"};
    assert_int_equal(load(&cfg, sizeof(argv) / sizeof(argv[0]), argv), COFFER_OK);
    assert_int_equal(cfg.secrets.n_functions, 2);
    assert_string_equal(cfg.secrets.functions[0].target, "https://hook.example/rotate");
    assert_string_equal(cfg.secrets.functions[0].ca, "/dev/null");
    assert_string_equal(cfg.secrets.functions[1].target, "https://hook.example/b");
    assert_string_equal(cfg.secrets.functions[1].ca, ""); /* the system's CAs */

    char *http[] = {"cofferd", "--data-dir", "/nonexistent/coffer-config-test", "--rotation-function",
                    "arn:aws:lambda:us-east-1:000000000000:function:a=http://127.0.0.1:9/x,ca=/dev/null"};
    assert_int_equal(load(&cfg, sizeof(http) / sizeof(http[0]), http), COFFER_ERR_CONFIG);
    assert_non_null(strstr(coffer_last_message(), "ca= applies to an https:// target only"));
    char *missing[] = {"cofferd", "--data-dir", "/nonexistent/coffer-config-test", "--rotation-function",
                       "arn:aws:lambda:us-east-1:000000000000:function:a=https://h/x,ca=/nonexistent/ca.pem"};
    assert_int_equal(load(&cfg, sizeof(missing) / sizeof(missing[0]), missing), COFFER_ERR_CONFIG);
    assert_non_null(strstr(coffer_last_message(), "cannot read the CA file /nonexistent/ca.pem"));
}

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define DIR_ARGS "cofferd", "--data-dir", "/nonexistent/coffer-config-test"

/* Loads the configuration with one `--FLAG VALUE`; the error's message is checked by the caller. */
static coffer_err load_one(struct server_config *cfg, const char *flag, const char *value)
{
    char *argv[] = {DIR_ARGS, (char *)flag, (char *)value};
    return load(cfg, ARGC(argv), argv);
}

static void assert_refused(struct server_config *cfg, const char *flag, const char *value, const char *why)
{
    assert_int_equal(load_one(cfg, flag, value), COFFER_ERR_CONFIG);
    if (strstr(coffer_last_message(), why) == NULL) {
        fail_msg("%s %s: '%s' does not say '%s'", flag, value, coffer_last_message(), why);
    }
}

static void test_list_blank_items_and_trailing_commas(void **state)
{
    (void)state;
    static struct server_config cfg;
    /* Empty and blank items, around and between real ones, are skipped; so is a trailing ','
     * after an item's settings. */
    char *argv[] = {DIR_ARGS,
                    "--peer",
                    ";; eu-west-1 = https://eu.example:8443 , ca = /ca.pem , ; ;",
                    "--peer",
                    "",
                    "--peer=;us-west-2=http://us.example,",
                    "--hsm-cluster",
                    " ; cluster-1234567890a=module=/a.so,token=one,pin-env=PIN,;;",
                    "--rotation-function",
                    ";arn:aws:lambda:us-east-1:000000000000:function:f=exec:/bin/true; ;"};
    assert_int_equal(load(&cfg, ARGC(argv), argv), COFFER_OK);
    assert_int_equal(cfg.kms.n_peers, 2);
    assert_string_equal(cfg.kms.peers[0].region, "eu-west-1");
    assert_string_equal(cfg.kms.peers[0].endpoint, "https://eu.example:8443");
    assert_string_equal(cfg.kms.peers[0].ca_bundle, "/ca.pem");
    assert_string_equal(cfg.kms.peers[1].region, "us-west-2");
    assert_string_equal(cfg.kms.peers[1].endpoint, "http://us.example");
    assert_string_equal(cfg.kms.peers[1].ca_bundle, "");
    assert_int_equal(cfg.kms.n_hsm_clusters, 1);
    assert_string_equal(cfg.kms.hsm_clusters[0].pin_env, "PIN");
    assert_int_equal(cfg.secrets.n_functions, 1);
    assert_string_equal(cfg.secrets.functions[0].arn, "arn:aws:lambda:us-east-1:000000000000:function:f");
    assert_string_equal(cfg.secrets.functions[0].target, "exec:/bin/true");

    /* Nothing at all is no entry. */
    assert_int_equal(load_one(&cfg, "--peer", " ; ; "), COFFER_OK);
    assert_int_equal(cfg.kms.n_peers, 0);
}

static void test_list_duplicates_replace(void **state)
{
    (void)state;
    static struct server_config cfg;
    char *argv[] = {DIR_ARGS,
                    "--peer",
                    "eu-west-1=https://one,profile=p1;us-west-2=https://two",
                    "--peer",
                    "eu-west-1=https://three",
                    "--rotation-function",
                    ("arn:aws:lambda:us-east-1:000000000000:function:a=exec:/bin/a;"
                     "arn:aws:lambda:us-east-1:000000000000:function:b=exec:/bin/b;"
                     "arn:aws:lambda:us-east-1:000000000000:function:a=builtin:postgres-single-user")};
    assert_int_equal(load(&cfg, ARGC(argv), argv), COFFER_OK);
    /* Replaced in place, with nothing kept of the earlier entry (its profile). */
    assert_int_equal(cfg.kms.n_peers, 2);
    assert_string_equal(cfg.kms.peers[0].region, "eu-west-1");
    assert_string_equal(cfg.kms.peers[0].endpoint, "https://three");
    assert_string_equal(cfg.kms.peers[0].profile, "");
    assert_string_equal(cfg.kms.peers[1].endpoint, "https://two");
    assert_int_equal(cfg.secrets.n_functions, 2);
    assert_string_equal(cfg.secrets.functions[0].target, "builtin:postgres-single-user");
    assert_string_equal(cfg.secrets.functions[1].target, "exec:/bin/b");
}

/* Item i of a list: head, i in three digits, tail. */
static void item_of(char *out, size_t cap, const char *head, int i, const char *tail)
{
    int w = snprintf(out, cap, "%s%03d%s", head, i, tail);
    assert_true(w > 0 && (size_t)w < cap);
}

/* Items 0..n-1 in one ';'-separated value. */
static void list_of(char *out, size_t cap, const char *head, int n, const char *tail)
{
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        int w = snprintf(out + len, cap - len, "%s%03d%s;", head, i, tail);
        assert_true(w > 0 && (size_t)w < cap - len);
        len += (size_t)w;
    }
}

static void test_list_too_many(void **state)
{
    (void)state;
    static struct server_config cfg;
    static char v[4096];
    static const struct {
        const char *flag, *head, *tail;
        int max;
        const char *why;
    } lists[] = {
        {"--peer", "xx-test-", "=https://peer", 16, "at most 16 peer regions"},
        {"--hsm-cluster", "cluster-00000000", "=module=/m.so,slot=1,pin-env=P", 16,
         "at most 16 HSM clusters"},
        {"--rotation-function", "arn:aws:lambda:us-east-1:000000000000:function:f", "=exec:/bin/true", 32,
         "at most 32 rotation functions"},
    };
    for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]); l++) {
        /* Exactly the maximum is fine, in one value or over several flags; one more is not. */
        list_of(v, sizeof(v), lists[l].head, lists[l].max, lists[l].tail);
        assert_true(strlen(v) < 4096);
        assert_int_equal(load_one(&cfg, lists[l].flag, v), COFFER_OK);
        list_of(v, sizeof(v), lists[l].head, lists[l].max + 1, lists[l].tail);
        assert_refused(&cfg, lists[l].flag, v, lists[l].why);
        char *argv[3 + 2 * 33] = {DIR_ARGS};
        int argc = 3;
        static char items[33][256];
        for (int i = 0; i <= lists[l].max; i++) {
            item_of(items[i], sizeof(items[i]), lists[l].head, i, lists[l].tail);
            argv[argc++] = (char *)lists[l].flag;
            argv[argc++] = items[i];
        }
        assert_int_equal(load(&cfg, argc - 2, argv), COFFER_OK);
        assert_int_equal(load(&cfg, argc, argv), COFFER_ERR_CONFIG);
        assert_non_null(strstr(coffer_last_message(), lists[l].why));
        /* A key already there still replaces its entry when the list is full. */
        argv[argc - 1] = items[0];
        assert_int_equal(load(&cfg, argc, argv), COFFER_OK);
    }
    assert_int_equal(cfg.secrets.n_functions, 32);
}

static void test_list_refusals(void **state)
{
    (void)state;
    static struct server_config cfg;
    static char big[5000];
    memset(big, 'a', sizeof(big) - 1);
    assert_refused(&cfg, "--peer", big, "--peer value is too long");
    assert_refused(&cfg, "--hsm-cluster", big, "--hsm-cluster value is too long");
    assert_refused(&cfg, "--rotation-function", big, "--rotation-function value is too long");
    assert_refused(&cfg, "--peer", "us-west-2", "--peer must be REGION=URL");
    assert_refused(&cfg, "--peer", ",,", "--peer must be REGION=URL");
    assert_refused(&cfg, "--peer", "US-WEST-2=https://x",
                   "--peer: region must look like eu-west-1 (got 'US-WEST-2')");
    assert_refused(&cfg, "--peer", "=https://x", "--peer: bad region ''");
    assert_refused(&cfg, "--peer", "us-west-2=ftp://x",
                   "--peer us-west-2: the endpoint must be an http(s) URL");
    assert_refused(&cfg, "--peer", "us-west-2=https://x,ca", "--peer us-west-2: 'ca' is not NAME=VALUE");
    assert_refused(&cfg, "--peer", "us-west-2=https://x,color=red",
                   "--peer us-west-2: unknown setting 'color'");
    /* A bad item after good ones fails the whole value. */
    assert_refused(&cfg, "--peer", "eu-west-1=https://x;us-west-2", "--peer must be REGION=URL");
    assert_refused(&cfg, "--rotation-function", "arn:aws:lambda:us-east-1:000000000000:function:f",
                   "--rotation-function must be ARN=exec:/path");
    assert_refused(&cfg, "--hsm-cluster", "cluster-1234567890a=module=/a.so,token=t,pin-env=P,color=red",
                   "--hsm-cluster cluster-1234567890a: unknown setting 'color'");
    /* A server is not its own peer (the default region is us-east-1). */
    assert_refused(&cfg, "--peer", "us-east-1=https://x", "a server cannot be its own peer");
}
int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hsm_clusters),
        cmocka_unit_test(test_rotation_function_ca),
        cmocka_unit_test(test_list_blank_items_and_trailing_commas),
        cmocka_unit_test(test_list_duplicates_replace),
        cmocka_unit_test(test_list_too_many),
        cmocka_unit_test(test_list_refusals),

    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
