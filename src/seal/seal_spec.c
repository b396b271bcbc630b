/*
 * Root key providers from a text spec (the form of cofferd's --seal and `coffer seal migrate
 * --to`), where the secrets that open them come from (passphrase and PIN: a file descriptor, a
 * file, an environment variable, a systemd credential, or the terminal), and the data dir's lock
 * that keeps a migration and a running cofferd apart. See seal_provider.h for the grammar.
 */
#include "seal/seal_provider.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <termios.h>
#include <unistd.h>

#include "common/log.h"
#include "common/secret.h"

#define SPEC_MAX 2048
#define SPEC_SECRET_MAX 4096
#define SPEC_DEFAULT_CREDENTIAL "coffer-passphrase"
#define SPEC_LOCK_FILE "seal.lock"

/* ---------------------------------------------------------------------------------------------
 * Secrets: read whole into secret memory, one trailing newline dropped
 * ------------------------------------------------------------------------------------------- */

static coffer_err read_secret_fd(int fd, const char *what, coffer_buf *out)
{
    uint8_t chunk[512];
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof(chunk));
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            coffer_secure_zero(chunk, sizeof(chunk));
            return coffer_fail(COFFER_ERR_CONFIG, "cannot read the %s: %s", what, strerror(errno));
        }
        if (r == 0) {
            break;
        }
        if (out->len + (size_t)r > SPEC_SECRET_MAX) {
            coffer_secure_zero(chunk, sizeof(chunk));
            return coffer_fail(COFFER_ERR_CONFIG, "the %s is longer than %d bytes", what, SPEC_SECRET_MAX);
        }
        coffer_err rc = coffer_buf_append(out, chunk, (size_t)r);
        coffer_secure_zero(chunk, sizeof(chunk));
        TRY(rc);
    }
    if (out->len > 0 && out->data[out->len - 1] == '\n') {
        out->data[--out->len] = '\0';
        if (out->len > 0 && out->data[out->len - 1] == '\r') {
            out->data[--out->len] = '\0';
        }
    }
    if (out->len == 0) {
        return coffer_fail(COFFER_ERR_CONFIG, "the %s is empty", what);
    }
    return COFFER_OK;
}

static coffer_err read_secret_file(const char *path, const char *what, coffer_buf *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return coffer_fail(COFFER_ERR_CONFIG, "cannot open the %s file %s: %s", what, path, strerror(errno));
    }
    coffer_err rc = read_secret_fd(fd, what, out);
    close(fd);
    return rc;
}

static coffer_err read_secret_env(const char *name, const char *what, coffer_buf *out)
{
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0') {
        return coffer_fail(COFFER_ERR_CONFIG, "the %s variable %s is not set", what, name);
    }
    if (strlen(v) > SPEC_SECRET_MAX) {
        return coffer_fail(COFFER_ERR_CONFIG, "the %s is longer than %d bytes", what, SPEC_SECRET_MAX);
    }
    return coffer_buf_append_str(out, v);
}

coffer_err seal_secret_read(const char *file, const char *env, const char *what, coffer_buf *out)
{
    ENSURE_REF(out);
    if (file != NULL && file[0] != '\0') {
        return read_secret_file(file, what, out);
    }
    if (env != NULL && env[0] != '\0') {
        return read_secret_env(env, what, out);
    }
    return coffer_fail(COFFER_ERR_CONFIG, "no source for the %s", what);
}

/* systemd's LoadCredential=/SetCredential=: a file named NAME in $CREDENTIALS_DIRECTORY. */
static coffer_err credential_path(const char *name, char *path, size_t cap)
{
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    if (dir == NULL || dir[0] == '\0') {
        return coffer_fail(COFFER_ERR_CONFIG, "credential %s: $CREDENTIALS_DIRECTORY is not set", name);
    }
    if (strchr(name, '/') != NULL || name[0] == '.' || name[0] == '\0') {
        return coffer_fail(COFFER_ERR_CONFIG, "credential name '%s' is not a plain name", name);
    }
    if ((size_t)snprintf(path, cap, "%s/%s", dir, name) >= cap) {
        return coffer_fail(COFFER_ERR_CONFIG, "credential path too long");
    }
    return COFFER_OK;
}

