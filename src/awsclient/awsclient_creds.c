/*
 * The credentials chain and region of the AWS SDKs, over the shared credentials and config files
 * (the INI files `aws configure` writes). The files are read whole into a secret buffer, parsed in
 * place and wiped; values are copied out only for the one profile asked for.
 *
 * Section names differ between the two files, as in botocore: the credentials file names a
 * profile plainly ([ci]), the config file with a prefix ([profile ci]), except the default
 * profile, which is [default] there too ([profile default] is accepted as well).
 */
#include "awsclient/awsclient.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/secret.h"

#define AWSCLIENT_PROFILE_MAX 256 /* longer profile names are refused */

static const char *aws_env(const char *name)
{
    const char *v = getenv(name);
    return v && v[0] ? v : NULL;
}

/* ================================================================================================
 * INI reading
 * ============================================================================================= */

/* One wanted key of one section; the value lands in `out` (secret buffer, NUL-terminated). */
struct ini_want {
    const char *key;
    coffer_buf *out;
    bool found;
};

/* Whole file into a secret buffer. A missing file is not an error: *exists says so. */
static coffer_err ini_slurp(const char *path, coffer_buf *out, bool *exists)
{
    coffer_err rc = COFFER_OK;
    uint8_t chunk[4096];
    FILE *f = fopen(path, "rb");

    *exists = f != NULL;
    if (!f) {
        /* Unreadable and absent are the same to the chain: look further, as the SDKs do. */
        return COFFER_OK;
    }
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (out->len + n > AWSCLIENT_MAX_FILE) {
            FAIL_OUT(COFFER_ERR_CONFIG, "%s is larger than %u bytes", path, AWSCLIENT_MAX_FILE);
        }
        TRY_OUT(coffer_buf_append(out, chunk, n));
    }
    if (ferror(f)) {
        FAIL_OUT(COFFER_ERR_CONFIG, "cannot read %s", path);
    }
out:
    coffer_secure_zero(chunk, sizeof(chunk));
    fclose(f);
    return rc;
}

static coffer_cursor ini_trim(coffer_cursor c)
{
    while (c.len && (c.ptr[0] == ' ' || c.ptr[0] == '\t')) {
        c.ptr++;
        c.len--;
    }
    while (c.len && (c.ptr[c.len - 1] == ' ' || c.ptr[c.len - 1] == '\t' || c.ptr[c.len - 1] == '\r')) {
        c.len--;
    }
    return c;
}

/*
 * Finds `section` in the INI text and copies the values of the wanted keys. Leading blanks are
 * ignored (so indented keys still count); '#' and ';' start comment lines. A garbled section
 * header ("[ci" without ']') closes the current section, so nothing after it is taken for the
 * wrong profile. The first value of a key wins. Lines holding NUL bytes are skipped.
 */
static coffer_err ini_scan(coffer_cursor text, const char *section, struct ini_want *want, size_t n_want)
{
    bool in_section = false;
    while (text.len) {
        const uint8_t *nl = memchr(text.ptr, '\n', text.len);
        size_t line_len = nl ? (size_t)(nl - text.ptr) : text.len;
        coffer_cursor line = ini_trim(coffer_cursor_from(text.ptr, line_len));
        text = coffer_cursor_from(text.ptr + line_len + (nl ? 1 : 0), text.len - line_len - (nl ? 1 : 0));

        if (line.len == 0 || line.ptr[0] == '#' || line.ptr[0] == ';' || memchr(line.ptr, '\0', line.len)) {
            continue;
        }
        if (line.ptr[0] == '[') {
            const uint8_t *end = memchr(line.ptr, ']', line.len);
            in_section =
                end && coffer_cursor_eq_str(
                           ini_trim(coffer_cursor_from(line.ptr + 1, (size_t)(end - line.ptr) - 1)), section);
            continue;
        }
        const uint8_t *eq = memchr(line.ptr, '=', line.len);
        if (!in_section || !eq) {
            continue;
        }
        coffer_cursor key = ini_trim(coffer_cursor_from(line.ptr, (size_t)(eq - line.ptr)));
        coffer_cursor val = ini_trim(coffer_cursor_from(eq + 1, line.len - (size_t)(eq - line.ptr) - 1));
        for (size_t i = 0; i < n_want; i++) {
            if (want[i].found || !coffer_cursor_eq_str(key, want[i].key)) {
                continue;
            }
            want[i].found = true;
            coffer_buf_reset(want[i].out);
            TRY(coffer_buf_append_cur(want[i].out, val));
            TRY(coffer_buf_nul_terminate(want[i].out));
        }
    }
    return COFFER_OK;
}

