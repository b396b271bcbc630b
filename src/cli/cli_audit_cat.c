/*
 * `coffer audit cat DIR FILE... [--endpoint URL] [--profile NAME] [--region R] [--ca PEM]`:
 * prints the events of trail files of DIR (a data dir or its audit/ directory), one JSON line
 * each. A plaintext file is printed as it is; an encrypted one (audit.h, "Encrypted trail")
 * has its data key decrypted by KMS Decrypt over HTTPS with the caller's own credentials (the
 * SDK chain: environment, AWS_PROFILE or --profile), under the encryption context naming the
 * file, so reading the trail takes kms:Decrypt on the trail's key. Endpoint and CA as for the
 * AWS CLI: --endpoint, else $AWS_ENDPOINT_URL_KMS / $AWS_ENDPOINT_URL, and $AWS_CA_BUNDLE.
 */
#include "cli/cli.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "audit/audit.h"
#include "awsclient/awsclient.h"
#include "common/buf.h"
#include "common/codec.h"
#include "common/secret.h"

#define CAT_MAX_FILE (256u << 20)
#define CAT_DEFAULT_REGION "us-east-1"

struct cat_args {
    const char *dir;
    const char *endpoint, *profile, *region, *ca;
    char **files;
    int n_files;
};

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int read_file(const char *path, coffer_buf *out)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return -1;
    }
    uint8_t chunk[65536];
    size_t n;
    int ret = 0;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (out->len + n > CAT_MAX_FILE || coffer_buf_append(out, chunk, n) != COFFER_OK) {
            ret = -1;
            break;
        }
    }
    if (ferror(f)) {
        ret = -1;
    }
    fclose(f);
    return ret;
}

static awsclient *cat_client(const struct cat_args *a)
{
    struct awsclient_credentials creds = {NULL, COFFER_SECRET_BUF_INIT, COFFER_SECRET_BUF_INIT};
    struct awsclient_source src = {.profile = a->profile};
    char *region = NULL;
    awsclient *c = NULL;
    if (awsclient_credentials_load(&src, &creds) != COFFER_OK) {
        fprintf(stderr, "coffer audit cat: no credentials: %s\n", coffer_last_message());
        goto out;
    }
    if (a->region == NULL && awsclient_region_load(&src, &region) != COFFER_OK) {
        fprintf(stderr, "coffer audit cat: %s\n", coffer_last_message());
        goto out;
    }
    struct awsclient_config cfg = {
        .service = "kms",
        .region = a->region != NULL ? a->region
                  : region != NULL  ? region
                                    : CAT_DEFAULT_REGION,
        .endpoint = a->endpoint,
        .env_service = "KMS",
        .ca_bundle = a->ca,
        .user_agent = "coffer-audit-cat",
        .credentials = &creds,
    };
    if (awsclient_new(&cfg, &c) != COFFER_OK) {
        fprintf(stderr, "coffer audit cat: %s\n", coffer_last_message());
    }
out:
    free(region);
    awsclient_credentials_clean(&creds);
    return c;
}

/* KMS Decrypt of the file's wrapped key; the key (secret) into `key`. 0 or -1 after a message. */
static int unwrap_key(awsclient *c, const char *name, const char *wrapped_b64, const char *arn,
                      coffer_buf *key)
{
    int ret = -1;
    struct awsclient_answer ans;
    awsclient_answer_init(&ans);
    json_t *req = json_pack("{s:s, s:s, s:{s:s}}", "CiphertextBlob", wrapped_b64, "KeyId", arn,
                            "EncryptionContext", AUDIT_ENC_CONTEXT_KEY, name);
    char *body = req != NULL ? json_dumps(req, JSON_COMPACT) : NULL;
    json_t *resp = NULL;
    if (body == NULL) {
        fprintf(stderr, "coffer audit cat: out of memory\n");
        goto out;
    }
    if (awsclient_json_call(c, "TrentService.Decrypt", coffer_cursor_from_str(body), &ans) != COFFER_OK) {
        fprintf(stderr, "coffer audit cat: %s\n", coffer_last_message());
        goto out;
    }
    if (ans.status != 200) {
        fprintf(stderr, "coffer audit cat: %s: cannot decrypt its data key (HTTP %ld): %s%s%s\n", name,
                ans.status, ans.error_type, ans.error_message[0] ? ": " : "", ans.error_message);
        if (strcmp(ans.error_type, "AccessDeniedException") == 0) {
            fprintf(stderr, "coffer audit cat: reading an encrypted trail takes kms:Decrypt on %s\n", arn);
        }
        goto out;
    }
    resp = json_loadb((const char *)ans.body.data, ans.body.len, 0, NULL);
    const char *pt = json_string_value(json_object_get(resp, "Plaintext"));
    if (pt == NULL || coffer_b64_decode(coffer_cursor_from_str(pt), key) != COFFER_OK ||
        key->len != AUDIT_ENC_KEY_LEN) {
        fprintf(stderr, "coffer audit cat: %s: KMS answered without a 256-bit data key\n", name);
        goto out;
    }
    ret = 0;
out:
    if (resp != NULL) {
        json_t *p = json_object_get(resp, "Plaintext");
        if (json_is_string(p)) {
            coffer_secure_zero((char *)json_string_value(p), json_string_length(p));
        }
    }
    json_decref(resp);
    free(body);
    json_decref(req);
    awsclient_answer_clean(&ans);
    return ret;
}

