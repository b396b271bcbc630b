/*
 * The key-file root key provider: 32 random bytes in a file only the service user can read.
 * It wraps exactly one thing, the barrier keyring (seal.c), with AES-256-GCM. The key is held
 * in locked secret memory and wiped when the provider is destroyed.
 *
 *   wrapped = version(1) || iv(12) || AES-256-GCM(plaintext) || tag(16),  AAD = version || aad
 */
#include "seal/seal_provider.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/secret.h"
#include "crypto/crypto.h"

struct file_provider {
    struct seal_provider base;
    uint8_t *key; /* SEAL_ROOT_KEY_LEN bytes of secret memory */
};

/* ---------------------------------------------------------------------------------------------
 * Wrap / unwrap
 * ------------------------------------------------------------------------------------------- */

static coffer_err wrap_aad(coffer_cursor aad, coffer_buf *out)
{
    TRY(coffer_buf_append_u8(out, SEAL_FILE_WRAP_VERSION));
    return coffer_buf_append_cur(out, aad);
}

static coffer_err fp_wrap(struct seal_provider *base, coffer_cursor aad, coffer_cursor plaintext,
                          coffer_buf *out)
{
    struct file_provider *p = (struct file_provider *)base;
    coffer_err rc = COFFER_OK;
    coffer_buf full_aad = COFFER_BUF_INIT;
    uint8_t iv[CRYPTO_AES_GCM_IV_LEN];
    size_t start = out->len;
    TRY_OUT(crypto_random(iv, sizeof(iv)));
    TRY_OUT(wrap_aad(aad, &full_aad));
    TRY_OUT(coffer_buf_append_u8(out, SEAL_FILE_WRAP_VERSION));
    TRY_OUT(coffer_buf_append(out, iv, sizeof(iv)));
    TRY_OUT(crypto_aes_gcm_seal(coffer_cursor_from(p->key, SEAL_ROOT_KEY_LEN), iv,
                                coffer_buf_cursor(&full_aad), plaintext, out));
out:
    if (rc != COFFER_OK) {
        out->len = start;
    }
    coffer_buf_free(&full_aad);
    return rc;
}

static coffer_err fp_unwrap(struct seal_provider *base, coffer_cursor aad, coffer_cursor wrapped,
                            coffer_buf *out)
{
    struct file_provider *p = (struct file_provider *)base;
    coffer_err rc = COFFER_OK;
    coffer_buf full_aad = COFFER_BUF_INIT;
    coffer_cursor c = wrapped, iv, body;
    uint8_t version = 0;
    if (cur_read_u8(&c, &version) != COFFER_OK || version != SEAL_FILE_WRAP_VERSION ||
        cur_read_bytes(&c, CRYPTO_AES_GCM_IV_LEN, &iv) != COFFER_OK || c.len < CRYPTO_AES_GCM_TAG_LEN) {
        FAIL_OUT(COFFER_ERR_CRYPTO, "the root key cannot unwrap the keyring");
    }
    body = c;
    TRY_OUT(wrap_aad(aad, &full_aad));
    if (crypto_aes_gcm_open(coffer_cursor_from(p->key, SEAL_ROOT_KEY_LEN), iv.ptr,
                            coffer_buf_cursor(&full_aad), body, out) != COFFER_OK) {
        FAIL_OUT(COFFER_ERR_CRYPTO, "the root key cannot unwrap the keyring");
    }
out:
    coffer_buf_free(&full_aad);
    return rc;
}

static void fp_destroy(struct seal_provider *base)
{
    struct file_provider *p = (struct file_provider *)base;
    coffer_secret_free(p->key, SEAL_ROOT_KEY_LEN);
    free(p);
}

static const struct seal_provider_vt file_vt = {
    .vt_size = sizeof(struct seal_provider_vt),
    .name = "file",
    .wrap = fp_wrap,
    .unwrap = fp_unwrap,
    .destroy = fp_destroy,
};

static coffer_err provider_new(struct file_provider **out)
{
    struct file_provider *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    p->key = coffer_secret_alloc(SEAL_ROOT_KEY_LEN);
    if (p->key == NULL) {
        free(p);
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    p->base.vt = &file_vt;
    *out = p;
    return COFFER_OK;
}

coffer_err seal_provider_raw_new(coffer_cursor key, struct seal_provider **out)
{
    ENSURE_REF(out);
    if (key.len != SEAL_ROOT_KEY_LEN || key.ptr == NULL) {
        return coffer_fail(COFFER_ERR_USAGE, "a root key is %d bytes", SEAL_ROOT_KEY_LEN);
    }
    struct file_provider *p = NULL;
    TRY(provider_new(&p));
    memcpy(p->key, key.ptr, SEAL_ROOT_KEY_LEN);
    *out = &p->base;
    return COFFER_OK;
}

/* ---------------------------------------------------------------------------------------------
 * The key file. Messages name no path (they may travel further than the log); the log does.
 * ------------------------------------------------------------------------------------------- */

static coffer_err write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return coffer_fail(COFFER_ERR_IO, "cannot write the root key file");
        }
        p += w;
        n -= (size_t)w;
    }
    return COFFER_OK;
}

