/*
 * Unit tests of the AWS client: the credentials chain (environment, shared credentials file,
 * config file, profiles, precedence, missing and garbled files), the region, endpoint
 * resolution, signing, error-type parsing, and the retry loop against a scripted HTTP server on
 * loopback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "awsclient/awsclient.h"

static char tmpdir[64];
static char cred_path[128], conf_path[128];

static const char *const aws_vars[] = {"AWS_ACCESS_KEY_ID",    "AWS_SECRET_ACCESS_KEY",
                                       "AWS_SESSION_TOKEN",    "AWS_REGION",
                                       "AWS_DEFAULT_REGION",   "AWS_PROFILE",
                                       "AWS_CA_BUNDLE",        "AWS_ENDPOINT_URL",
                                       "AWS_ENDPOINT_URL_KMS", "AWS_SHARED_CREDENTIALS_FILE",
                                       "AWS_CONFIG_FILE"};

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void clear_env(void)
{
    for (size_t i = 0; i < sizeof(aws_vars) / sizeof(aws_vars[0]); i++) {
        unsetenv(aws_vars[i]);
    }
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/awsclient-test-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(cred_path, sizeof(cred_path), "%s/credentials", tmpdir);
    snprintf(conf_path, sizeof(conf_path), "%s/config", tmpdir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* Each test starts from a clean environment pointing at the two files, both absent. */
static int per_test(void **state)
{
    (void)state;
    clear_env();
    unlink(cred_path);
    unlink(conf_path);
    setenv("AWS_SHARED_CREDENTIALS_FILE", cred_path, 1);
    setenv("AWS_CONFIG_FILE", conf_path, 1);
    setenv("HOME", tmpdir, 1);
    return 0;
}

static const char *secret_of(const struct awsclient_credentials *c)
{
    return (const char *)c->secret_key.data;
}

static const char *token_of(const struct awsclient_credentials *c)
{
    return c->session_token.len ? (const char *)c->session_token.data : NULL;
}

/* Loads with `src` and checks the access key id (NULL: expect COFFER_ERR_CONFIG). */
static void expect_akid(const struct awsclient_source *src, const char *akid)
{
    struct awsclient_credentials c = {0};
    coffer_err rc = awsclient_credentials_load(src, &c);
    if (!akid) {
        assert_int_equal(rc, COFFER_ERR_CONFIG);
        assert_null(c.access_key_id);
        return;
    }
    assert_int_equal(rc, COFFER_OK);
    assert_string_equal(c.access_key_id, akid);
    awsclient_credentials_clean(&c);
}

/* ================================================================================================
 * Credentials chain
 * ============================================================================================= */

static void test_env_first(void **state)
{
    (void)state;
    struct awsclient_source src = {0};
    struct awsclient_credentials c = {0};
    write_text(cred_path, "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = sfile\n");
    setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "senv", 1);
    setenv("AWS_SESSION_TOKEN", "tenv", 1);
    assert_int_equal(awsclient_credentials_load(&src, &c), COFFER_OK);
    assert_string_equal(c.access_key_id, "AKIDENV");
    assert_string_equal(secret_of(&c), "senv");
    assert_string_equal(token_of(&c), "tenv");
    assert_true(c.secret_key.secret && c.session_token.secret); /* locked, wiped buffers */
    awsclient_credentials_clean(&c);
    assert_null(c.access_key_id);
    assert_null(c.secret_key.data);

    /* A lone key id in the environment is not a credential: the file answers. */
    unsetenv("AWS_SECRET_ACCESS_KEY");
    assert_int_equal(awsclient_credentials_load(&src, &c), COFFER_OK);
    assert_string_equal(c.access_key_id, "AKIDFILE");
    assert_null(token_of(&c)); /* AWS_SESSION_TOKEN goes with the environment's keys only */
    awsclient_credentials_clean(&c);

    /* skip_env: a tool with its own credentials ignores the environment entirely. */
    setenv("AWS_SECRET_ACCESS_KEY", "senv", 1);
    src.skip_env = true;
    src.credentials_file = cred_path;
    expect_akid(&src, "AKIDFILE");
}