static coffer_err prompt_tty(const char *prompt, coffer_buf *out)
{
    coffer_err rc = COFFER_OK;
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        return coffer_fail(COFFER_ERR_CONFIG, "no passphrase: give passphrase:fd=N, file=PATH, env=NAME or "
                                              "credential=NAME, or run on a terminal");
    }
    struct termios old, quiet;
    bool restore = tcgetattr(fd, &old) == 0;
    if (restore) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
        quiet.c_lflag |= ICANON;
        tcsetattr(fd, TCSAFLUSH, &quiet);
    }
    if (write(fd, prompt, strlen(prompt)) < 0) {
        FAIL_OUT(COFFER_ERR_IO, "cannot write to the terminal");
    }
    for (;;) {
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0 || ch == '\n') {
            break;
        }
        if (out->len >= SPEC_SECRET_MAX) {
            FAIL_OUT(COFFER_ERR_CONFIG, "the passphrase is longer than %d bytes", SPEC_SECRET_MAX);
        }
        TRY_OUT(coffer_buf_append_u8(out, (uint8_t)ch));
        ch = 0;
    }
    if (out->len == 0) {
        FAIL_OUT(COFFER_ERR_CONFIG, "the passphrase is empty");
    }
out:
    if (restore) {
        tcsetattr(fd, TCSAFLUSH, &old);
    }
    (void)!write(fd, "\n", 1);
    close(fd);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * The spec: NAME[:k=v,k=v...]
 * ------------------------------------------------------------------------------------------- */

struct spec_opt {
    const char *name;
    const char *value;
};

#define SPEC_MAX_OPTS 12

/* Splits `buf` (modified in place) into the provider name and its options. */
static coffer_err spec_split(char *buf, const char **name, struct spec_opt *opts, size_t *n_opts)
{
    *n_opts = 0;
    char *colon = strchr(buf, ':');
    *name = buf;
    if (colon == NULL) {
        return COFFER_OK;
    }
    *colon = '\0';
    char *save = NULL;
    for (char *part = strtok_r(colon + 1, ",", &save); part != NULL; part = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(part, '=');
        if (eq == NULL || eq == part) {
            return coffer_fail(COFFER_ERR_CONFIG, "--seal %s: '%s' is not NAME=VALUE", *name, part);
        }
        if (*n_opts == SPEC_MAX_OPTS) {
            return coffer_fail(COFFER_ERR_CONFIG, "--seal %s: too many settings", *name);
        }
        *eq = '\0';
        opts[(*n_opts)++] = (struct spec_opt){part, eq + 1};
    }
    return COFFER_OK;
}

/* Every option given must be one the provider knows: a typo must not silently fall back. */
static coffer_err spec_check(const char *provider, const struct spec_opt *opts, size_t n,
                             const char *const *known)
{
    for (size_t i = 0; i < n; i++) {
        bool ok = false;
        for (size_t k = 0; known[k] != NULL; k++) {
            ok = ok || strcmp(opts[i].name, known[k]) == 0;
        }
        if (!ok) {
            return coffer_fail(COFFER_ERR_CONFIG, "--seal %s: unknown setting '%s'", provider, opts[i].name);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(opts[i].name, opts[j].name) == 0) {
                return coffer_fail(COFFER_ERR_CONFIG, "--seal %s: '%s' given twice", provider, opts[i].name);
            }
        }
    }
    return COFFER_OK;
}

static const char *spec_get(const struct spec_opt *opts, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(opts[i].name, name) == 0) {
            return opts[i].value;
        }
    }
    return NULL;
}

static coffer_err spec_number(const char *provider, const char *name, const char *v, unsigned long long max,
                              unsigned long long *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || v[0] == '-' || x > max) {
        return coffer_fail(COFFER_ERR_CONFIG, "--seal %s: %s must be a number up to %llu (got '%s')",
                           provider, name, max, v);
    }
    *out = x;
    return COFFER_OK;
}

static coffer_err open_file(const struct spec_opt *opts, size_t n, const char *data_dir, bool create,
                            struct seal_provider **out)
{
    static const char *const known[] = {"path", NULL};
    char path[PATH_MAX];
    TRY(spec_check("file", opts, n, known));
    const char *given = spec_get(opts, n, "path");
    if (given != NULL) {
        snprintf(path, sizeof(path), "%s", given);
    } else if ((size_t)snprintf(path, sizeof(path), "%s/root.key", data_dir) >= sizeof(path)) {
        return coffer_fail(COFFER_ERR_CONFIG, "data dir path too long");
    }
    return seal_provider_file_open(path, create, out);
}

