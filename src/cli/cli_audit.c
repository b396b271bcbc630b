/*
 * `coffer audit verify DIR [--anchor HASH]`: recomputes the hash chain of the audit trail of a
 * cofferd data directory (DIR/audit/). It finds any event removed, altered or reordered before
 * the last one, unless the chain after it was re-hashed (the chain has no key); truncation at
 * the end is found only against --anchor, a "last event hash" printed by an earlier run and
 * kept elsewhere. Prints "audit trail OK: N events in M files" or the first break; exit 1 on a
 * break.
 */
#include "cli/cli.h"

#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "audit/audit.h"

static void audit_usage(FILE *f)
{
    fprintf(f, "usage: coffer audit verify DIR [--anchor HASH]\n\n"
               "Checks the hash chain of the audit trail in DIR/" AUDIT_SUBDIR "/ (DIR is the cofferd data\n"
               "directory; a directory holding the trail-*.jsonl files directly is accepted too).\n"
               "The chain shows an event removed, altered or reordered before the last one; it\n"
               "cannot show the last events removed, or the chain rewritten and re-hashed from\n"
               "some event on. For that keep the \"last event hash\" of a run elsewhere and pass\n"
               "it later as --anchor: the event must still be in the chain.\n"
               "exit status: 0 intact, 1 broken or unreadable, 2 usage error\n");
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int audit_verify(const char *data_dir, const char *anchor)
{
    char trail[PATH_MAX];
    int n = snprintf(trail, sizeof(trail), "%s/" AUDIT_SUBDIR, data_dir);
    if (n < 0 || (size_t)n >= sizeof(trail)) {
        fprintf(stderr, "coffer audit verify: path too long\n");
        return CLI_EXIT_USAGE;
    }
    const char *dir = is_dir(trail) ? trail : data_dir;
    if (!is_dir(dir)) {
        fprintf(stderr, "coffer audit verify: %s is not a directory\n", data_dir);
        return CLI_EXIT_FAILED;
    }
    /* audit_verify_dir prints the summary or the first break itself. */
    if (anchor != NULL && strlen(anchor) != AUDIT_HASH_HEX_LEN) {
        fprintf(stderr, "coffer audit verify: --anchor takes a %d-character hex hash\n", AUDIT_HASH_HEX_LEN);
        return CLI_EXIT_USAGE;
    }
    if (audit_verify_dir_anchored(dir, anchor, stdout, NULL) != COFFER_OK) {
        return CLI_EXIT_FAILED;
    }
    return CLI_EXIT_OK;
}

int cli_audit_main(int argc, char **argv)
{
    if (argc >= 2 && cli_is_help(argv[1])) {
        audit_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (argc == 3 && strcmp(argv[1], "verify") == 0) {
        return audit_verify(argv[2], NULL);
    }
    if (argc == 5 && strcmp(argv[1], "verify") == 0 && strcmp(argv[3], "--anchor") == 0) {
        return audit_verify(argv[2], argv[4]);
    }
    audit_usage(stderr);
    return CLI_EXIT_USAGE;
}