static void test_profiles(void **state)
{
    (void)state;
    struct awsclient_source src = {0};
    struct awsclient_credentials c = {0};
    write_text(cred_path, "# written by hand\n"
                          "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = sdefault\n"
                          "\n; another comment\n[ ci ]\n  aws_access_key_id=AKIDCI  \r\n"
                          "aws_secret_access_key = s=ci==\naws_session_token = tci\n"
                          "[profile prod]\naws_access_key_id = AKIDWRONG\naws_secret_access_key = swrong\n");
    write_text(conf_path, "[prod]\naws_access_key_id = AKIDWRONG2\naws_secret_access_key = swrong\n"
                          "[profile prod]\naws_access_key_id = AKIDPROD\naws_secret_access_key = sprod\n");
    expect_akid(&src, "AKIDDEFAULT");

    /* AWS_PROFILE picks the section; blanks around names, keys and values do not count. */
    setenv("AWS_PROFILE", "ci", 1);
    assert_int_equal(awsclient_credentials_load(&src, &c), COFFER_OK);
    assert_string_equal(c.access_key_id, "AKIDCI");
    assert_string_equal(secret_of(&c), "s=ci=="); /* split at the first '=' only */
    assert_string_equal(token_of(&c), "tci");
    awsclient_credentials_clean(&c);

    /* An explicit profile beats AWS_PROFILE. */
    src.profile = "default";
    expect_akid(&src, "AKIDDEFAULT");

    /* The credentials file names profiles plainly: its [profile prod] is a profile called
       "profile prod". The config file names them [profile prod]: its [prod] is not one. */
    src.profile = "prod";
    expect_akid(&src, "AKIDPROD");
    src.profile = "profile prod";
    expect_akid(&src, "AKIDWRONG");
    src.profile = "nosuch";
    expect_akid(&src, NULL);
    assert_non_null(strstr(coffer_last_message(), "nosuch"));
}

static void test_config_file_credentials(void **state)
{
    (void)state;
    struct awsclient_source src = {0};
    /* No credentials file at all: the config file's section answers. */
    write_text(conf_path, "[default]\naws_access_key_id = AKIDCONF\naws_secret_access_key = sconf\n"
                          "[profile ci]\naws_access_key_id = AKIDCONFCI\naws_secret_access_key = sconfci\n");
    expect_akid(&src, "AKIDCONF");
    src.profile = "ci";
    expect_akid(&src, "AKIDCONFCI");
    /* The credentials file wins over the config file for the same profile. */
    write_text(cred_path, "[ci]\naws_access_key_id = AKIDCRED\naws_secret_access_key = scred\n");
    expect_akid(&src, "AKIDCRED");
    /* [profile default] in the config file is the default profile too. */
    write_text(conf_path, "[profile default]\naws_access_key_id = AKIDPD\naws_secret_access_key = spd\n");
    src.profile = NULL;
    expect_akid(&src, "AKIDPD");
}

static void test_missing_files(void **state)
{
    (void)state;
    struct awsclient_source src = {0};
    char *region = (char *)"x";

    expect_akid(&src, NULL); /* both files absent */
    assert_int_equal(awsclient_region_load(&src, &region), COFFER_OK);
    assert_null(region);

    /* "" means "no file": even an existing default file is not read. */
    write_text(cred_path, "[default]\naws_access_key_id = AKID\naws_secret_access_key = s\n");
    src.credentials_file = "";
    expect_akid(&src, NULL);

    /* Without the variables, $HOME/.aws/ is where the files are. */
    char dir[160], path[192];
    snprintf(dir, sizeof(dir), "%s/.aws", tmpdir);
    mkdir(dir, 0700);
    snprintf(path, sizeof(path), "%s/credentials", dir);
    write_text(path, "[default]\naws_access_key_id = AKIDHOME\naws_secret_access_key = shome\n");
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");
    src.credentials_file = NULL;
    expect_akid(&src, "AKIDHOME");
    unsetenv("HOME");
    expect_akid(&src, NULL);
    unlink(path);
    rmdir(dir);

    /* A directory where a file should be reads as nothing. */
    src.credentials_file = tmpdir;
    expect_akid(&src, NULL);
}