/* Prints one file's events. *client is made on the first encrypted file. */
static int cat_file(const struct cat_args *a, const char *trail, const char *name, awsclient **client)
{
    int ret = CLI_EXIT_FAILED;
    char path[PATH_MAX];
    coffer_buf data = COFFER_BUF_INIT, key = COFFER_SECRET_BUF_INIT, plain = COFFER_SECRET_BUF_INIT;
    char *wrapped = NULL, *arn = NULL;
    if (strchr(name, '/') != NULL) {
        name = strrchr(name, '/') + 1; /* a path: the name is what the key is bound to */
    }
    int w = snprintf(path, sizeof(path), "%s/%s", trail, name);
    if (w < 0 || (size_t)w >= sizeof(path) || read_file(path, &data) != 0) {
        fprintf(stderr, "coffer audit cat: cannot read %s\n", path);
        goto out;
    }
    const uint8_t *p = data.data, *end = data.data + data.len;
    const uint8_t *nl = p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
    bool enc = false;
    if (nl != NULL && audit_enc_header(p, (size_t)(nl - p), &enc, &wrapped, &arn) != COFFER_OK) {
        fprintf(stderr, "coffer audit cat: %s: %s\n", name, coffer_last_message());
        goto out;
    }
    if (!enc) {
        fwrite(data.data, 1, data.len, stdout);
        ret = CLI_EXIT_OK;
        goto out;
    }
    if (*client == NULL && (*client = cat_client(a)) == NULL) {
        goto out;
    }
    if (unwrap_key(*client, name, wrapped, arn, &key) != 0) {
        goto out;
    }
    unsigned line_no = 1;
    for (p = nl + 1; p < end; p = nl + 1) {
        line_no++;
        nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) {
            break; /* a torn last line: never acknowledged */
        }
        plain.len = 0;
        if (audit_enc_open_line(coffer_buf_cursor(&key), name, p, (size_t)(nl - p), &plain) != COFFER_OK) {
            fprintf(stderr, "coffer audit cat: %s:%u: %s\n", name, line_no, coffer_last_message());
            goto out;
        }
        fwrite(plain.data, 1, plain.len, stdout);
        fputc('\n', stdout);
    }
    ret = CLI_EXIT_OK;
out:
    fflush(stdout);
    free(wrapped);
    free(arn);
    coffer_buf_free(&plain);
    coffer_buf_free(&key);
    coffer_buf_free(&data);
    return ret;
}

static void cat_usage(FILE *f)
{
    fprintf(f,
            "usage: coffer audit cat DIR FILE... [--endpoint URL] [--profile NAME] [--region R] [--ca PEM]\n"
            "prints the events of trail files (trail-000002.jsonl) of DIR's audit trail; an encrypted\n"
            "file's data key is decrypted by KMS with your credentials (kms:Decrypt on the trail's key)\n");
}

int cli_audit_cat(int argc, char **argv)
{
    struct cat_args a = {.dir = NULL};
    char **files = calloc((size_t)argc, sizeof(*files));
    int ret = CLI_EXIT_USAGE;
    if (files == NULL) {
        return CLI_EXIT_FAILED;
    }
    a.files = files;
    for (int i = 2; i < argc; i++) {
        const char **opt = strcmp(argv[i], "--endpoint") == 0  ? &a.endpoint
                           : strcmp(argv[i], "--profile") == 0 ? &a.profile
                           : strcmp(argv[i], "--region") == 0  ? &a.region
                           : strcmp(argv[i], "--ca") == 0      ? &a.ca
                                                               : NULL;
        if (opt != NULL) {
            if (i + 1 >= argc) {
                cat_usage(stderr);
                goto out;
            }
            *opt = argv[++i];
        } else if (argv[i][0] == '-') {
            cat_usage(stderr);
            goto out;
        } else if (a.dir == NULL) {
            a.dir = argv[i];
        } else {
            a.files[a.n_files++] = argv[i];
        }
    }
    if (a.dir == NULL || a.n_files == 0) {
        cat_usage(stderr);
        goto out;
    }
    char trail[PATH_MAX];
    snprintf(trail, sizeof(trail), "%s/" AUDIT_SUBDIR, a.dir);
    if (!is_dir(trail)) {
        snprintf(trail, sizeof(trail), "%s", a.dir);
    }
    awsclient *client = NULL;
    ret = CLI_EXIT_OK;
    for (int i = 0; i < a.n_files && ret == CLI_EXIT_OK; i++) {
        ret = cat_file(&a, trail, a.files[i], &client);
    }
    awsclient_free(client);
out:
    free(files);
    return ret;
}
