/*
 * `coffer audit`: checks the audit trail of cofferd data directories, and exports the key
 * that signs their digests.
 *
 *   coffer audit verify DIR [DIR2 ...] [--from T] [--to T] [--public-key FILE]... [--anchor HASH]
 *   coffer audit public-key DIR [--node-id ID] [--seal SPEC] [--store sqlite|postgres://...]
 *   coffer audit cat DIR FILE... [--endpoint URL] [--profile NAME] [--region R] [--ca PEM]
 *
 * verify validates each DIR the way `aws cloudtrail validate-logs` validates a trail: every
 * digest (DIR/audit/digest/) valid, invalid or missing, every trail file valid, modified,
 * deleted or missing, and the hash chain of the events, each of one node. A trail without
 * digests (written before they existed) gets the chain check only. public-key opens the seal
 * of DIR (as cofferd does) and prints the public half of the sealed signing key: a copy kept
 * elsewhere and passed to verify as --public-key catches a key pair replaced in DIR.
 */
#include "cli/cli.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"
#include "common/buf.h"
#include "crypto/crypto.h"
#include "seal/seal.h"
#include "seal/seal_provider.h"
#include "store/store.h"

#define AUDIT_MAX_DIRS 64
#define AUDIT_MAX_KEYS 64

static void audit_usage(FILE *f)
{
    fprintf(
        f,
        "usage: coffer audit verify DIR [DIR2 ...] [--from TIME] [--to TIME] [--public-key FILE]...\n"
        "                           [--anchor HASH]\n"
        "       coffer audit public-key DIR [--node-id ID] [--seal SPEC] [--store URL]\n"
        "       coffer audit cat DIR FILE... [--endpoint URL] [--profile NAME] [--region R] [--ca PEM]\n\n"
        "verify checks the audit trail in DIR/" AUDIT_SUBDIR "/ of each cofferd data directory (a\n"
        "directory holding the trail-*.jsonl files directly is accepted too), one node each:\n"
        "every signed digest is reported valid, invalid or missing, every trail file valid,\n"
        "modified, deleted or missing, and the hash chain of the events is recomputed.\n"
        "--from/--to (ISO 8601 UTC, 2026-12-06T05:00:00Z) limit the report to digests of that\n"
        "time. --public-key (PEM, repeatable) names the keys to trust; without it the key in\n"
        "DIR/" AUDIT_SUBDIR "/" AUDIT_PUBLIC_KEY_FILE " is used, which whoever can write DIR can replace:\n"
        "keep a copy from `coffer audit public-key` elsewhere. --anchor HASH (one DIR): the\n"
        "event with that hash, printed by an earlier run, must still be in the chain.\n"
        "public-key opens DIR's seal (--seal as cofferd's, default the provider DIR records)\n"
        "and prints the public key of node ID's digest signing key (default: the only one, or\n"
        "the one of the node whose digests DIR holds when the store holds several).\n"
        "The key is read from DIR's store as cofferd finds it: --store (sqlite or a postgres://\n"
        "URL), else $COFFER_STORE, else the store line of DIR/cofferd.conf, else DIR/coffer.db.\n"
        "cat prints the events of trail files; an encrypted file's data key is decrypted by KMS\n"
        "with your own credentials, so it takes kms:Decrypt on the trail's key.\n"
        "exit status: 0 valid, 1 a problem found or unreadable, 2 usage error\n");
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* DIR/audit when it exists, else DIR itself. */
static int trail_dir_of(const char *data_dir, char out[PATH_MAX])
{
    int n = snprintf(out, PATH_MAX, "%s/" AUDIT_SUBDIR, data_dir);
    if (n < 0 || n >= PATH_MAX) {
        fprintf(stderr, "coffer audit: path too long\n");
        return -1;
    }
    if (!is_dir(out)) {
        snprintf(out, PATH_MAX, "%s", data_dir);
    }
    if (!is_dir(out)) {
        fprintf(stderr, "coffer audit: %s is not a directory\n", data_dir);
        return -1;
    }
    return 0;
}

static int read_text(const char *path, coffer_buf *out)
{
    FILE *f = fopen(path, "rbe");
    if (f == NULL) {
        return -1;
    }
    char chunk[4096];
    size_t n;
    int rc = 0;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (coffer_buf_append(out, chunk, n) != COFFER_OK || out->len > (1u << 20)) {
            rc = -1;
            break;
        }
    }
    fclose(f);
    return rc;
}

