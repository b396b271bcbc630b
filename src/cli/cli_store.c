/*
 * `coffer store migrate`: moves an embedded deployment (SQLite in its data dir) to PostgreSQL.
 *
 *   coffer store migrate --from sqlite:DIR --to postgres://USER@HOST:PORT/DB?... [--overwrite]
 *                        [--seal SPEC]
 *
 * Every record is copied as the bytes it is stored as (store_copy in src/store): sealed records
 * stay sealed and nothing is decrypted or sealed again on the way, so the target needs the same
 * root key, which the data dir keeps: afterwards cofferd runs with --data-dir DIR --store URL.
 * A target that already holds records is refused unless --overwrite. Then the counts are
 * checked, every record is read back and compared, and the barrier is opened on the target
 * (with the provider DIR records, or --seal SPEC as cofferd takes it) to show that every record
 * opens and every KMS key's material unseals. Progress goes to stderr. The data dir's lock is
 * taken exclusive, so the copy refuses while a cofferd runs on DIR and its records cannot change
 * under it. The URL may hold a password: it is never printed (PGPASSWORD keeps it out of argv).
 */
#include "cli/cli.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "seal/seal.h"
#include "seal/seal_provider.h"
#include "store/store.h"

#define STORE_URL_MAX 1024 /* as cofferd's --store */
#define KMS_KEY_PREFIX "kms/key/"
#define KMS_MATERIAL_PREFIX "kms/material/"

static void store_usage(FILE *f)
{
    fprintf(f, "usage: coffer store migrate --from sqlite:DIR --to postgres://USER@HOST:PORT/DB?... "
               "[--overwrite] [--seal SPEC]\n\n"
               "Copies every record of the data dir DIR's SQLite store into the PostgreSQL database,\n"
               "sealed records as they are, then checks the counts, compares every record and opens\n"
               "the barrier on the copy to check that every record opens and every KMS key's material\n"
               "unseals. cofferd must be stopped on DIR. A database that already holds records is\n"
               "refused unless --overwrite (records under the same keys are then replaced). --seal is\n"
               "the root key provider as cofferd's --seal takes it (default: the one DIR records).\n"
               "Afterwards: cofferd --data-dir DIR --store URL, on every node (with a copy of DIR).\n");
}

static void progress(void *ctx, const char *what, size_t n)
{
    (void)ctx;
    fprintf(stderr, "coffer store: %s %zu records\n", what, n);
}

struct open_check {
    seal *sl;
    size_t records, keys, materials;
    coffer_buf plain; /* secret: a key's material, wiped after each */
};

/* Called for every record of the sealed view, so opening it already worked; a key material is
 * sealed once more by KMS under its store key, and that seal is opened too. */
static coffer_err open_check_cb(void *p, const char *key, coffer_cursor value)
{
    struct open_check *c = p;
    c->records++;
    if (strncmp(key, KMS_KEY_PREFIX, strlen(KMS_KEY_PREFIX)) == 0) {
        c->keys++;
    } else if (strncmp(key, KMS_MATERIAL_PREFIX, strlen(KMS_MATERIAL_PREFIX)) == 0) {
        coffer_buf_reset(&c->plain);
        coffer_err rc = seal_record_open(c->sl, key, value, &c->plain);
        coffer_buf_reset(&c->plain);
        if (rc != COFFER_OK) {
            return coffer_fail(COFFER_ERR_CRYPTO, "the KMS key material %s does not unseal", key);
        }
        c->materials++;
    }
    if (c->records % 1000 == 0) {
        progress(NULL, "opened", c->records);
    }
    return COFFER_OK;
}

