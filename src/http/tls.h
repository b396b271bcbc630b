/*
 * TLS for the listener. On first start cofferd makes a private CA and a server certificate
 * for localhost, 127.0.0.1 and ::1 under DIR/tls/ (ca.pem is what clients trust); the server
 * certificate is renewed when it is within 30 days of expiry. Operators may bring their own
 * certificate and key instead. Contexts allow TLS 1.2 and 1.3 only.
 */
#ifndef COFFER_HTTP_TLS_H
#define COFFER_HTTP_TLS_H

#include <openssl/ssl.h>

#include "common/err.h"

#define TLS_CA_FILE "ca.pem"
#define TLS_CA_KEY_FILE "ca-key.pem"
#define TLS_CERT_FILE "server.pem"
#define TLS_KEY_FILE "server-key.pem"

/*
 * Makes sure `tls_dir` holds a CA and a valid server certificate (creating or renewing them).
 * Private keys are written with mode 0600.
 */
coffer_err tls_ensure_certificates(const char *tls_dir) __attribute__((warn_unused_result));

/* A server context for the given PEM certificate chain and key. */
coffer_err tls_server_ctx_new(const char *cert_path, const char *key_path, SSL_CTX **out)
    __attribute__((warn_unused_result));

#endif
