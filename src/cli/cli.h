/*
 * The `coffer` command line tool: one entry point per subcommand, dispatched from the table in
 * main.c (the single place that names subcommands). Each entry receives the arguments after
 * `coffer`, so argv[0] is the subcommand name, and returns a process exit code.
 */
#ifndef COFFER_CLI_CLI_H
#define COFFER_CLI_CLI_H

#include <stdio.h>

/* Exit codes shared by every subcommand. */
#define CLI_EXIT_OK 0     /* success */
#define CLI_EXIT_FAILED 1 /* verification failed or the operation failed */
#define CLI_EXIT_USAGE 2  /* bad command line */

/* `coffer audit verify DIR`: checks the hash chain of DIR/audit/ (cli_audit.c). */
int cli_audit_main(int argc, char **argv);
/* `coffer audit cat DIR FILE...`: prints trail files, decrypting encrypted ones through KMS. */
int cli_audit_cat(int argc, char **argv);

/* `coffer encrypt` / `coffer decrypt`: AWS Encryption SDK messages (cli_esdk.c). */
int cli_encrypt_main(int argc, char **argv);
int cli_decrypt_main(int argc, char **argv);

/* `coffer admin create-account NAME`: accounts on a running cofferd (cli_admin.c). */
int cli_admin_main(int argc, char **argv);

/* `coffer seal status|migrate`: the data dir's root key provider (cli_seal.c). */
int cli_seal_main(int argc, char **argv);

/* `coffer store migrate --from sqlite:DIR --to postgres://...`: moving the records (cli_store.c). */
int cli_store_main(int argc, char **argv);

/*
 * Opens the store of the data dir `data_dir` as cofferd would find it: `url` when not NULL
 * (a --store value: "sqlite" or a postgres:// URL), else $COFFER_STORE, else the `store` line
 * of DIR/cofferd.conf, else DIR/coffer.db. Prints the reason after `who` on failure, never
 * the URL (it may hold a password), and returns -1; 0 with *out set on success.
 */
struct store;
int cli_store_open(const char *who, const char *data_dir, const char *url, struct store **out);

/* True when `arg` asks for help ("-h", "--help", "help"). */
int cli_is_help(const char *arg);

#endif