/* Opens the barrier on `to` and every record through it. */
static coffer_err check_opens(store *from, store *to, const char *data_dir, const char *seal_spec,
                              struct open_check *c)
{
    coffer_err rc = COFFER_OK;
    coffer_buf rec = COFFER_BUF_INIT;
    char recorded[32];
    struct seal_provider *p = NULL;
    seal *sl = NULL;
    store *view = NULL;
    if (seal_spec == NULL) {
        TRY_OUT(seal_provider_record(from, &rec));
        TRY_OUT(seal_param_get(coffer_buf_cursor(&rec), "provider", recorded, sizeof(recorded)));
        if (strcmp(recorded, "pkcs11") == 0) {
            FAIL_OUT(COFFER_ERR_CONFIG,
                     "DIR is sealed by PKCS#11: give --seal pkcs11:module=...,pin-file=...");
        }
        seal_spec = recorded;
    }
    bool fresh = false;
    TRY_OUT(seal_spec_check(to, seal_spec, &fresh));
    if (fresh) {
        FAIL_OUT(COFFER_ERR_STORE, "the target holds no barrier keyring after the copy");
    }
    TRY_OUT(seal_provider_from_spec(seal_spec, data_dir, false, &p));
    rc = seal_open(p, to, &sl); /* takes p whatever the outcome */
    p = NULL;
    TRY_OUT(rc);
    TRY_OUT(seal_store_wrap(sl, to, &view));
    c->sl = sl;
    TRY_OUT(store_scan(view, "", NULL, 0, open_check_cb, c));
    progress(NULL, "opened", c->records);
out:
    store_close(view);
    seal_free(sl);
    seal_provider_free(p);
    coffer_buf_free(&rec);
    return rc;
}

static int store_migrate_cmd(const char *from_url, const char *to_url, bool overwrite, const char *seal_spec)
{
    char path[4096];
    store *from = NULL, *to = NULL;
    int lock_fd = -1, ret = CLI_EXIT_FAILED;
    struct store_copy_stats stats;
    struct open_check check = {.plain = COFFER_SECRET_BUF_INIT};
    const char *data_dir = from_url + strlen("sqlite:");
    if (strncmp(data_dir, "//", 2) == 0) {
        data_dir += 2;
    }
    snprintf(path, sizeof(path), "%s/coffer.db", data_dir);
    if (access(path, F_OK) != 0) {
        fprintf(stderr, "coffer store: %s is not a data dir (no coffer.db)\n", data_dir);
        goto out;
    }
    /* Exclusive: no cofferd runs on DIR, and none starts, while its records are copied. */
    if (seal_dir_lock(data_dir, true, &lock_fd) != COFFER_OK) {
        fprintf(stderr, "coffer store: %s\n", coffer_last_message());
        goto out;
    }
    snprintf(path, sizeof(path), "sqlite:%s/coffer.db", data_dir);
    if (store_open(path, &from) != COFFER_OK) {
        fprintf(stderr, "coffer store: %s: %s\n", data_dir, coffer_last_message());
        goto out;
    }
    if (store_open(to_url, &to) != COFFER_OK) {
        fprintf(stderr, "coffer store: the target: %s\n", coffer_last_message());
        goto out;
    }
    if (store_copy(from, to, overwrite, progress, NULL, &stats) != COFFER_OK) {
        fprintf(stderr, "coffer store: %s\n", coffer_last_message());
        if (stats.target_before > 0 && !overwrite) {
            fprintf(stderr, "coffer store: give --overwrite to copy into it anyway\n");
        }
        goto out;
    }
    if (check_opens(from, to, data_dir, seal_spec, &check) != COFFER_OK) {
        fprintf(stderr, "coffer store: the copy does not open: %s\n", coffer_last_message());
        goto out;
    }
    printf("copied %zu records (%zu bytes) from %s to %s; target holds %zu records, %zu "
           "compared equal; %zu records open through the barrier; %zu KMS keys, %zu key materials "
           "unseal\n",
           stats.copied, stats.bytes, data_dir, store_backend_name(to), stats.target_count, stats.verified,
           check.records, check.keys, check.materials);
    ret = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILED;
out:
    coffer_buf_free(&check.plain);
    store_close(to);
    store_close(from);
    if (lock_fd >= 0) {
        close(lock_fd);
    }
    return ret;
}