/* fsync the directory so the new file's name survives a crash too; a key whose name may vanish is
 * not created. */
static coffer_err sync_parent_dir(const char *path)
{
    coffer_err rc = COFFER_OK;
    char *copy = strdup(path);
    if (copy == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        log_error("seal: cannot sync the directory of root key file %s: %s", path, strerror(errno));
        rc = coffer_fail(COFFER_ERR_IO, "cannot sync the root key file's directory");
    }
    if (dfd >= 0) {
        close(dfd);
    }
    free(copy);
    return rc;
}

/* Creates the file atomically; COFFER_ERR_ALREADY_EXISTS when it is already there. */
static coffer_err keyfile_create(const char *path)
{
    coffer_err rc = COFFER_OK;
    uint8_t *key = NULL;
    /* O_EXCL: never overwrite a root key, and never follow a planted symlink. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        if (errno == EEXIST) {
            return COFFER_ERR_ALREADY_EXISTS;
        }
        log_error("seal: cannot create root key file %s: %s", path, strerror(errno));
        return coffer_fail(COFFER_ERR_IO, "cannot create the root key file");
    }
    key = coffer_secret_alloc(SEAL_ROOT_KEY_LEN);
    if (key == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(crypto_random(key, SEAL_ROOT_KEY_LEN));
    TRY_OUT(write_all(fd, key, SEAL_ROOT_KEY_LEN));
    if (fsync(fd) != 0) {
        FAIL_OUT(COFFER_ERR_IO, "cannot sync the root key file");
    }
    TRY_OUT(sync_parent_dir(path));
    log_info("seal: created root key file %s", path);
out:
    coffer_secret_free(key, SEAL_ROOT_KEY_LEN);
    close(fd);
    if (rc != COFFER_OK) {
        unlink(path);
    }
    return rc;
}

static coffer_err keyfile_load(const char *path, uint8_t *key)
{
    coffer_err rc = COFFER_OK;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        log_error("seal: cannot open root key file %s: %s", path, strerror(errno));
        return coffer_fail(errno == ENOENT ? COFFER_ERR_CONFIG : COFFER_ERR_IO,
                           errno == ENOENT ? "the root key file does not exist"
                                           : "cannot open the root key file");
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        FAIL_OUT(COFFER_ERR_IO, "cannot stat the root key file");
    }
    if (!S_ISREG(sb.st_mode)) {
        log_error("seal: root key file %s is not a regular file", path);
        FAIL_OUT(COFFER_ERR_CONFIG, "the root key file is not a regular file");
    }
    /* Refuse rather than warn: a key readable by others is a key already leaked. */
    if ((sb.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        log_error("seal: root key file %s has mode %03o; it must not be accessible by group or others "
                  "(chmod 600)",
                  path, (unsigned)(sb.st_mode & 0777));
        FAIL_OUT(COFFER_ERR_CONFIG,
                 "the root key file is accessible by group or others (mode %03o); chmod 600 it",
                 (unsigned)(sb.st_mode & 0777));
    }
    if (sb.st_size != SEAL_ROOT_KEY_LEN) {
        log_error("seal: root key file %s holds %lld bytes, not %d", path, (long long)sb.st_size,
                  SEAL_ROOT_KEY_LEN);
        FAIL_OUT(COFFER_ERR_CONFIG, "the root key file must hold exactly %d bytes (it holds %lld)",
                 SEAL_ROOT_KEY_LEN, (long long)sb.st_size);
    }
    size_t got = 0;
    while (got < SEAL_ROOT_KEY_LEN) {
        ssize_t r = read(fd, key + got, SEAL_ROOT_KEY_LEN - got);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            FAIL_OUT(COFFER_ERR_IO, "cannot read the root key file");
        }
        got += (size_t)r;
    }
out:
    close(fd);
    if (rc != COFFER_OK) {
        coffer_secure_zero(key, SEAL_ROOT_KEY_LEN);
    }
    return rc;
}

coffer_err seal_provider_file_open(const char *path, bool create, struct seal_provider **out)
{
    ENSURE_REF(path);
    ENSURE_REF(out);
    if (create) {
        coffer_err rc = keyfile_create(path);
        if (rc != COFFER_OK && rc != COFFER_ERR_ALREADY_EXISTS) {
            return rc;
        }
    }
    struct file_provider *p = NULL;
    TRY(provider_new(&p));
    coffer_err rc = keyfile_load(path, p->key);
    if (rc != COFFER_OK) {
        fp_destroy(&p->base);
        return rc;
    }
    *out = &p->base;
    return COFFER_OK;
}
