/*
 * Test driver for the AWS KMS keyring: encrypts or decrypts a file with a KMS keyring built
 * from argv, so tests/integration/test_esdk_kms.py can run it against a live cofferd.
 *
 *   esdk_kms_driver encrypt|decrypt [--key ID]... [--discovery] [--partition P] [--account A]...
 *                   [--endpoint URL] [--region R] [--ec k=v]... [--suite 0xNNNN] --in F --out F
 *   esdk_kms_driver unwrap-other-ec [keyring options] --ec k=v ... --in MESSAGE
 *       asks the keyring alone to unwrap the message's EDKs under a context that differs from
 *       the header's (the SDK would refuse earlier), to show KMS binds the data key to it.
 *
 * Encrypt prints "edk <provider id> <provider info>" per EDK. Exit 0 on success; on failure
 * prints "error <STATUS_NAME>: <message>" on stderr and exits 2 (1 for bad usage).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coffer/esdk.h"
#include "esdk/esdk_internal.h"

#define DRIVER_MAX_LIST 16

struct driver_args {
    const char *mode;
    const char *keys[DRIVER_MAX_LIST];
    size_t n_keys;
    const char *accounts[DRIVER_MAX_LIST];
    size_t n_accounts;
    struct coffer_kms_keyring_options opts;
    coffer_ec *ec;
    uint16_t suite;
    const char *in, *out;
};

static int fail(int status)
{
    fprintf(stderr, "error %s: %s\n", coffer_status_name(status), coffer_status_message(status));
    return 2;
}

static int read_file(const char *path, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *p = malloc(cap);
    size_t r;
    while (p && (r = fread(p + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            uint8_t *q = realloc(p, cap *= 2);
            if (!q) {
                free(p);
                p = NULL;
            }
            p = q;
        }
    }
    fclose(f);
    *out = p;
    *len = n;
    return p ? 0 : -1;
}

static int write_file(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        return -1;
    }
    size_t w = fwrite(p, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static int parse_args(int argc, char **argv, struct driver_args *a)
{
    if (argc < 2) {
        return -1;
    }
    a->mode = argv[1];
    a->ec = coffer_ec_new();
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i];
        if (strcmp(o, "--discovery") == 0) {
            a->opts.discovery = true;
            continue;
        }
        if (i + 1 >= argc) {
            return -1;
        }
        const char *v = argv[++i];
        if (strcmp(o, "--key") == 0 && a->n_keys < DRIVER_MAX_LIST) {
            a->keys[a->n_keys++] = v;
        } else if (strcmp(o, "--account") == 0 && a->n_accounts < DRIVER_MAX_LIST) {
            a->accounts[a->n_accounts++] = v;
        } else if (strcmp(o, "--partition") == 0) {
            a->opts.discovery_partition = v;
        } else if (strcmp(o, "--endpoint") == 0) {
            a->opts.endpoint = v;
        } else if (strcmp(o, "--region") == 0) {
            a->opts.region = v;
        } else if (strcmp(o, "--suite") == 0) {
            a->suite = (uint16_t)strtoul(v, NULL, 0);
        } else if (strcmp(o, "--in") == 0) {
            a->in = v;
        } else if (strcmp(o, "--out") == 0) {
            a->out = v;
        } else if (strcmp(o, "--ec") == 0 && strchr(v, '=')) {
            char *k = strdup(v);
            char *eq = strchr(k, '=');
            *eq = '\0';
            int rc = coffer_ec_set_str(a->ec, k, eq + 1);
            free(k);
            if (rc) {
                return -1;
            }
        } else {
            return -1;
        }
    }
    a->opts.key_ids = a->n_keys ? a->keys : NULL;
    a->opts.n_key_ids = a->n_keys;
    a->opts.discovery_accounts = a->n_accounts ? a->accounts : NULL;
    a->opts.n_discovery_accounts = a->n_accounts;
    return a->in ? 0 : -1;
}

static int do_encrypt(struct driver_args *a, coffer_cmm *cmm, const uint8_t *in, size_t len)
{
    uint8_t *out = NULL;
    size_t out_len = 0;
    coffer_encryptor *e = coffer_encryptor_new(cmm);
    int rc = e ? 0 : COFFER_STATUS_NOMEM;
    if (!rc) {
        rc = coffer_encryptor_set_ec(e, a->ec);
    }
    if (!rc && a->suite) {
        rc = coffer_encryptor_set_suite(e, a->suite);
    }
    if (!rc) {
        rc = coffer_encryptor_run(e, in, len, &out, &out_len);
    }
    if (!rc) {
        const coffer_header *h = coffer_encryptor_header(e);
        for (size_t i = 0; i < coffer_header_edk_count(h); i++) {
            coffer_edk edk;
            if (coffer_header_edk(h, i, &edk) == 0) {
                printf("edk %.*s %.*s\n", (int)edk.provider_id_len, (const char *)edk.provider_id,
                       (int)edk.provider_info_len, (const char *)edk.provider_info);
            }
        }
        if (write_file(a->out, out, out_len) != 0) {
            fprintf(stderr, "cannot write %s\n", a->out);
            rc = COFFER_STATUS_IO;
        }
    }
    coffer_bytes_free(out, out_len);
    coffer_encryptor_free(e);
    return rc;
}

static int do_decrypt(struct driver_args *a, coffer_cmm *cmm, const uint8_t *in, size_t len)
{
    uint8_t *out = NULL;
    size_t out_len = 0;
    int rc = coffer_decrypt(cmm, coffer_ec_count(a->ec) ? a->ec : NULL, in, len, &out, &out_len);
    if (!rc && write_file(a->out, out, out_len) != 0) {
        fprintf(stderr, "cannot write %s\n", a->out);
        rc = COFFER_STATUS_IO;
    }
    coffer_bytes_free(out, out_len);
    return rc;
}

/* Unwraps the message's EDKs with the keyring alone, under a.ec instead of the header's context. */
static int do_unwrap_other_ec(struct driver_args *a, coffer_keyring *kr, const uint8_t *in, size_t len)
{
    coffer_header *h = NULL;
    size_t used;
    int rc = coffer_header_parse(in, len, &h, &used);
    if (rc) {
        return rc;
    }
    size_t n = coffer_header_edk_count(h);
    coffer_edk edks[DRIVER_MAX_LIST];
    for (size_t i = 0; i < n && i < DRIVER_MAX_LIST; i++) {
        rc = rc ? rc : coffer_header_edk(h, i, &edks[i]);
    }
    /* The header's context (with the signing key pair for signed suites) with --ec pairs overriding. */
    coffer_ec *ec = coffer_ec_clone(coffer_header_ec(h));
    for (size_t i = 0; ec && !rc && i < coffer_ec_count(a->ec); i++) {
        const uint8_t *k, *v;
        size_t kl, vl;
        rc = coffer_ec_get_at(a->ec, i, &k, &kl, &v, &vl);
        rc = rc ? rc : coffer_ec_set(ec, k, kl, v, vl);
    }
    coffer_dec_materials *m = ec ? esdk_dec_materials_new(esdk_suite_find(coffer_header_suite(h)), ec) : NULL;
    coffer_ec_free(ec);
    if (!rc && !m) {
        rc = COFFER_STATUS_NOMEM;
    }
    if (!rc) {
        rc = coffer_keyring_on_decrypt(kr, m, edks, n < DRIVER_MAX_LIST ? n : DRIVER_MAX_LIST);
    }
    if (!rc && !coffer_dec_materials_has_data_key(m)) {
        rc = esdk_status(coffer_fail(COFFER_ERR_CANNOT_DECRYPT, "no EDK matched"));
    }
    coffer_dec_materials_free(m);
    coffer_header_free(h);
    return rc;
}