static void test_garbled_files(void **state)
{
    (void)state;
    struct awsclient_source src = {.profile = "ci"};

    /* A header without ']' closes the section: the keys after it belong to no profile. */
    write_text(cred_path, "[ci]\naws_access_key_id = AKIDCI\n[oops\naws_secret_access_key = stolen\n");
    expect_akid(&src, NULL);
    assert_non_null(strstr(coffer_last_message(), "partial"));

    /* Partial credentials are an error, not a reason to look further. */
    write_text(cred_path, "[ci]\naws_secret_access_key = s\n");
    write_text(conf_path, "[profile ci]\naws_access_key_id = AKIDCONF\naws_secret_access_key = sconf\n");
    expect_akid(&src, NULL);
    /* Empty values count as absent: the config file answers. */
    write_text(cred_path, "[ci]\naws_access_key_id =\naws_secret_access_key=\n");
    expect_akid(&src, "AKIDCONF");

    /* Lines without '=', binary junk and a NUL inside a line are skipped. */
    FILE *f = fopen(cred_path, "wb");
    assert_non_null(f);
    static const char junk[] = "\xff\xfe garbage\n[ci]\nno equals sign here\naws_access_key_id = AKID\0EVIL\n"
                               "aws_access_key_id = AKIDGOOD\naws_secret_access_key = sgood";
    fwrite(junk, 1, sizeof(junk) - 1, f); /* no final newline either */
    fclose(f);
    expect_akid(&src, "AKIDGOOD");

    /* Very long lines are read whole, not split into pieces that could look like keys. */
    f = fopen(cred_path, "w");
    assert_non_null(f);
    fputs("[ci]\naws_access_key_id = AKIDLONG\naws_secret_access_key = ", f);
    for (int i = 0; i < 5000; i++) {
        fputc('k', f);
    }
    fputs("[x]aws_access_key_id=AKIDSPLIT\n", f);
    fclose(f);
    expect_akid(&src, "AKIDLONG");

    /* A file beyond the size limit is refused with an error, not read in part. */
    f = fopen(cred_path, "w");
    assert_non_null(f);
    fputs("[ci]\naws_access_key_id = AKID\naws_secret_access_key = s\n", f);
    while (ftell(f) <= (long)AWSCLIENT_MAX_FILE) {
        fputs("# padding padding padding padding padding padding padding\n", f);
    }
    fclose(f);
    expect_akid(&src, NULL);
    assert_non_null(strstr(coffer_last_message(), "larger"));

    /* Profile names that cannot be a section name are refused. */
    src.profile = "a]b";
    expect_akid(&src, NULL);
}

static void test_region(void **state)
{
    (void)state;
    struct awsclient_source src = {0};
    char *region = NULL;

    write_text(conf_path,
               "[default]\nregion = eu-west-1\n[profile ci]\nregion=ap-south-1\n[ci]\nregion = wrong\n"
               "[profile bad]\nregion = us east\n[profile empty]\nregion =\n");
    assert_int_equal(awsclient_region_load(&src, &region), COFFER_OK);
    assert_string_equal(region, "eu-west-1");
    free(region);
    src.profile = "ci";
    assert_int_equal(awsclient_region_load(&src, &region), COFFER_OK);
    assert_string_equal(region, "ap-south-1");
    free(region);
    src.profile = "empty";
    assert_int_equal(awsclient_region_load(&src, &region), COFFER_OK);
    assert_null(region);
    src.profile = "bad";
    assert_int_equal(awsclient_region_load(&src, &region), COFFER_ERR_CONFIG);
    assert_null(region);

    /* AWS_REGION, then AWS_DEFAULT_REGION, beat the file; skip_env ignores both. */
    src.profile = "ci";
    setenv("AWS_DEFAULT_REGION", "ca-central-1", 1);
    assert_int_equal(awsclient_region_load(&src, &region), COFFER_OK);
    assert_string_equal(region, "ca-central-1");
    free(region);
    setenv("AWS_REGION", "us-west-2", 1);
    assert_int_equal(awsclient_region_load(&src, &region), COFFER_OK);
    assert_string_equal(region, "us-west-2");
    free(region);
    src.skip_env = true;
    src.config_file = conf_path;
    assert_int_equal(awsclient_region_load(&src, &region), COFFER_OK);
    assert_string_equal(region, "ap-south-1");
    free(region);

    assert_true(awsclient_region_valid("us-east-1"));
    assert_false(awsclient_region_valid(""));
    assert_false(awsclient_region_valid("us-east-1/x"));
    assert_false(awsclient_region_valid("US-EAST-1"));
}

