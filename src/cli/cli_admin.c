/*
 * `coffer admin`: operator commands against a running cofferd, signed with the operator
 * credentials the server wrote at first start.
 *
 *   coffer admin create-account NAME [--account-id ID] [--data-dir DIR] [--endpoint URL]
 *   coffer admin list-accounts [--data-dir DIR] [--endpoint URL]
 *
 * The client speaks the server's CofferAdmin JSON service (X-Amz-Target "CofferAdmin.<op>",
 * SigV4 signing name "coffer-admin") through awsclient/: credentials from DIR/credentials
 * (profile "coffer"), region from DIR/config, the CA from DIR/tls/ca.pem, and the endpoint from
 * --endpoint or else DIR/endpoint (written by cofferd once it listens). Only DIR counts: the
 * AWS_* variables a shell may hold for other tools are ignored.
 */
#include "cli/cli.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "awsclient/awsclient.h"
#include "common/buf.h"
#include "common/secret.h"

#define ADMIN_DEFAULT_DATA_DIR "coffer-data"
#define ADMIN_PROFILE "coffer"
#define ADMIN_SERVICE "coffer-admin"
#define ADMIN_TARGET_PREFIX "CofferAdmin."
#define ADMIN_DEFAULT_REGION "us-east-1"
#define ADMIN_MAX_RESPONSE (1024 * 1024)
#define ADMIN_LINE_MAX 1024

struct admin_opts {
    const char *data_dir;
    const char *endpoint; /* NULL: read DIR/endpoint */
};

static void admin_usage(FILE *f)
{
    fprintf(f,
            "usage: coffer admin create-account NAME [--account-id ID] [--data-dir DIR] [--endpoint URL]\n"
            "       coffer admin list-accounts [--data-dir DIR] [--endpoint URL]\n\n"
            "Talks to a running cofferd with the operator credentials of DIR (default ./%s):\n"
            "DIR/credentials (profile %s), DIR/config (region), DIR/tls/ca.pem and DIR/endpoint.\n"
            "create-account prints {\"AccountId\",\"AccessKeyId\",\"SecretAccessKey\"} for the new\n"
            "account's administrator (its root); --account-id gives it the id the same account has in\n"
            "a peer region's deployment, into which multi-Region keys and secrets replicate.\n",
            ADMIN_DEFAULT_DATA_DIR, ADMIN_PROFILE);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') {
        s++;
    }
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t')) {
        s[--n] = '\0';
    }
    return s;
}

static int read_first_line(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    char *ok = fgets(out, (int)cap, f);
    fclose(f);
    if (ok == NULL) {
        return -1;
    }
    char *t = trim(out);
    memmove(out, t, strlen(t) + 1);
    return out[0] ? 0 : -1;
}

/* The client for the operator of DIR; NULL after printing why not. */
static awsclient *admin_client_new(const struct admin_opts *o)
{
    char path[ADMIN_LINE_MAX], endpoint[ADMIN_LINE_MAX], creds_path[ADMIN_LINE_MAX],
        config_path[ADMIN_LINE_MAX];
    char ca[ADMIN_LINE_MAX];
    struct awsclient_credentials creds = {NULL, COFFER_SECRET_BUF_INIT, COFFER_SECRET_BUF_INIT};
    char *region = NULL;
    awsclient *c = NULL;

    if (o->endpoint != NULL) {
        snprintf(endpoint, sizeof(endpoint), "%s", o->endpoint);
    } else {
        snprintf(path, sizeof(path), "%s/endpoint", o->data_dir);
        if (read_first_line(path, endpoint, sizeof(endpoint)) != 0) {
            fprintf(stderr,
                    "coffer admin: no endpoint: %s is missing (is cofferd running?); use --endpoint URL\n",
                    path);
            return NULL;
        }
    }
    snprintf(creds_path, sizeof(creds_path), "%s/credentials", o->data_dir);
    snprintf(config_path, sizeof(config_path), "%s/config", o->data_dir);
    struct awsclient_source src = {.profile = ADMIN_PROFILE,
                                   .credentials_file = creds_path,
                                   .config_file = config_path,
                                   .skip_env = true};
    if (awsclient_credentials_load(&src, &creds) != COFFER_OK) {
        fprintf(stderr, "coffer admin: cannot read the operator credentials (profile %s) from %s: %s\n",
                ADMIN_PROFILE, creds_path, coffer_last_message());
        goto out;
    }
    if (awsclient_region_load(&src, &region) != COFFER_OK) {
        fprintf(stderr, "coffer admin: %s: %s\n", config_path, coffer_last_message());
        goto out;
    }
    snprintf(ca, sizeof(ca), "%s/tls/ca.pem", o->data_dir);
    struct awsclient_config cfg = {
        .service = ADMIN_SERVICE,
        .region = region ? region : ADMIN_DEFAULT_REGION,
        .endpoint = endpoint,
        /* no ca.pem: the system trust store, e.g. for an operator-supplied certificate */
        .ca_bundle = access(ca, R_OK) == 0 ? ca : NULL,
        .skip_env = true,
        .user_agent = "coffer-admin",
        .max_response = ADMIN_MAX_RESPONSE,
        .credentials = &creds,
    };
    if (awsclient_new(&cfg, &c) != COFFER_OK) {
        fprintf(stderr, "coffer admin: %s (endpoint '%s')\n", coffer_last_message(), endpoint);
    }
out:
    free(region);
    awsclient_credentials_clean(&creds);
    return c;
}