/* ---------------------------------------------------------------- a data dir's store */

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) {
        s++;
    }
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) {
        *--e = '\0';
    }
    return s;
}

/* The `store = ...` line of DIR/cofferd.conf, read as cofferd reads that file ('#' starts a
 * comment); "" when there is no such file or line. */
static void conf_store(const char *data_dir, char *out, size_t n)
{
    char path[4096], line[2048];
    out[0] = '\0';
    snprintf(path, sizeof(path), "%s/cofferd.conf", data_dir);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        char *hash = strchr(line, '#');
        if (hash != NULL) {
            *hash = '\0';
        }
        char *eq = strchr(line, '=');
        if (eq == NULL) {
            continue;
        }
        *eq = '\0';
        if (strcmp(trim(line), "store") == 0) {
            snprintf(out, n, "%s", trim(eq + 1)); /* the last line wins, as in cofferd */
        }
    }
    fclose(f);
}

int cli_store_open(const char *who, const char *data_dir, const char *url, store **out)
{
    char conf[STORE_URL_MAX], path[4096];
    const char *from = "--store";
    if (url == NULL && (url = getenv("COFFER_STORE")) != NULL && url[0] != '\0') {
        from = "COFFER_STORE";
    } else if (url == NULL || url[0] == '\0') {
        conf_store(data_dir, conf, sizeof(conf));
        url = conf[0] != '\0' ? conf : "sqlite";
        from = "the store line of DIR/cofferd.conf";
    }
    if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0) {
        if (store_open(url, out) != COFFER_OK) {
            fprintf(stderr, "%s: %s\n", who, coffer_last_message());
            return -1;
        }
        return 0;
    }
    if (strcmp(url, "sqlite") != 0) {
        fprintf(stderr, "%s: %s must be sqlite or a postgres:// URL\n", who, from);
        return -1;
    }
    snprintf(path, sizeof(path), "%s/coffer.db", data_dir);
    if (access(path, F_OK) != 0) {
        fprintf(stderr, "%s: %s is not a data dir (no coffer.db)\n", who, data_dir);
        return -1;
    }
    snprintf(path, sizeof(path), "sqlite:%s/coffer.db", data_dir);
    if (store_open(path, out) != COFFER_OK) {
        fprintf(stderr, "%s: %s\n", who, coffer_last_message());
        return -1;
    }
    return 0;
}

int cli_store_main(int argc, char **argv)
{
    const char *from = NULL, *to = NULL, *seal_spec = NULL;
    bool overwrite = false;
    if (argc < 2 || cli_is_help(argv[1])) {
        store_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    const char *cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--from") == 0 && i + 1 < argc) {
            from = argv[++i];
        } else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc) {
            to = argv[++i];
        } else if (strcmp(argv[i], "--seal") == 0 && i + 1 < argc) {
            seal_spec = argv[++i];
        } else if (strcmp(argv[i], "--overwrite") == 0) {
            overwrite = true;
        } else if (cli_is_help(argv[i])) {
            store_usage(stdout);
            return CLI_EXIT_OK;
        } else {
            /* Not echoed: it may be a URL with a password. */
            fprintf(stderr, "coffer store: unexpected argument %d\n", i);
            store_usage(stderr);
            return CLI_EXIT_USAGE;
        }
    }
    if (strcmp(cmd, "migrate") != 0 || from == NULL || to == NULL) {
        store_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strncmp(from, "sqlite:", 7) != 0 || from[7] == '\0') {
        fprintf(stderr, "coffer store: --from must be sqlite:DIR (the data dir)\n");
        return CLI_EXIT_USAGE;
    }
    if (strncmp(to, "postgres://", 11) != 0 && strncmp(to, "postgresql://", 13) != 0) {
        fprintf(stderr, "coffer store: --to must be a postgres:// URL\n");
        return CLI_EXIT_USAGE;
    }
    return store_migrate_cmd(from, to, overwrite, seal_spec);
}