/* A new passphrase typed on a terminal is asked twice: a typo would lock the data dir for good. */
static coffer_err prompt_new(coffer_buf *out)
{
    coffer_err rc = COFFER_OK;
    coffer_buf again = COFFER_SECRET_BUF_INIT;
    TRY_OUT(prompt_tty("new root key passphrase: ", out));
    TRY_OUT(prompt_tty("new root key passphrase (again): ", &again));
    if (again.len != out->len || memcmp(again.data, out->data, out->len) != 0) {
        FAIL_OUT(COFFER_ERR_CONFIG, "the two passphrases differ");
    }
out:
    coffer_buf_free(&again);
    return rc;
}

static coffer_err open_passphrase(const struct spec_opt *opts, size_t n, bool create,
                                  struct seal_provider **out)
{
    static const char *const known[] = {"fd", "file", "env", "credential", "ops", "mem", NULL};
    coffer_err rc = COFFER_OK;
    coffer_buf pass = COFFER_SECRET_BUF_INIT;
    unsigned long long ops = 0, mem_mib = 0, fd = 0;
    char path[PATH_MAX];
    TRY(spec_check("passphrase", opts, n, known));
    const char *v_fd = spec_get(opts, n, "fd"), *v_file = spec_get(opts, n, "file"),
               *v_env = spec_get(opts, n, "env"), *v_cred = spec_get(opts, n, "credential");
    if ((v_fd != NULL) + (v_file != NULL) + (v_env != NULL) + (v_cred != NULL) > 1) {
        return coffer_fail(COFFER_ERR_CONFIG, "--seal passphrase: give one of fd=, file=, env=, credential=");
    }
    if (spec_get(opts, n, "ops") != NULL) {
        TRY(spec_number("passphrase", "ops", spec_get(opts, n, "ops"), 64, &ops));
    }
    if (spec_get(opts, n, "mem") != NULL) {
        TRY(spec_number("passphrase", "mem", spec_get(opts, n, "mem"), 4096, &mem_mib));
    }
    if (v_fd != NULL) {
        TRY_OUT(spec_number("passphrase", "fd", v_fd, INT_MAX, &fd));
        TRY_OUT(read_secret_fd((int)fd, "passphrase", &pass));
    } else if (v_file != NULL) {
        TRY_OUT(read_secret_file(v_file, "passphrase", &pass));
    } else if (v_env != NULL) {
        TRY_OUT(read_secret_env(v_env, "passphrase", &pass));
    } else if (v_cred != NULL) {
        TRY_OUT(credential_path(v_cred, path, sizeof(path)));
        TRY_OUT(read_secret_file(path, "passphrase credential", &pass));
    } else if (credential_path(SPEC_DEFAULT_CREDENTIAL, path, sizeof(path)) == COFFER_OK &&
               access(path, R_OK) == 0) {
        TRY_OUT(read_secret_file(path, "passphrase credential", &pass));
    } else {
        TRY_OUT(create ? prompt_new(&pass) : prompt_tty("root key passphrase: ", &pass));
    }
    rc = seal_provider_passphrase_new(coffer_buf_cursor(&pass), ops, (size_t)mem_mib << 20, out);
out:
    coffer_buf_free(&pass);
    return rc;
}

static coffer_err open_pkcs11(const struct spec_opt *opts, size_t n, struct seal_provider **out)
{
    static const char *const known[] = {"module",  "token", "slot",   "pin-file",
                                        "pin-env", "key",   "create", NULL};
    coffer_err rc = COFFER_OK;
    coffer_buf pin = COFFER_SECRET_BUF_INIT;
    unsigned long long slot = 0;
    TRY(spec_check("pkcs11", opts, n, known));
    struct seal_pkcs11_config cfg = {
        .module = spec_get(opts, n, "module"),
        .token = spec_get(opts, n, "token"),
        .key_label = spec_get(opts, n, "key"),
    };
    const char *v_slot = spec_get(opts, n, "slot"), *v_pin_file = spec_get(opts, n, "pin-file"),
               *v_pin_env = spec_get(opts, n, "pin-env"), *v_create = spec_get(opts, n, "create");
    if (cfg.module == NULL || cfg.key_label == NULL) {
        return coffer_fail(COFFER_ERR_CONFIG, "--seal pkcs11: module=PATH and key=LABEL are required");
    }
    if ((cfg.token != NULL) == (v_slot != NULL)) {
        return coffer_fail(COFFER_ERR_CONFIG, "--seal pkcs11: give one of token=LABEL or slot=N");
    }
    if ((v_pin_file != NULL) == (v_pin_env != NULL)) {
        return coffer_fail(COFFER_ERR_CONFIG, "--seal pkcs11: give one of pin-file=PATH or pin-env=NAME");
    }
    if (v_slot != NULL) {
        TRY(spec_number("pkcs11", "slot", v_slot, LONG_MAX, &slot));
        cfg.slot = (long)slot;
    }
    if (v_create != NULL) {
        if (strcmp(v_create, "yes") != 0 && strcmp(v_create, "no") != 0) {
            return coffer_fail(COFFER_ERR_CONFIG, "--seal pkcs11: create must be yes or no");
        }
        cfg.create_key = strcmp(v_create, "yes") == 0;
    }
    if (v_pin_file != NULL) {
        TRY_OUT(read_secret_file(v_pin_file, "PIN", &pin));
    } else {
        TRY_OUT(read_secret_env(v_pin_env, "PIN", &pin));
    }
    TRY_OUT(coffer_buf_nul_terminate(&pin));
    cfg.pin = (const char *)pin.data;
    rc = seal_provider_pkcs11_open(&cfg, out);
out:
    coffer_buf_free(&pin);
    return rc;
}

