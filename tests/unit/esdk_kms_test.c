/*
 * Unit tests of the AWS KMS keyring's offline parts: option checks, how the keyring's options
 * reach region / endpoint / credential resolution (the chain itself is tested in
 * awsclient_test.c), key ARN parsing and the EDK filters of strict and discovery mode.
 * The calls to a live KMS are covered by tests/integration/test_esdk_kms.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <unistd.h>

#include "../../src/esdk/keyring_kms.c"

static char tmpdir[64];
static char cred_path[128], conf_path[128];

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/esdk-kms-test-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(cred_path, sizeof(cred_path), "%s/credentials", tmpdir);
    snprintf(conf_path, sizeof(conf_path), "%s/config", tmpdir);
    write_text(cred_path,
               "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = sdefault\n"
               "\n# comment\n[coffer]\n  aws_access_key_id=AKIDCOFFER  \naws_secret_access_key = scoffer\n"
               "aws_session_token = tok\n[empty]\naws_access_key_id =\n");
    write_text(conf_path, "[default]\nregion = eu-west-1\n[profile coffer]\nregion = ap-south-1\n");
    static const char *vars[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                 "AWS_REGION",        "AWS_DEFAULT_REGION",    "AWS_PROFILE",
                                 "AWS_CA_BUNDLE",     "AWS_ENDPOINT_URL",      "AWS_ENDPOINT_URL_KMS"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
        unsetenv(vars[i]);
    }
    setenv("AWS_SHARED_CREDENTIALS_FILE", cred_path, 1);
    setenv("AWS_CONFIG_FILE", conf_path, 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(cred_path);
    unlink(conf_path);
    rmdir(tmpdir);
    return 0;
}

#define ARN1 "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
#define ARN2 "arn:aws:kms:us-west-2:444455556666:key/0000aaaa-12ab-34cd-56ef-1234567890ab"

static struct kms_keyring *new_kr(const struct coffer_kms_keyring_options *o)
{
    return (struct kms_keyring *)coffer_keyring_kms_new(o);
}

static void test_options_rejected(void **state)
{
    (void)state;
    const char *ids[] = {ARN1};
    const char *accts[] = {"111122223333"};
    struct coffer_kms_keyring_options o;

    assert_null(coffer_keyring_kms_new(NULL));
    assert_int_equal(coffer_last_err(), COFFER_ERR_USAGE);
    memset(&o, 0, sizeof(o)); /* strict mode without keys */
    assert_null(coffer_keyring_kms_new(&o));
    assert_int_equal(coffer_last_err(), COFFER_ERR_USAGE);
    o = (struct coffer_kms_keyring_options){.key_ids = ids, .n_key_ids = 1, .discovery = true};
    assert_null(coffer_keyring_kms_new(&o));
    assert_string_equal(coffer_last_message(), "aws-kms keyring: discovery mode takes no key ids");
    o = (struct coffer_kms_keyring_options){
        .discovery = true, .region = "us-east-1", .discovery_partition = "aws"};
    assert_null(coffer_keyring_kms_new(&o)); /* partition without accounts */
    o = (struct coffer_kms_keyring_options){
        .discovery = true, .region = "us-east-1", .discovery_accounts = accts, .n_discovery_accounts = 1};
    assert_null(coffer_keyring_kms_new(&o)); /* accounts without partition */
    o = (struct coffer_kms_keyring_options){.key_ids = NULL, .n_key_ids = 2};
    assert_null(coffer_keyring_kms_new(&o));
    const char *bad_ids[] = {ARN1, ""};
    o = (struct coffer_kms_keyring_options){.key_ids = bad_ids, .n_key_ids = 2};
    assert_null(coffer_keyring_kms_new(&o));
    o = (struct coffer_kms_keyring_options){.key_ids = ids, .n_key_ids = 1, .endpoint = "ftp://x"};
    assert_null(coffer_keyring_kms_new(&o));
    assert_int_equal(coffer_last_err(), COFFER_ERR_CONFIG);
    o = (struct coffer_kms_keyring_options){.key_ids = ids, .n_key_ids = 1, .endpoint = "https://h/path"};
    assert_null(coffer_keyring_kms_new(&o));
    o = (struct coffer_kms_keyring_options){.key_ids = ids, .n_key_ids = 1, .region = "us east"};
    assert_null(coffer_keyring_kms_new(&o));
}

