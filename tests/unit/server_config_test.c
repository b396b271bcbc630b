/*
 * cofferd's configuration: the --hsm-cluster mappings (repeatable, ';'-separated in one value, a
 * cluster named again replaces its mapping, bad ones refused with the reason), and the ca= option
 * of an https --rotation-function.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "server/config.h"

static coffer_err load(struct server_config *cfg, int argc, char **argv)
{
    /* No config file in the (absent) data dir, no COFFER_* variables. */
    unsetenv("COFFER_HSM_CLUSTER");
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hsm_clusters),
        cmocka_unit_test(test_rotation_function_ca),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