static void test_credentials_set(void **state)
{
    (void)state;
    struct awsclient_credentials c = {0};
    assert_int_equal(awsclient_credentials_set(&c, "AKID", "", NULL), COFFER_ERR_CONFIG);
    assert_int_equal(awsclient_credentials_set(&c, NULL, "s", NULL), COFFER_ERR_CONFIG);
    assert_int_equal(awsclient_credentials_set(&c, "AKID", "s", ""), COFFER_OK);
    assert_null(token_of(&c));
    awsclient_credentials_clean(&c);
    awsclient_credentials_clean(&c); /* twice is fine */
}

/* ================================================================================================
 * Client: endpoint, signing, errors
 * ============================================================================================= */

static void creds_fixture(struct awsclient_credentials *c, const char *token)
{
    assert_int_equal(
        awsclient_credentials_set(c, "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token),
        COFFER_OK);
}

static void test_endpoint(void **state)
{
    (void)state;
    struct awsclient_credentials cr = {0};
    awsclient *c = NULL;
    creds_fixture(&cr, NULL);
    struct awsclient_config cfg = {
        .service = "kms", .region = "us-west-2", .env_service = "KMS", .credentials = &cr};

    assert_int_equal(awsclient_new(&cfg, &c), COFFER_OK);
    assert_string_equal(awsclient_endpoint(c), "https://kms.us-west-2.amazonaws.com");
    assert_string_equal(awsclient_host(c), "kms.us-west-2.amazonaws.com");
    assert_null(awsclient_ca_bundle(c));
    assert_string_equal(awsclient_access_key_id(c), "AKIDEXAMPLE");
    awsclient_free(c);

    setenv("AWS_ENDPOINT_URL", "http://generic:1", 1);
    setenv("AWS_ENDPOINT_URL_KMS", "http://localhost:4566/", 1);
    setenv("AWS_CA_BUNDLE", "/env/ca.pem", 1);
    assert_int_equal(awsclient_new(&cfg, &c), COFFER_OK);
    assert_string_equal(awsclient_endpoint(c), "http://localhost:4566");
    assert_string_equal(awsclient_host(c), "localhost:4566");
    assert_string_equal(awsclient_ca_bundle(c), "/env/ca.pem");
    awsclient_free(c);
    cfg.env_service = NULL;
    assert_int_equal(awsclient_new(&cfg, &c), COFFER_OK);
    assert_string_equal(awsclient_endpoint(c), "http://generic:1");
    awsclient_free(c);
    cfg.skip_env = true; /* coffer admin: only what it is given */
    assert_int_equal(awsclient_new(&cfg, &c), COFFER_OK);
    assert_string_equal(awsclient_endpoint(c), "https://kms.us-west-2.amazonaws.com");
    assert_null(awsclient_ca_bundle(c));
    awsclient_free(c);

    cfg.endpoint = "https://127.0.0.1:8443";
    cfg.ca_bundle = "/x/ca.pem";
    assert_int_equal(awsclient_new(&cfg, &c), COFFER_OK);
    assert_string_equal(awsclient_host(c), "127.0.0.1:8443");
    assert_string_equal(awsclient_ca_bundle(c), "/x/ca.pem");
    awsclient_free(c);

    static const char *const bad[] = {"ftp://x", "https://", "https://h/path", "https://h?q", "h:443", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg.endpoint = bad[i];
        c = (awsclient *)1;
        assert_int_equal(awsclient_new(&cfg, &c), COFFER_ERR_CONFIG);
        assert_null(c);
    }
    cfg.endpoint = NULL;
    cfg.region = "us east";
    assert_int_equal(awsclient_new(&cfg, &c), COFFER_ERR_CONFIG);
    cfg.region = "us-east-1";
    cfg.credentials = NULL;
    assert_int_equal(awsclient_new(&cfg, &c), COFFER_ERR_USAGE);
    awsclient_credentials_clean(&cr);
}

static void test_sign(void **state)
{
    (void)state;
    struct awsclient_credentials cr = {0};
    coffer_buf a = COFFER_BUF_INIT, b = COFFER_BUF_INIT;
    char date[AWSCLIENT_AMZ_DATE_LEN];
    coffer_cursor body = coffer_cursor_from_str("{}");

    creds_fixture(&cr, NULL);
    assert_int_equal(awsclient_json_sign(&cr, "us-east-1", "kms", "h:1", "TrentService.Encrypt", body,
                                         1440938160, date, &a),
                     COFFER_OK);
    assert_string_equal(date, "20150830T123600Z");
    assert_non_null(
        strstr((const char *)a.data, "Credential=AKIDEXAMPLE/20150830/us-east-1/kms/aws4_request"));
    assert_non_null(strstr((const char *)a.data, "SignedHeaders=content-type;host;x-amz-date;x-amz-target,"));
    /* Same input, same signature; a different target, another one. */
    assert_int_equal(awsclient_json_sign(&cr, "us-east-1", "kms", "h:1", "TrentService.Encrypt", body,
                                         1440938160, date, &b),
                     COFFER_OK);
    assert_string_equal((const char *)a.data, (const char *)b.data);
    coffer_buf_reset(&b);
    assert_int_equal(awsclient_json_sign(&cr, "us-east-1", "kms", "h:1", "TrentService.Decrypt", body,
                                         1440938160, date, &b),
                     COFFER_OK);
    assert_string_not_equal((const char *)a.data, (const char *)b.data);
    awsclient_credentials_clean(&cr);

    /* With a session token, the token header is signed too. */
    creds_fixture(&cr, "TOKEN");
    coffer_buf_reset(&b);
    assert_int_equal(awsclient_json_sign(&cr, "us-east-1", "kms", "h:1", "TrentService.Encrypt", body,
                                         1440938160, date, &b),
                     COFFER_OK);
    assert_non_null(strstr((const char *)b.data, "x-amz-date;x-amz-security-token;x-amz-target,"));
    awsclient_credentials_clean(&cr);
    coffer_buf_free(&a);
    coffer_buf_free(&b);
}

static void json_error_of(const char *body, const char *type, const char *msg)
{
    char t[AWSCLIENT_ERROR_TYPE_LEN], m[AWSCLIENT_ERROR_MESSAGE_LEN];
    awsclient_json_error(coffer_cursor_from_str(body), t, m);
    assert_string_equal(t, type);
    assert_string_equal(m, msg);
}

static void test_json_error(void **state)
{
    (void)state;
    json_error_of("{\"__type\":\"com.amazonaws.kms#DisabledException\",\"message\":\"off\"}",
                  "DisabledException", "off");
    json_error_of("{\"__type\":\"NotFoundException\",\"Message\":\"gone\"}", "NotFoundException", "gone");
    json_error_of("{\"__type\":\"ThrottlingException:http://internal.amazon.com/coral/\"}",
                  "ThrottlingException", "");
    json_error_of("{\"code\":\"AccessDeniedException\",\"message\":\"no\"}", "AccessDeniedException", "no");
    json_error_of("not JSON at all", "UnknownError", "");
    json_error_of("", "UnknownError", "");
    json_error_of("{\"__type\":\"ns#\"}", "UnknownError", "");
    json_error_of("{\"__type\":5,\"message\":[]}", "UnknownError", "");

    assert_true(awsclient_retryable(500, ""));
    assert_true(awsclient_retryable(503, "ServiceUnavailableException"));
    assert_true(awsclient_retryable(429, ""));
    assert_true(awsclient_retryable(400, "ThrottlingException"));
    assert_false(awsclient_retryable(400, "NotFoundException"));
    assert_false(awsclient_retryable(403, "AccessDeniedException"));
}

/* ================================================================================================
 * Retries against a scripted server
 * ============================================================================================= */

/* One scripted answer per connection: a status line and a body; status "hangup" closes at once. */
struct script_answer {
    const char *status; /* "200 OK"; NULL ends the script */
    const char *body;
};

struct script_server {
    int fd;
    int port;
    const struct script_answer *answers;
    int served;
    char last_target[128];
    char last_ctype[128];
    char last_body[256];
    bool saw_token;
    pthread_t thread;
};

static void *script_run(void *arg)
{
    struct script_server *s = arg;
    for (; s->answers[s->served].status; s->served++) {
        int c = accept(s->fd, NULL, NULL);
        if (c < 0) {
            break;
        }
        char req[8192];
        size_t n = 0;
        ssize_t r;
        /* Read the headers and the small body. */
        while (n < sizeof(req) - 1 && (r = read(c, req + n, sizeof(req) - 1 - n)) > 0) {
            n += (size_t)r;
            req[n] = '\0';
            char *end = strstr(req, "\r\n\r\n");
            char *cl = strcasestr(req, "\r\ncontent-length:");
            if (end && cl && (size_t)(end + 4 - req) + strtoul(cl + 17, NULL, 10) <= n) {
                break;
            }
        }
        req[n] = '\0';
        char *t = strcasestr(req, "\r\nx-amz-target: ");
        s->last_target[0] = '\0';
        if (t) {
            snprintf(s->last_target, sizeof(s->last_target), "%.*s", (int)strcspn(t + 16, "\r"), t + 16);
        }
        char *ct = strcasestr(req, "\r\ncontent-type: ");
        if (ct) {
            snprintf(s->last_ctype, sizeof(s->last_ctype), "%.*s", (int)strcspn(ct + 16, "\r"), ct + 16);
        }
        char *b = strstr(req, "\r\n\r\n");
        snprintf(s->last_body, sizeof(s->last_body), "%s", b ? b + 4 : "");
        s->saw_token = strcasestr(req, "\r\nx-amz-security-token: TOKEN\r\n") != NULL;
        const struct script_answer *a = &s->answers[s->served];
        if (strcmp(a->status, "hangup") != 0) {
            char out[1024];
            int w =
                snprintf(out, sizeof(out),
                         "HTTP/1.1 %s\r\nContent-Type: application/x-amz-json-1.1\r\nConnection: close\r\n"
                         "Content-Length: %zu\r\n\r\n%s",
                         a->status, strlen(a->body), a->body);
            (void)!write(c, out, (size_t)w);
        }
        close(c);
    }
    return NULL;
}

static void script_start(struct script_server *s, const struct script_answer *answers)
{
    memset(s, 0, sizeof(*s));
    s->answers = answers;
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->fd, 8), 0);
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&a, &al), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->thread, NULL, script_run, s), 0);
}

