/*
 * `coffer`: the operator and client tool (audit verification today; encryption and admin
 * commands plug in the same way). main() only dispatches: the table below names every
 * subcommand once, with its entry point and a one-line summary for the help text.
 */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "common/log.h"
#include "common/secret.h"

struct cli_command {
    const char *name;                   /* first word after `coffer` */
    int (*main)(int argc, char **argv); /* receives argv starting at the subcommand name */
    const char *summary;                /* one line for `coffer --help` */
};

static const struct cli_command commands[] = {
    {"admin", cli_admin_main, "operator commands against a running cofferd (create-account)"},
    {"audit", cli_audit_main, "verify the audit trail"},
    {"encrypt", cli_encrypt_main, "encrypt files or streams (AWS Encryption SDK format)"},
    {"decrypt", cli_decrypt_main, "decrypt files or streams (AWS Encryption SDK format)"},
    {"seal", cli_seal_main, "where the root key lives (status) and moving it (migrate; server stopped)"},
    {"store", cli_store_main,
     "move a data dir's records from SQLite to PostgreSQL (migrate; server stopped)"},
};

int cli_is_help(const char *arg)
{
    return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0 || strcmp(arg, "help") == 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: coffer <command> [arguments]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    }
    fprintf(f, "\n`coffer <command> --help` describes a command.\n"
               "exit status: 0 ok, 1 verification or operation failed, 2 usage error\n");
}

int main(int argc, char **argv)
{
    /* jansson and libcurl hold data keys from KMS responses (and the lexer's copy of them) in
     * their own blocks: this program has them wiped whenever they are freed. Set before either
     * library allocates; libcoffer itself cannot, as a library must not change global state. */
    json_set_alloc_funcs(malloc, coffer_wipe_free);
    if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, malloc, coffer_wipe_free, coffer_wipe_realloc, strdup,
                             calloc) != CURLE_OK) {
        fprintf(stderr, "coffer: HTTP client initialisation failed\n");
        return CLI_EXIT_FAILED;
    }
    coffer_log_set_level(COFFER_LOG_WARN);
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (cli_is_help(argv[1])) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("coffer " COFFER_VERSION "\n");
        return CLI_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            return commands[i].main(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "coffer: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return CLI_EXIT_USAGE;
}
