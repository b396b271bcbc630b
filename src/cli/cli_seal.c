/*
 * `coffer seal`: where the data dir's root key lives, and moving it elsewhere.
 *
 *   coffer seal status [--data-dir DIR] [--store URL]
 *   coffer seal migrate --to SPEC [--from SPEC] [--data-dir DIR] [--store URL]
 *
 * Both work on the data dir and its store themselves, not through a server; the store is found
 * as cofferd finds it (cli_store_open). `migrate` re-wraps the barrier keyring
 * (the keys that seal every record) under the new provider in one store transaction, so records
 * are untouched and a failure changes nothing; it takes the data dir's lock exclusive, which a
 * running cofferd holds shared, so it refuses while a server runs on DIR. SPEC is the form of
 * cofferd's --seal (seal_provider.h); --from defaults to the provider the data dir records
 * without settings, which is enough for the key file and a prompted passphrase.
 */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/buf.h"
#include "seal/seal_provider.h"
#include "store/store.h"

#define SEAL_DEFAULT_DATA_DIR "coffer-data"

static void seal_usage(FILE *f)
{
    fprintf(f,
            "usage: coffer seal status [--data-dir DIR] [--store URL]\n"
            "       coffer seal migrate --to SPEC [--from SPEC] [--data-dir DIR] [--store URL]\n\n"
            "status prints which root key provider seals DIR (default ./%s) and its settings.\n"
            "migrate re-wraps the barrier keyring from the current provider (--from, by default the\n"
            "one DIR records) to SPEC in one transaction; cofferd must be stopped. SPEC:\n"
            "  file[:path=PATH]\n"
            "  passphrase[:fd=N|file=PATH|env=NAME|credential=NAME][,ops=N,mem=MiB]\n"
            "  pkcs11:module=PATH,token=LABEL|slot=N,pin-file=PATH|pin-env=NAME,key=LABEL[,create=yes]\n"
            "After moving away from the key file, DIR/root.key still opens backups taken before:\n"
            "destroy it once no such backup is needed.\n"
            "DIR's store is found as cofferd finds it: --store (sqlite or a postgres:// URL), else\n"
            "$COFFER_STORE, else the store line of DIR/cofferd.conf, else DIR/coffer.db.\n",
            SEAL_DEFAULT_DATA_DIR);
}

static int seal_status(const char *data_dir, const char *store_url)
{
    store *st = NULL;
    coffer_buf rec = COFFER_BUF_INIT;
    int ret = CLI_EXIT_FAILED;
    if (cli_store_open("coffer seal", data_dir, store_url, &st) != 0) {
        goto out;
    }
    if (seal_provider_record(st, &rec) != COFFER_OK) {
        fprintf(stderr, "coffer seal: %s\n", coffer_last_message());
        goto out;
    }
    /* "name=value" lines as "name: value"; the salt and costs are not secret. */
    for (size_t i = 0, start = 0; i < rec.len; i++) {
        if (rec.data[i] == '\n') {
            const char *line = (const char *)rec.data + start;
            const char *eq = memchr(line, '=', i - start);
            if (eq != NULL) {
                printf("%.*s: %.*s\n", (int)(eq - line), line, (int)(i - start - (size_t)(eq - line) - 1),
                       eq + 1);
            }
            start = i + 1;
        }
    }
    ret = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_FAILED;
out:
    coffer_buf_free(&rec);
    store_close(st);
    return ret;
}

static int seal_migrate_cmd(const char *data_dir, const char *store_url, const char *from_spec,
                            const char *to_spec)
{
    store *st = NULL;
    struct seal_provider *from = NULL, *to = NULL;
    coffer_buf rec = COFFER_BUF_INIT;
    char current[32];
    int lock_fd = -1, ret = CLI_EXIT_FAILED;
    if (seal_dir_lock(data_dir, true, &lock_fd) != COFFER_OK) {
        fprintf(stderr, "coffer seal: %s\n", coffer_last_message());
        goto out;
    }
    if (cli_store_open("coffer seal", data_dir, store_url, &st) != 0) {
        goto out;
    }
    if (seal_provider_record(st, &rec) != COFFER_OK ||
        seal_param_get(coffer_buf_cursor(&rec), "provider", current, sizeof(current)) != COFFER_OK) {
        fprintf(stderr, "coffer seal: %s\n", coffer_last_message());
        goto out;
    }
    if (from_spec == NULL) {
        if (strcmp(current, "pkcs11") == 0) {
            fprintf(stderr,
                    "coffer seal: DIR is sealed by PKCS#11: give --from pkcs11:module=...,pin-file=...\n");
            goto out;
        }
        from_spec = current;
    }
    bool fresh = false;
    if (seal_spec_check(st, from_spec, &fresh) != COFFER_OK ||
        seal_provider_from_spec(from_spec, data_dir, false, &from) != COFFER_OK ||
        seal_provider_from_spec(to_spec, data_dir, true, &to) != COFFER_OK) {
        fprintf(stderr, "coffer seal: %s\n", coffer_last_message());
        goto out;
    }
    if (seal_migrate(st, from, to) != COFFER_OK) {
        fprintf(stderr, "coffer seal: %s\n", coffer_last_message());
        goto out;
    }
    coffer_buf_reset(&rec);
    char now[32] = "?";
    if (seal_provider_record(st, &rec) != COFFER_OK ||
        seal_param_get(coffer_buf_cursor(&rec), "provider", now, sizeof(now)) != COFFER_OK) {
        snprintf(now, sizeof(now), "?");
    }
    printf("re-wrapped the barrier keyring of %s: %s -> %s\n", data_dir, current, now);
    if (strcmp(current, "file") == 0 && strcmp(now, "file") != 0) {
        printf("the old key file still opens backups of %s taken before: destroy it once none is needed\n",
               data_dir);
    }
    ret = CLI_EXIT_OK;
out:
    seal_provider_free(from);
    seal_provider_free(to);
    coffer_buf_free(&rec);
    store_close(st);
    if (lock_fd >= 0) {
        close(lock_fd);
    }
    return ret;
}

int cli_seal_main(int argc, char **argv)
{
    const char *data_dir = SEAL_DEFAULT_DATA_DIR, *from = NULL, *to = NULL, *store_url = NULL;
    if (argc < 2 || cli_is_help(argv[1])) {
        seal_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    const char *cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--data-dir") == 0 && i + 1 < argc) {
            data_dir = argv[++i];
        } else if (strcmp(argv[i], "--store") == 0 && i + 1 < argc) {
            store_url = argv[++i];
        } else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc) {
            from = argv[++i];
        } else if (strcmp(argv[i], "--to") == 0 && i + 1 < argc) {
            to = argv[++i];
        } else if (cli_is_help(argv[i])) {
            seal_usage(stdout);
            return CLI_EXIT_OK;
        } else {
            fprintf(stderr, "coffer seal: unexpected argument '%s'\n", argv[i]);
            seal_usage(stderr);
            return CLI_EXIT_USAGE;
        }
    }
    if (strcmp(cmd, "status") == 0 && from == NULL && to == NULL) {
        return seal_status(data_dir, store_url);
    }
    if (strcmp(cmd, "migrate") == 0 && to != NULL) {
        return seal_migrate_cmd(data_dir, store_url, from, to);
    }
    seal_usage(stderr);
    return CLI_EXIT_USAGE;
}