static void test_region_endpoint_credentials(void **state)
{
    (void)state;
    const char *ids[] = {ARN1};
    const char *alias[] = {"alias/orders"};
    struct coffer_kms_keyring_options o = {.key_ids = ids, .n_key_ids = 1};

    /* Region from the ARN, default endpoint, default profile from the file. */
    struct kms_keyring *k = new_kr(&o);
    assert_non_null(k);
    assert_string_equal(k->region, "us-west-2");
    assert_string_equal(awsclient_endpoint(k->client), "https://kms.us-west-2.amazonaws.com");
    assert_string_equal(awsclient_host(k->client), "kms.us-west-2.amazonaws.com");
    assert_string_equal(awsclient_access_key_id(k->client), "AKIDDEFAULT");
    coffer_keyring_release(&k->base);

    /* An alias has no region: the profile's config section gives it; the profile's keys sign. */
    o = (struct coffer_kms_keyring_options){.key_ids = alias,
                                            .n_key_ids = 1,
                                            .profile = "coffer",
                                            .endpoint = "https://127.0.0.1:8443/",
                                            .ca_bundle = "/x/ca.pem"};
    k = new_kr(&o);
    assert_non_null(k);
    assert_string_equal(k->region, "ap-south-1");
    assert_string_equal(awsclient_endpoint(k->client), "https://127.0.0.1:8443");
    assert_string_equal(awsclient_host(k->client), "127.0.0.1:8443");
    assert_string_equal(awsclient_ca_bundle(k->client), "/x/ca.pem");
    assert_string_equal(awsclient_access_key_id(k->client), "AKIDCOFFER");
    coffer_keyring_release(&k->base);

    /* The environment wins over the file; AWS_REGION over the config. */
    setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "senv", 1);
    setenv("AWS_REGION", "ca-central-1", 1);
    setenv("AWS_ENDPOINT_URL_KMS", "http://localhost:4566", 1);
    o = (struct coffer_kms_keyring_options){.discovery = true};
    k = new_kr(&o);
    assert_non_null(k);
    assert_string_equal(k->region, "ca-central-1");
    assert_string_equal(awsclient_endpoint(k->client), "http://localhost:4566");
    assert_string_equal(awsclient_access_key_id(k->client), "AKIDENV");
    coffer_keyring_release(&k->base);
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    unsetenv("AWS_REGION");
    unsetenv("AWS_ENDPOINT_URL_KMS");

    /* A profile with an empty key, or one that does not exist: no credentials. */
    o = (struct coffer_kms_keyring_options){.key_ids = ids, .n_key_ids = 1, .profile = "empty"};
    assert_null(coffer_keyring_kms_new(&o));
    assert_int_equal(coffer_last_err(), COFFER_ERR_CONFIG);
    o.profile = "nosuch";
    assert_null(coffer_keyring_kms_new(&o));
    assert_int_equal(coffer_last_err(), COFFER_ERR_CONFIG);
}

static void test_arn_parse(void **state)
{
    (void)state;
    struct kms_arn a;
    assert_true(kms_arn_parse(coffer_cursor_from_str(ARN1), &a));
    assert_true(coffer_cursor_eq_str(a.partition, "aws"));
    assert_true(coffer_cursor_eq_str(a.region, "us-west-2"));
    assert_true(coffer_cursor_eq_str(a.account, "111122223333"));
    assert_true(kms_arn_parse(coffer_cursor_from_str("arn:aws-cn:kms:cn-north-1:111122223333:alias/x"), &a));
    static const char *bad[] = {
        "",
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        "alias/x",
        "arn:aws:s3:us-west-2:111122223333:key/abc",
        "arn::kms:us-west-2:111122223333:key/abc",
        "arn:aws:kms::111122223333:key/abc",
        "arn:aws:kms:us-west-2::key/abc",
        "arn:aws:kms:us-west-2:111122223333:",
        "arn:aws:kms:us-west-2:111122223333:key/",
        "arn:aws:kms:us-west-2:111122223333:/abc",
        "arn:aws:kms:us-west-2:111122223333:grant/abc",
        "arn:aws:kms:us-west-2:111122223333",
        "arn:aws:kms",
        "xrn:aws:kms:us-west-2:111122223333:key/abc",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(kms_arn_parse(coffer_cursor_from_str(bad[i]), &a));
    }
    /* Truncations of a good ARN never parse past their end (ASan checks the reads). */
    for (size_t n = 0; n < strlen(ARN1) - 36; n++) {
        assert_false(kms_arn_parse(coffer_cursor_from(ARN1, n), &a));
    }
}