/* Whether the trail has digests (or a key to check them with): then they are validated. */
static bool has_digests(const char *trail)
{
    char p[PATH_MAX];
    int n = snprintf(p, sizeof(p), "%s/" AUDIT_DIGEST_SUBDIR, trail);
    if (n > 0 && n < (int)sizeof(p) && is_dir(p)) {
        return true;
    }
    n = snprintf(p, sizeof(p), "%s/" AUDIT_PUBLIC_KEY_FILE, trail);
    return n > 0 && n < (int)sizeof(p) && access(p, F_OK) == 0;
}

struct verify_args {
    const char *dirs[AUDIT_MAX_DIRS];
    size_t n_dirs;
    const crypto_pkey *keys[AUDIT_MAX_KEYS];
    size_t n_keys;
    int64_t from_ms, to_ms;
    const char *anchor;
};

static int audit_verify(const struct verify_args *a)
{
    int ret = CLI_EXIT_OK;
    char nodes[AUDIT_MAX_DIRS][AUDIT_NODE_ID_MAX + 1];
    for (size_t i = 0; i < a->n_dirs; i++) {
        char trail[PATH_MAX];
        nodes[i][0] = '\0';
        if (trail_dir_of(a->dirs[i], trail) != 0) {
            ret = CLI_EXIT_FAILED;
            continue;
        }
        if (a->n_dirs > 1) {
            printf("== %s\n", a->dirs[i]);
        }
        if (a->anchor != NULL && audit_verify_dir_anchored(trail, a->anchor, stdout, NULL) != COFFER_OK) {
            ret = CLI_EXIT_FAILED;
        }
        if (!has_digests(trail) && a->n_keys == 0) {
            /* A trail from before digests: the chain is all there is to check. */
            if (a->anchor == NULL && audit_verify_dir(trail, stdout) != COFFER_OK) {
                ret = CLI_EXIT_FAILED;
            }
            continue;
        }
        struct audit_digest_result res;
        if (audit_verify_digests(trail, a->keys, a->n_keys, a->from_ms, a->to_ms, stdout, &res) !=
            COFFER_OK) {
            printf("%s: %s\n", a->dirs[i], coffer_last_message());
            ret = CLI_EXIT_FAILED;
        }
        memcpy(nodes[i], res.node_id, sizeof(nodes[i]));
        for (size_t j = 0; j < i && nodes[i][0] != '\0'; j++) {
            if (strcmp(nodes[i], nodes[j]) == 0) {
                printf("%s and %s hold the chain of the same node %s: copies, not two nodes\n", a->dirs[j],
                       a->dirs[i], nodes[i]);
                ret = CLI_EXIT_FAILED;
            }
        }
    }
    printf(ret == CLI_EXIT_OK ? "audit: all valid\n" : "audit: PROBLEMS FOUND\n");
    return ret;
}