/* One signed call; on HTTP 200 appends the response body to `out` (secret buffer) and returns 0. */
static int admin_call(awsclient *c, const char *op, const char *body, coffer_buf *out)
{
    int ret = -1;
    struct awsclient_answer ans;
    char target[128];

    awsclient_answer_init(&ans);
    snprintf(target, sizeof(target), ADMIN_TARGET_PREFIX "%s", op);
    if (awsclient_json_call(c, target, coffer_cursor_from_str(body), &ans) != COFFER_OK) {
        fprintf(stderr, "coffer admin: %s\n", coffer_last_message());
        goto out;
    }
    if (ans.status != 200) {
        fprintf(stderr, "coffer admin: %s failed (HTTP %ld): %s%s%s\n", op, ans.status, ans.error_type,
                ans.error_message[0] ? ": " : "", ans.error_message);
        goto out;
    }
    if (coffer_buf_append_cur(out, coffer_buf_cursor(&ans.body)) != COFFER_OK ||
        coffer_buf_nul_terminate(out) != COFFER_OK) {
        fprintf(stderr, "coffer admin: %s: %s\n", op, coffer_last_message());
        goto out;
    }
    ret = 0;
out:
    awsclient_answer_clean(&ans);
    return ret;
}

/* Prints the JSON response indented; only the members named (or all when names is NULL). */
static int print_response(const coffer_buf *resp, const char *const *names)
{
    json_t *j = json_loadb((const char *)resp->data, resp->len, 0, NULL);
    if (!json_is_object(j)) {
        fprintf(stderr, "coffer admin: the server answered with malformed JSON\n");
        json_decref(j);
        return -1;
    }
    json_t *out = j;
    if (names != NULL) {
        out = json_object();
        for (size_t i = 0; names[i]; i++) {
            json_t *v = json_object_get(j, names[i]);
            const char *why = v == NULL ? "the response lacks" : "out of memory while copying";
            /* Never print part of the answer: a missing member must not look like an empty one. */
            if (v == NULL || json_object_set(out, names[i], v) != 0) {
                fprintf(stderr, "coffer admin: %s %s\n", why, names[i]);
                json_decref(out);
                json_decref(j);
                return -1;
            }
        }
    }
    char *text = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    int ret = text != NULL && printf("%s\n", text) > 0 && fflush(stdout) == 0 ? 0 : -1;
    if (ret != 0) {
        fprintf(stderr, "coffer admin: cannot write the response%s\n",
                text == NULL ? " (out of memory)" : "");
    }
    if (text != NULL) {
        coffer_secure_zero(text, strlen(text));
        free(text);
    }
    if (out != j) {
        json_decref(out);
    }
    json_t *sv = json_object_get(j, "SecretAccessKey");
    if (json_is_string(sv)) {
        coffer_secure_zero((char *)json_string_value(sv), json_string_length(sv));
    }
    json_decref(j);
    return ret;
}

int cli_admin_main(int argc, char **argv)
{
    struct admin_opts o = {.data_dir = ADMIN_DEFAULT_DATA_DIR, .endpoint = NULL};
    const char *cmd = NULL, *name = NULL, *account_id = NULL;
    if (argc < 2 || cli_is_help(argv[1])) {
        admin_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--data-dir") == 0 && i + 1 < argc) {
            o.data_dir = argv[++i];
        } else if (strcmp(argv[i], "--endpoint") == 0 && i + 1 < argc) {
            o.endpoint = argv[++i];
        } else if (strcmp(argv[i], "--account-id") == 0 && i + 1 < argc) {
            account_id = argv[++i];
        } else if (cli_is_help(argv[i])) {
            admin_usage(stdout);
            return CLI_EXIT_OK;
        } else if (argv[i][0] != '-' && name == NULL) {
            name = argv[i];
        } else {
            fprintf(stderr, "coffer admin: unexpected argument '%s'\n", argv[i]);
            admin_usage(stderr);
            return CLI_EXIT_USAGE;
        }
    }
    bool create = strcmp(cmd, "create-account") == 0, list = strcmp(cmd, "list-accounts") == 0;
    if ((!create && !list) || (create && name == NULL) || (list && (name != NULL || account_id != NULL))) {
        admin_usage(stderr);
        return CLI_EXIT_USAGE;
    }

    int ret = CLI_EXIT_FAILED;
    coffer_buf resp = COFFER_SECRET_BUF_INIT;
    char *body = NULL;
    awsclient *c = admin_client_new(&o);
    if (c == NULL) {
        goto out;
    }
    json_t *req =
        create ? json_pack("{s:s,s:s*}", "AccountName", name, "AccountId", account_id) : json_object();
    body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (body == NULL) {
        fprintf(stderr, "coffer admin: the account name must be valid UTF-8\n");
        goto out;
    }
    static const char *const created[] = {"AccountId", "AccessKeyId", "SecretAccessKey", NULL};
    if (admin_call(c, create ? "CreateAccount" : "ListAccounts", body, &resp) == 0 &&
        print_response(&resp, create ? created : NULL) == 0) {
        ret = CLI_EXIT_OK;
    }
out:
    free(body);
    coffer_buf_free(&resp);
    awsclient_free(c);
    return ret;
}