int main(int argc, char **argv)
{
    struct driver_args a;
    memset(&a, 0, sizeof(a));
    if (parse_args(argc, argv, &a) != 0) {
        fprintf(stderr, "usage: see the comment at the top of esdk_kms_driver.c\n");
        coffer_ec_free(a.ec);
        return 1;
    }
    uint8_t *in = NULL;
    size_t len = 0;
    int rc = 0;
    coffer_keyring *kr = NULL;
    coffer_cmm *cmm = NULL;
    if (read_file(a.in, &in, &len) != 0) {
        fprintf(stderr, "cannot read %s\n", a.in);
        rc = COFFER_STATUS_IO;
        goto out;
    }
    kr = coffer_keyring_kms_new(&a.opts);
    if (!kr) {
        rc = coffer_last_status() ? coffer_last_status() : COFFER_STATUS_USAGE;
        goto out;
    }
    cmm = coffer_cmm_default_new(kr);
    if (strcmp(a.mode, "encrypt") == 0 && a.out) {
        rc = do_encrypt(&a, cmm, in, len);
    } else if (strcmp(a.mode, "decrypt") == 0 && a.out) {
        rc = do_decrypt(&a, cmm, in, len);
    } else if (strcmp(a.mode, "unwrap-other-ec") == 0) {
        rc = do_unwrap_other_ec(&a, kr, in, len);
    } else {
        fprintf(stderr, "unknown mode %s\n", a.mode);
        rc = COFFER_STATUS_USAGE;
    }
out:
    coffer_cmm_release(cmm);
    coffer_keyring_release(kr);
    coffer_ec_free(a.ec);
    free(in);
    return rc ? fail(rc) : 0;
}