static coffer_edk edk_of(const char *pid, const char *info)
{
    coffer_edk e = {(const uint8_t *)pid, strlen(pid),           (const uint8_t *)info,
                    strlen(info),         (const uint8_t *)"ct", 2};
    return e;
}

static void test_edk_filters(void **state)
{
    (void)state;
    struct kms_arn a;
    const char *ids[] = {ARN1};
    const char *accts[] = {"444455556666", "777788889999"};
    struct coffer_kms_keyring_options o = {.key_ids = ids, .n_key_ids = 1};
    struct kms_keyring *strict = new_kr(&o);
    assert_non_null(strict);
    coffer_edk e1 = edk_of("aws-kms", ARN1), e2 = edk_of("aws-kms", ARN2), raw = edk_of("raw", ARN1);
    coffer_edk alias = edk_of("aws-kms", "arn:aws:kms:us-west-2:444455556666:alias/a");
    coffer_edk junk = edk_of("aws-kms", "not an arn");
    assert_true(kms_edk_wanted(strict, &e1, &a));
    assert_false(kms_edk_wanted(strict, &e2, &a));
    assert_false(kms_edk_wanted(strict, &raw, &a));
    assert_false(kms_edk_wanted(strict, &junk, &a));
    /* Strict mode, too, only sends key ARNs, even when an alias ARN is configured. */
    const char *alias_ids[] = {"arn:aws:kms:us-west-2:444455556666:alias/a"};
    o = (struct coffer_kms_keyring_options){.key_ids = alias_ids, .n_key_ids = 1};
    struct kms_keyring *by_alias = new_kr(&o);
    assert_non_null(by_alias);
    assert_false(kms_edk_wanted(by_alias, &alias, &a));
    coffer_keyring_release(&by_alias->base);

    o = (struct coffer_kms_keyring_options){.discovery = true, .region = "us-west-2"};
    struct kms_keyring *any = new_kr(&o);
    assert_non_null(any);
    assert_true(kms_edk_wanted(any, &e1, &a));
    assert_true(kms_edk_wanted(any, &e2, &a));
    assert_false(kms_edk_wanted(any, &alias, &a)); /* discovery decrypts with key ARNs only */
    assert_false(kms_edk_wanted(any, &raw, &a));

    o = (struct coffer_kms_keyring_options){.discovery = true,
                                            .region = "us-west-2",
                                            .discovery_partition = "aws",
                                            .discovery_accounts = accts,
                                            .n_discovery_accounts = 2};
    struct kms_keyring *filtered = new_kr(&o);
    assert_non_null(filtered);
    assert_false(kms_edk_wanted(filtered, &e1, &a));
    assert_true(kms_edk_wanted(filtered, &e2, &a));
    coffer_edk cn = edk_of("aws-kms", "arn:aws-cn:kms:cn-north-1:444455556666:key/abc");
    assert_false(kms_edk_wanted(filtered, &cn, &a));

    /* Discovery cannot encrypt. */
    assert_int_equal(kms_on_encrypt(&any->base, NULL), COFFER_ERR_KEYRING);
    coffer_keyring_release(&strict->base);
    coffer_keyring_release(&any->base);
    coffer_keyring_release(&filtered->base);
}

static void test_unreachable_endpoint(void **state)
{
    (void)state;
    const char *ids[] = {ARN1};
    /* Port 1 on loopback: connection refused, reported as unavailable, never a crash. */
    struct coffer_kms_keyring_options o = {.key_ids = ids, .n_key_ids = 1, .endpoint = "http://127.0.0.1:1"};
    coffer_keyring *kr = coffer_keyring_kms_new(&o);
    assert_non_null(kr);
    coffer_cmm *cmm = coffer_cmm_default_new(kr);
    uint8_t *out = NULL;
    size_t out_len = 0;
    int rc = coffer_encrypt(cmm, NULL, (const uint8_t *)"hi", 2, &out, &out_len);
    assert_int_equal(rc, COFFER_STATUS_UNAVAILABLE);
    assert_null(out);
    assert_non_null(strstr(coffer_status_message(rc), "GenerateDataKey"));
    coffer_cmm_release(cmm);
    coffer_keyring_release(kr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options_rejected),
        cmocka_unit_test(test_region_endpoint_credentials),
        cmocka_unit_test(test_arn_parse),
        cmocka_unit_test(test_edk_filters),
        cmocka_unit_test(test_unreachable_endpoint),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
