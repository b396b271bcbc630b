/*
 * Certificate bootstrap and server TLS context (see tls.h). Keys are ECDSA P-256; the CA is
 * valid for 10 years, server certificates for 1 year with SANs for the loopback names.
 */
#include "http/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "crypto/crypto.h"

#define TLS_CA_DAYS 3650
#define TLS_SERVER_DAYS 365
#define TLS_RENEW_DAYS 30

static EVP_PKEY *tls_new_key(void)
{
    return EVP_EC_gen("P-256");
}

static int tls_add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL) {
        return 0;
    }
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* Builds a certificate for `key` signed by (issuer, issuer_key); self-signed when issuer is NULL. */
static X509 *tls_make_cert(EVP_PKEY *key, const char *cn, int days, X509 *issuer, EVP_PKEY *issuer_key,
                           bool ca)
{
    X509 *cert = X509_new();
    uint8_t serial[16];
    BIGNUM *bn = NULL;
    if (cert == NULL || crypto_random(serial, sizeof(serial)) != COFFER_OK) {
        goto fail;
    }
    serial[0] &= 0x7f;
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) == NULL) {
        goto fail;
    }
    X509_set_version(cert, 2);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), (long)days * 86400);
    X509_set_pubkey(cert, key);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"Coffer", -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509 *signer = issuer ? issuer : cert;
    X509_set_issuer_name(cert, X509_get_subject_name(signer));
    int ok = tls_add_ext(cert, signer, NID_subject_key_identifier, "hash") &&
             tls_add_ext(cert, signer, NID_authority_key_identifier, "keyid:always");
    if (ca) {
        ok = ok && tls_add_ext(cert, signer, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") &&
             tls_add_ext(cert, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        ok = ok && tls_add_ext(cert, signer, NID_basic_constraints, "critical,CA:FALSE") &&
             tls_add_ext(cert, signer, NID_key_usage, "critical,digitalSignature") &&
             tls_add_ext(cert, signer, NID_ext_key_usage, "serverAuth") &&
             tls_add_ext(cert, signer, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1");
    }
    if (!ok || X509_sign(cert, issuer_key ? issuer_key : key, EVP_sha256()) == 0) {
        goto fail;
    }
    BN_free(bn);
    return cert;
fail:
    BN_free(bn);
    X509_free(cert);
    return NULL;
}

static coffer_err tls_write_key(const char *path, EVP_PKEY *key)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return coffer_fail(COFFER_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    }
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        close(fd);
        return coffer_fail(COFFER_ERR_IO, "cannot open %s", path);
    }
    int ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    ok = (fflush(f) == 0 && fsync(fileno(f)) == 0) && ok;
    fclose(f);
    return ok ? COFFER_OK : coffer_fail(COFFER_ERR_IO, "cannot write %s", path);
}

static coffer_err tls_write_cert(const char *path, X509 *cert)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) {
        return coffer_fail(COFFER_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    }
    int ok = PEM_write_X509(f, cert);
    ok = (fflush(f) == 0 && fsync(fileno(f)) == 0) && ok;
    fclose(f);
    if (!ok || rename(tmp, path) != 0) {
        return coffer_fail(COFFER_ERR_IO, "cannot write %s", path);
    }
    return COFFER_OK;
}

static X509 *tls_read_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return NULL;
    }
    X509 *c = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    return c;
}

static EVP_PKEY *tls_read_key(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return NULL;
    }
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

/* True when `cert` expires within `days`. */
static bool tls_expires_within(X509 *cert, int days)
{
    time_t limit = time(NULL) + (time_t)days * 86400;
    return X509_cmp_time(X509_get0_notAfter(cert), &limit) <= 0;
}

coffer_err tls_ensure_certificates(const char *dir)
{
    coffer_err rc = COFFER_OK;
    char ca_path[PATH_MAX], ca_key_path[PATH_MAX], cert_path[PATH_MAX], key_path[PATH_MAX];
    X509 *ca = NULL, *cert = NULL;
    EVP_PKEY *ca_key = NULL, *key = NULL;

    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        return coffer_fail(COFFER_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
    }
    snprintf(ca_path, sizeof(ca_path), "%s/%s", dir, TLS_CA_FILE);
    snprintf(ca_key_path, sizeof(ca_key_path), "%s/%s", dir, TLS_CA_KEY_FILE);
    snprintf(cert_path, sizeof(cert_path), "%s/%s", dir, TLS_CERT_FILE);
    snprintf(key_path, sizeof(key_path), "%s/%s", dir, TLS_KEY_FILE);

    ca = tls_read_cert(ca_path);
    ca_key = tls_read_key(ca_key_path);
    if (ca == NULL || ca_key == NULL || tls_expires_within(ca, TLS_SERVER_DAYS)) {
        X509_free(ca);
        EVP_PKEY_free(ca_key);
        ca_key = tls_new_key();
        ca = ca_key ? tls_make_cert(ca_key, "Coffer local CA", TLS_CA_DAYS, NULL, NULL, true) : NULL;
        if (ca == NULL) {
            FAIL_OUT(COFFER_ERR_CRYPTO, "cannot create the TLS CA");
        }
        TRY_OUT(tls_write_key(ca_key_path, ca_key));
        TRY_OUT(tls_write_cert(ca_path, ca));
        unlink(cert_path); /* a new CA invalidates the old server certificate */
        log_info("created TLS CA %s (clients trust this file)", ca_path);
    }

    cert = tls_read_cert(cert_path);
    key = tls_read_key(key_path);
    if (cert != NULL && key != NULL && !tls_expires_within(cert, TLS_RENEW_DAYS) &&
        X509_check_private_key(cert, key) == 1 && X509_verify(cert, X509_get0_pubkey(ca)) == 1) {
        goto out;
    }
    X509_free(cert);
    EVP_PKEY_free(key);
    key = tls_new_key();
    cert = key ? tls_make_cert(key, "localhost", TLS_SERVER_DAYS, ca, ca_key, false) : NULL;
    if (cert == NULL) {
        FAIL_OUT(COFFER_ERR_CRYPTO, "cannot create the TLS server certificate");
    }
    TRY_OUT(tls_write_key(key_path, key));
    TRY_OUT(tls_write_cert(cert_path, cert));
    log_info("issued TLS server certificate %s (localhost, 127.0.0.1, ::1)", cert_path);
out:
    X509_free(ca);
    X509_free(cert);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(key);
    return rc;
}

coffer_err tls_server_ctx_new(const char *cert_path, const char *key_path, SSL_CTX **out)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        return coffer_fail(COFFER_ERR_CRYPTO, "cannot create TLS context");
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* CLEANSE_PLAINTEXT: OpenSSL wipes decrypted records from its read buffer once delivered;
     * request bodies carry plaintext and must not linger there. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_CLEANSE_PLAINTEXT);
    SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!MD5:!DSS");
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
        SSL_CTX_free(ctx);
        ERR_clear_error();
        return coffer_fail(COFFER_ERR_CONFIG, "cannot load TLS certificate %s", cert_path);
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        SSL_CTX_free(ctx);
        ERR_clear_error();
        return coffer_fail(COFFER_ERR_CONFIG, "cannot load TLS key %s (or it does not match the certificate)",
                           key_path);
    }
    *out = ctx;
    return COFFER_OK;
}