static void script_stop(struct script_server *s)
{
    shutdown(s->fd, SHUT_RDWR);
    pthread_join(s->thread, NULL);
    close(s->fd);
}

static coffer_err script_call(struct script_server *s, int max_attempts, const char *token,
                              struct awsclient_answer *ans)
{
    struct awsclient_credentials cr = {0};
    awsclient *c = NULL;
    char ep[64];
    creds_fixture(&cr, token);
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", s->port);
    struct awsclient_config cfg = {.service = "kms",
                                   .region = "us-east-1",
                                   .endpoint = ep,
                                   .max_attempts = max_attempts,
                                   .max_response = 64,
                                   .credentials = &cr};
    assert_int_equal(awsclient_new(&cfg, &c), COFFER_OK);
    awsclient_credentials_clean(&cr); /* the client keeps its own copy */
    awsclient_answer_init(ans);
    coffer_err rc =
        awsclient_json_call(c, "TrentService.Encrypt", coffer_cursor_from_str("{\"KeyId\":\"k\"}"), ans);
    awsclient_free(c);
    return rc;
}

static void test_retries(void **state)
{
    (void)state;
    struct script_server s;
    struct awsclient_answer ans;

    /* 503, a dropped connection and throttling are retried; the fourth attempt succeeds. */
    static const struct script_answer recover[] = {
        {"503 Service Unavailable", ""},
        {"hangup", ""},
        {"400 Bad Request", "{\"__type\":\"ThrottlingException\"}"},
        {"200 OK", "{\"ok\":true}"},
        {NULL, NULL}};
    script_start(&s, recover);
    assert_int_equal(script_call(&s, 4, "TOKEN", &ans), COFFER_OK);
    script_stop(&s);
    assert_int_equal(s.served, 4);
    assert_int_equal(ans.status, 200);
    assert_int_equal(ans.body.len, 11);
    assert_memory_equal(ans.body.data, "{\"ok\":true}", 11);
    assert_string_equal(ans.error_type, "");
    assert_string_equal(s.last_target, "TrentService.Encrypt");
    assert_true(s.saw_token);
    awsclient_answer_clean(&ans);

    /* The bound holds: with two attempts, the second 5xx is the answer. */
    static const struct script_answer down[] = {
        {"503 Service Unavailable", ""},
        {"500 Internal Server Error", "{\"__type\":\"KMSInternalException\",\"message\":\"disk on fire\"}"},
        {"200 OK", "{}"},
        {NULL, NULL}};
    script_start(&s, down);
    assert_int_equal(script_call(&s, 2, NULL, &ans), COFFER_OK);
    script_stop(&s);
    assert_int_equal(s.served, 2);
    assert_int_equal(ans.status, 500);
    assert_string_equal(ans.error_type, "KMSInternalException");
    assert_string_equal(ans.error_message, "disk on fire");
    assert_false(s.saw_token);
    awsclient_answer_clean(&ans);

    /* A client error is answered at once, never retried. */
    static const struct script_answer denied[] = {
        {"400 Bad Request", "{\"__type\":\"com.amazonaws.kms#NotFoundException\"}"},
        {"200 OK", "{}"},
        {NULL, NULL}};
    script_start(&s, denied);
    assert_int_equal(script_call(&s, 4, NULL, &ans), COFFER_OK);
    script_stop(&s);
    assert_int_equal(s.served, 1);
    assert_int_equal(ans.status, 400);
    assert_string_equal(ans.error_type, "NotFoundException");
    awsclient_answer_clean(&ans);

    /* An answer over max_response is refused, not retried. */
    static const struct script_answer huge[] = {
        {"200 OK", "0123456789012345678901234567890123456789012345678901234567890123456789"},
        {"200 OK", "{}"},
        {NULL, NULL}};
    script_start(&s, huge);
    assert_int_equal(script_call(&s, 4, NULL, &ans), COFFER_ERR_LIMIT);
    script_stop(&s);
    assert_int_equal(s.served, 1);
    awsclient_answer_clean(&ans);
}