coffer_err seal_provider_from_spec(const char *spec, const char *data_dir, bool create,
                                   struct seal_provider **out)
{
    ENSURE_REF(spec);
    ENSURE_REF(data_dir);
    ENSURE_REF(out);
    char buf[SPEC_MAX];
    struct spec_opt opts[SPEC_MAX_OPTS];
    size_t n = 0;
    const char *name = NULL;
    if (strlen(spec) >= sizeof(buf)) {
        return coffer_fail(COFFER_ERR_CONFIG, "--seal: the spec is too long");
    }
    memcpy(buf, spec, strlen(spec) + 1);
    TRY(spec_split(buf, &name, opts, &n));
    if (strcmp(name, "file") == 0) {
        return open_file(opts, n, data_dir, create, out);
    }
    if (strcmp(name, "passphrase") == 0) {
        return open_passphrase(opts, n, create, out);
    }
    if (strcmp(name, "pkcs11") == 0) {
        return open_pkcs11(opts, n, out);
    }
    return coffer_fail(COFFER_ERR_CONFIG, "--seal: unknown provider '%s' (file, passphrase or pkcs11)", name);
}

coffer_err seal_spec_check(store *st, const char *spec, bool *fresh)
{
    ENSURE_REF(st);
    ENSURE_REF(spec);
    ENSURE_REF(fresh);
    coffer_err rc = COFFER_OK;
    coffer_buf rec = COFFER_BUF_INIT;
    char stored[32];
    size_t n = strcspn(spec, ":");
    rc = seal_provider_record(st, &rec);
    *fresh = rc == COFFER_ERR_NOT_FOUND;
    if (*fresh) {
        rc = COFFER_OK;
        goto out;
    }
    TRY_OUT(rc);
    if (seal_param_get(coffer_buf_cursor(&rec), "provider", stored, sizeof(stored)) != COFFER_OK) {
        FAIL_OUT(COFFER_ERR_CONFIG, "the data dir's seal provider record is malformed");
    }
    if (strlen(stored) != n || strncmp(stored, spec, n) != 0) {
        FAIL_OUT(
            COFFER_ERR_CONFIG,
            "the data dir is sealed by the %s provider, not %.*s: start with --seal %s (or migrate it with "
            "`coffer seal migrate`)",
            stored, (int)n, spec, stored);
    }
out:
    coffer_buf_free(&rec);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * The data dir's lock
 * ------------------------------------------------------------------------------------------- */

coffer_err seal_dir_lock(const char *data_dir, bool exclusive, int *fd_out)
{
    ENSURE_REF(data_dir);
    ENSURE_REF(fd_out);
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", data_dir, SPEC_LOCK_FILE) >= sizeof(path)) {
        return coffer_fail(COFFER_ERR_CONFIG, "data dir path too long");
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        return coffer_fail(COFFER_ERR_IO, "cannot open the lock file %s: %s", path, strerror(errno));
    }
    if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK) {
            return coffer_fail(COFFER_ERR_UNAVAILABLE,
                               exclusive ? "a cofferd is running on %s: stop it first"
                                         : "`coffer seal migrate` is re-wrapping the keyring of %s",
                               data_dir);
        }
        return coffer_fail(COFFER_ERR_IO, "cannot lock %s: %s", path, strerror(e));
    }
    *fd_out = fd;
    return COFFER_OK;
}