/* Reads the wanted keys of `section` from the file at `path` ("" or NULL: no file). */
static coffer_err ini_get(const char *path, const char *section, struct ini_want *want, size_t n_want)
{
    coffer_err rc = COFFER_OK;
    coffer_buf text = COFFER_SECRET_BUF_INIT;
    bool exists = false;

    if (!path || !path[0]) {
        return COFFER_OK;
    }
    TRY_OUT(ini_slurp(path, &text, &exists));
    if (exists) {
        TRY_OUT(ini_scan(coffer_buf_cursor(&text), section, want, n_want));
    }
out:
    coffer_buf_free(&text);
    return rc;
}

/* ================================================================================================
 * Where the files and the profile are
 * ============================================================================================= */

/* The explicit path, else $env_name, else $HOME/rel; NULL when none applies (then no file). */
static coffer_err file_path(const char *explicit_path, bool skip_env, const char *env_name, const char *rel,
                            char **out)
{
    *out = NULL;
    const char *p = explicit_path ? explicit_path : skip_env ? NULL : aws_env(env_name);
    if (p) {
        if (p[0] && !(*out = strdup(p))) {
            return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        }
        return COFFER_OK;
    }
    const char *home = aws_env("HOME");
    if (!home || explicit_path) {
        return COFFER_OK;
    }
    if (asprintf(out, "%s/%s", home, rel) < 0) {
        *out = NULL;
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    return COFFER_OK;
}

static coffer_err profile_name(const struct awsclient_source *src, const char **out)
{
    const char *p = src->profile ? src->profile : src->skip_env ? NULL : aws_env("AWS_PROFILE");
    *out = p ? p : "default";
    if (!(*out)[0] || strlen(*out) >= AWSCLIENT_PROFILE_MAX || strpbrk(*out, "[]\r\n")) {
        return coffer_fail(COFFER_ERR_CONFIG, "invalid profile name");
    }
    return COFFER_OK;
}

/*
 * Reads the wanted keys of the profile's section of the config file: [profile NAME], or for
 * the default profile [default] then [profile default].
 */
static coffer_err config_get(const struct awsclient_source *src, const char *profile, struct ini_want *want,
                             size_t n_want)
{
    coffer_err rc = COFFER_OK;
    char *path = NULL, section[AWSCLIENT_PROFILE_MAX + 16];
    bool is_default = strcmp(profile, "default") == 0;

    TRY_OUT(file_path(src->config_file, src->skip_env, "AWS_CONFIG_FILE", ".aws/config", &path));
    snprintf(section, sizeof(section), "%s%s", is_default ? "" : "profile ", profile);
    TRY_OUT(ini_get(path, section, want, n_want));
    if (is_default) {
        TRY_OUT(ini_get(path, "profile default", want, n_want));
    }
out:
    free(path);
    return rc;
}

/* ================================================================================================
 * Credentials
 * ============================================================================================= */

void awsclient_credentials_clean(struct awsclient_credentials *c)
{
    if (!c) {
        return;
    }
    free(c->access_key_id);
    c->access_key_id = NULL;
    coffer_buf_free(&c->secret_key);
    coffer_buf_free(&c->session_token);
}

coffer_err awsclient_credentials_set(struct awsclient_credentials *out, const char *access_key_id,
                                     const char *secret_key, const char *session_token)
{
    coffer_err rc = COFFER_OK;
    struct awsclient_credentials c = {NULL, COFFER_SECRET_BUF_INIT, COFFER_SECRET_BUF_INIT};

    if (!access_key_id || !access_key_id[0] || !secret_key || !secret_key[0]) {
        return coffer_fail(COFFER_ERR_CONFIG, "an access key id and a secret access key are both required");
    }
    if (!(c.access_key_id = strdup(access_key_id))) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(coffer_buf_append_str(&c.secret_key, secret_key));
    TRY_OUT(coffer_buf_nul_terminate(&c.secret_key));
    if (session_token && session_token[0]) {
        TRY_OUT(coffer_buf_append_str(&c.session_token, session_token));
        TRY_OUT(coffer_buf_nul_terminate(&c.session_token));
    }
    *out = c;
    return COFFER_OK;
out:
    awsclient_credentials_clean(&c);
    return rc;
}

/*
 * Turns the three values of one source into credentials. Both keys empty: not this source
 * (*done stays false). One without the other: an error, as botocore's PartialCredentialsError.
 */
static coffer_err creds_take(coffer_buf *akid, coffer_buf *secret, coffer_buf *token, const char *where,
                             struct awsclient_credentials *out, bool *done)
{
    *done = false;
    if (akid->len == 0 && secret->len == 0) {
        return COFFER_OK;
    }
    if (akid->len == 0 || secret->len == 0) {
        return coffer_fail(COFFER_ERR_CONFIG, "partial credentials in %s: %s is missing", where,
                           akid->len == 0 ? "aws_access_key_id" : "aws_secret_access_key");
    }
    TRY(awsclient_credentials_set(out, (const char *)akid->data, (const char *)secret->data,
                                  token->len ? (const char *)token->data : NULL));
    *done = true;
    return COFFER_OK;
}

coffer_err awsclient_credentials_load(const struct awsclient_source *src, struct awsclient_credentials *out)
{
    coffer_err rc = COFFER_OK;
    coffer_buf akid = COFFER_SECRET_BUF_INIT, secret = COFFER_SECRET_BUF_INIT, token = COFFER_SECRET_BUF_INIT;
    char *path = NULL;
    const char *profile;
    bool done = false;

    TRY_OUT(profile_name(src, &profile));
    /* 1. The environment, only when it names both keys (a lone key id falls through to the files). */
    const char *env_akid = src->skip_env ? NULL : aws_env("AWS_ACCESS_KEY_ID");
    const char *env_secret = src->skip_env ? NULL : aws_env("AWS_SECRET_ACCESS_KEY");
    if (env_akid && env_secret) {
        rc = awsclient_credentials_set(out, env_akid, env_secret, aws_env("AWS_SESSION_TOKEN"));
        goto out;
    }

    struct ini_want want[] = {
        {"aws_access_key_id", &akid, false},
        {"aws_secret_access_key", &secret, false},
        {"aws_session_token", &token, false},
    };
    /* 2. The shared credentials file, section [profile]. */
    TRY_OUT(file_path(src->credentials_file, src->skip_env, "AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials",
                      &path));
    TRY_OUT(ini_get(path, profile, want, 3));
    TRY_OUT(creds_take(&akid, &secret, &token, "the credentials file", out, &done));
    if (done) {
        goto out;
    }
    /* 3. The config file, section [profile NAME]. */
    for (size_t i = 0; i < 3; i++) {
        want[i].found = false;
        coffer_buf_reset(want[i].out);
    }
    TRY_OUT(config_get(src, profile, want, 3));
    TRY_OUT(creds_take(&akid, &secret, &token, "the config file", out, &done));
    if (!done) {
        FAIL_OUT(COFFER_ERR_CONFIG, "no credentials (environment, or profile \"%s\" in the shared files)",
                 profile);
    }
out:
    free(path);
    coffer_buf_free(&akid);
    coffer_buf_free(&secret);
    coffer_buf_free(&token);
    return rc;
}

/* ================================================================================================
 * Region
 * ============================================================================================= */

bool awsclient_region_valid(const char *region)
{
    if (!region || !region[0]) {
        return false;
    }
    for (const char *p = region; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-')) {
            return false;
        }
    }
    return true;
}

coffer_err awsclient_region_load(const struct awsclient_source *src, char **out)
{
    coffer_err rc = COFFER_OK;
    coffer_buf val = COFFER_BUF_INIT;
    const char *profile, *env = NULL;
    char *r = NULL;

    *out = NULL;
    TRY_OUT(profile_name(src, &profile));
    if (!src->skip_env) {
        env = aws_env("AWS_REGION") ? aws_env("AWS_REGION") : aws_env("AWS_DEFAULT_REGION");
    }
    if (env) {
        r = strdup(env);
    } else {
        struct ini_want want[] = {{"region", &val, false}};
        TRY_OUT(config_get(src, profile, want, 1));
        if (val.len == 0) {
            goto out; /* no region anywhere: the caller decides */
        }
        r = strdup((const char *)val.data);
    }
    if (!r) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    if (!awsclient_region_valid(r)) {
        FAIL_OUT(COFFER_ERR_CONFIG, "invalid region");
    }
    *out = r;
    r = NULL;
out:
    free(r);
    coffer_buf_free(&val);
    return rc;
}