static int parse_verify(int argc, char **argv, struct verify_args *a, crypto_pkey **owned)
{
    a->from_ms = 0;
    a->to_ms = INT64_MAX;
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        bool has_value = i + 1 < argc;
        if (strcmp(arg, "--from") == 0 && has_value) {
            a->from_ms = audit_time_parse(argv[++i]);
            if (a->from_ms < 0) {
                fprintf(stderr, "coffer audit verify: --from takes a time like 2026-12-06T05:00:00Z\n");
                return -1;
            }
        } else if (strcmp(arg, "--to") == 0 && has_value) {
            a->to_ms = audit_time_parse(argv[++i]);
            if (a->to_ms < 0) {
                fprintf(stderr, "coffer audit verify: --to takes a time like 2026-12-06T05:00:00Z\n");
                return -1;
            }
        } else if (strcmp(arg, "--anchor") == 0 && has_value) {
            a->anchor = argv[++i];
            if (strlen(a->anchor) != AUDIT_HASH_HEX_LEN) {
                fprintf(stderr, "coffer audit verify: --anchor takes a %d-character hex hash\n",
                        AUDIT_HASH_HEX_LEN);
                return -1;
            }
        } else if (strcmp(arg, "--public-key") == 0 && has_value) {
            coffer_buf pem = COFFER_BUF_INIT;
            const char *path = argv[++i];
            if (a->n_keys == AUDIT_MAX_KEYS || read_text(path, &pem) != 0 ||
                audit_public_key_from_pem((const char *)pem.data, pem.len, &owned[a->n_keys]) != COFFER_OK) {
                fprintf(stderr, "coffer audit verify: %s is not an RSA-2048 public key in PEM\n", path);
                coffer_buf_free(&pem);
                return -1;
            }
            coffer_buf_free(&pem);
            a->keys[a->n_keys] = owned[a->n_keys];
            a->n_keys++;
        } else if (arg[0] == '-' && arg[1] == '-') {
            fprintf(stderr, "coffer audit verify: unexpected argument '%s'\n", arg);
            return -1;
        } else if (a->n_dirs == AUDIT_MAX_DIRS) {
            fprintf(stderr, "coffer audit verify: at most %d directories\n", AUDIT_MAX_DIRS);
            return -1;
        } else {
            a->dirs[a->n_dirs++] = arg;
        }
    }
    if (a->n_dirs == 0 || (a->anchor != NULL && a->n_dirs != 1) || a->from_ms > a->to_ms) {
        fprintf(stderr,
                "coffer audit verify: give one or more DIRs (one with --anchor), --from before --to\n");
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- public-key */

struct key_names {
    char first[AUDIT_NODE_ID_MAX + 1];
    size_t count;
};

static coffer_err count_keys(void *ctx, const char *key, coffer_cursor value)
{
    (void)value;
    struct key_names *k = ctx;
    if (k->count++ == 0) {
        snprintf(k->first, sizeof(k->first), "%s", key + strlen(AUDIT_SIGNING_KEY_RECORD));
    }
    return COFFER_OK;
}

static int audit_public_key(const char *data_dir, const char *store_url, const char *node_id,
                            const char *spec)
{
    int ret = CLI_EXIT_FAILED;
    store *st = NULL, *records = NULL;
    seal *sl = NULL;
    struct seal_provider *prov = NULL;
    crypto_pkey *k = NULL;
    coffer_buf rec = COFFER_BUF_INIT, der = COFFER_SECRET_BUF_INIT, pem = COFFER_BUF_INIT,
               have = COFFER_BUF_INIT;
    char path[PATH_MAX], provider[32], name[sizeof(AUDIT_SIGNING_KEY_RECORD) + AUDIT_NODE_ID_MAX];
    struct key_names names = {.count = 0};
    if (strlen(data_dir) + sizeof("/" AUDIT_SUBDIR "/" AUDIT_PUBLIC_KEY_FILE) > sizeof(path)) {
        fprintf(stderr, "coffer audit public-key: the data dir's path is too long\n");
        goto out;
    }
    /* The signing key is sealed in the store: SQLite in DIR, or the PostgreSQL database the
     * nodes share (each node's key under its node id). */
    if (cli_store_open("coffer audit public-key", data_dir, store_url, &st) != 0) {
        goto out;
    }
    if (spec == NULL) {
        if (seal_provider_record(st, &rec) != COFFER_OK ||
            seal_param_get(coffer_buf_cursor(&rec), "provider", provider, sizeof(provider)) != COFFER_OK) {
            goto fail;
        }
        if (strcmp(provider, "pkcs11") == 0) {
            fprintf(stderr, "coffer audit public-key: DIR is sealed by PKCS#11: give --seal pkcs11:...\n");
            goto out;
        }
        spec = provider;
    }
    bool fresh = false;
    if (seal_spec_check(st, spec, &fresh) != COFFER_OK ||
        seal_provider_from_spec(spec, data_dir, false, &prov) != COFFER_OK) {
        goto fail;
    }
    coffer_err orc = seal_open(prov, st, &sl);
    prov = NULL; /* the seal owns it, or freed it */
    if (orc != COFFER_OK || seal_store_wrap(sl, st, &records) != COFFER_OK) {
        goto fail;
    }
    if (node_id == NULL) {
        if (store_scan(records, AUDIT_SIGNING_KEY_RECORD, NULL, 0, count_keys, &names) != COFFER_OK) {
            goto fail;
        }
        /* Nodes sharing a database keep their keys side by side: DIR's own is the one of the
         * node whose digests DIR holds, as cofferd finds its node id again at start. */
        bool recorded = false;
        if (names.count > 1) {
            snprintf(path, sizeof(path), "%s/" AUDIT_SUBDIR, data_dir);
            if (audit_trail_recorded_node(path, names.first, &recorded) != COFFER_OK) {
                recorded = false;
            }
        }
        if (names.count != 1 && !recorded) {
            fprintf(stderr,
                    "coffer audit public-key: the store of %s holds %zu signing keys (one per node): "
                    "give --node-id\n",
                    data_dir, names.count);
            goto out;
        }
        node_id = names.first;
    }
    snprintf(name, sizeof(name), AUDIT_SIGNING_KEY_RECORD "%s", node_id);
    if (store_get(records, name, &der) != COFFER_OK ||
        crypto_pkey_from_private_der(CRYPTO_PKEY_RSA_2048, coffer_buf_cursor(&der), &k) != COFFER_OK ||
        audit_public_key_pem(k, &pem) != COFFER_OK) {
        goto fail;
    }
    fputs((const char *)pem.data, stdout);
    ret = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILED;
    /* The clear copy beside the digests must be this key; if not, someone replaced it. */
    snprintf(path, sizeof(path), "%s/" AUDIT_SUBDIR "/" AUDIT_PUBLIC_KEY_FILE, data_dir);
    if (read_text(path, &have) == 0 && (have.len != pem.len || memcmp(have.data, pem.data, have.len) != 0)) {
        fprintf(stderr, "coffer audit public-key: %s is not this key: it was replaced\n", path);
        ret = CLI_EXIT_FAILED;
    }
    goto out;
fail:
    fprintf(stderr, "coffer audit public-key: %s\n", coffer_last_message());
out:
    crypto_pkey_free(k);
    coffer_buf_free(&rec);
    coffer_buf_free(&der);
    coffer_buf_free(&pem);
    coffer_buf_free(&have);
    store_close(records);
    seal_free(sl);
    seal_provider_free(prov);
    store_close(st);
    return ret;
}

int cli_audit_main(int argc, char **argv)
{
    if (argc >= 2 && cli_is_help(argv[1])) {
        audit_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (argc >= 3 && strcmp(argv[1], "verify") == 0) {
        struct verify_args a = {.n_dirs = 0};
        crypto_pkey *owned[AUDIT_MAX_KEYS] = {NULL};
        int ret = parse_verify(argc, argv, &a, owned) == 0 ? audit_verify(&a) : CLI_EXIT_USAGE;
        for (size_t i = 0; i < AUDIT_MAX_KEYS; i++) {
            crypto_pkey_free(owned[i]);
        }
        if (ret == CLI_EXIT_USAGE) {
            audit_usage(stderr);
        }
        return ret;
    }
    if (argc >= 2 && strcmp(argv[1], "cat") == 0) {
        return cli_audit_cat(argc, argv);
    }
    if (argc >= 3 && strcmp(argv[1], "public-key") == 0) {
        const char *node = NULL, *spec = NULL, *store_url = NULL;
        for (int i = 3; i < argc; i++) {
            if (strcmp(argv[i], "--node-id") == 0 && i + 1 < argc) {
                node = argv[++i];
            } else if (strcmp(argv[i], "--store") == 0 && i + 1 < argc) {
                store_url = argv[++i];
            } else if (strcmp(argv[i], "--seal") == 0 && i + 1 < argc) {
                spec = argv[++i];
            } else {
                audit_usage(stderr);
                return CLI_EXIT_USAGE;
            }
        }
        if (node != NULL && !audit_node_id_valid(node)) {
            fprintf(stderr, "coffer audit public-key: not a node id: %s\n", node);
            return CLI_EXIT_USAGE;
        }
        return audit_public_key(argv[2], store_url, node, spec);
    }
    audit_usage(stderr);
    return CLI_EXIT_USAGE;
}