static void test_query(void **state)
{
    (void)state;
    struct script_server s;
    struct awsclient_credentials cr = {0};
    struct awsclient_answer ans;
    awsclient *c = NULL;
    char ep[64], t[AWSCLIENT_ERROR_TYPE_LEN], m[AWSCLIENT_ERROR_MESSAGE_LEN];

    static const struct script_answer answers[] = {
        {"503 Service Unavailable", "<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceUnavailable</"
                                    "Code></Error></ErrorResponse>"},
        {"404 Not Found", "<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error>"
                          "<Type>Sender</Type><Code>NoSuchEntity</Code><Message>The user with name a b "
                          "cannot be found.</Message></Error><RequestId>r</RequestId></ErrorResponse>"},
        {NULL, NULL}};
    script_start(&s, answers);
    creds_fixture(&cr, NULL);
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", s.port);
    struct awsclient_config cfg = {
        .service = "iam", .region = "us-east-1", .endpoint = ep, .credentials = &cr};
    assert_int_equal(awsclient_new(&cfg, &c), COFFER_OK);
    awsclient_answer_init(&ans);
    const struct awsclient_param params[] = {{"UserName", "a b"}, {"Path", "/x/&=é"}};
    assert_int_equal(awsclient_query_call(c, "GetUser", "2010-05-08", params, 2, &ans), COFFER_OK);
    script_stop(&s);
    assert_int_equal(s.served, 2); /* the 503 was retried */
    assert_int_equal(ans.status, 404);
    assert_string_equal(ans.error_type, "NoSuchEntity");
    assert_string_equal(ans.error_message, "The user with name a b cannot be found.");
    assert_string_equal(s.last_target, ""); /* the Query protocol names the action in the body */
    assert_string_equal(s.last_ctype, AWSCLIENT_QUERY_CONTENT_TYPE);
    assert_string_equal(s.last_body,
                        "Action=GetUser&Version=2010-05-08&UserName=a%20b&Path=%2Fx%2F%26%3D%C3%A9");
    awsclient_answer_clean(&ans);
    awsclient_free(c);
    awsclient_credentials_clean(&cr);

    awsclient_query_error(coffer_cursor_from_str("<Error><Code>Throttling</Code></Error>"), t, m);
    assert_string_equal(t, "Throttling");
    assert_string_equal(m, "");
    awsclient_query_error(coffer_cursor_from_str("<Error><Code>NoEnd"), t, m);
    assert_string_equal(t, "UnknownError");
    awsclient_query_error(coffer_cursor_from_str("<Code>Outside</Code>"), t, m); /* only inside <Error> */
    assert_string_equal(t, "UnknownError");
    awsclient_query_error(coffer_cursor_from_str(""), t, m);
    assert_string_equal(t, "UnknownError");
}

static void test_unreachable(void **state)
{
    (void)state;
    struct awsclient_credentials cr = {0};
    struct awsclient_answer ans;
    awsclient *c = NULL;
    creds_fixture(&cr, NULL);
    /* Port 1 on loopback: refused on every attempt, reported as unavailable. */
    struct awsclient_config cfg = {
        .service = "kms", .region = "us-east-1", .endpoint = "http://127.0.0.1:1", .credentials = &cr};
    assert_int_equal(awsclient_new(&cfg, &c), COFFER_OK);
    awsclient_answer_init(&ans);
    assert_int_equal(awsclient_json_call(c, "TrentService.Decrypt", coffer_cursor_from_str("{}"), &ans),
                     COFFER_ERR_UNAVAILABLE);
    assert_non_null(strstr(coffer_last_message(), "TrentService.Decrypt to http://127.0.0.1:1 failed"));
    awsclient_answer_clean(&ans);
    awsclient_free(c);
    awsclient_credentials_clean(&cr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_env_first, per_test),
        cmocka_unit_test_setup(test_profiles, per_test),
        cmocka_unit_test_setup(test_config_file_credentials, per_test),
        cmocka_unit_test_setup(test_missing_files, per_test),
        cmocka_unit_test_setup(test_garbled_files, per_test),
        cmocka_unit_test_setup(test_region, per_test),
        cmocka_unit_test_setup(test_credentials_set, per_test),
        cmocka_unit_test_setup(test_endpoint, per_test),
        cmocka_unit_test_setup(test_sign, per_test),
        cmocka_unit_test_setup(test_json_error, per_test),
        cmocka_unit_test_setup(test_retries, per_test),
        cmocka_unit_test_setup(test_query, per_test),
        cmocka_unit_test_setup(test_unreachable, per_test),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
