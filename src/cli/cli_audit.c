/*
 * `coffer audit verify DIR`: proves that nothing was removed from, altered in or reordered in
 * the audit trail of a cofferd data directory (DIR/audit/), by recomputing the hash chain.
 * Prints "audit trail OK: N events in M files" or the first break; exit 1 on a break.
 */
#include "cli/cli.h"

#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "audit/audit.h"

static void audit_usage(FILE *f)
{
    fprintf(f, "usage: coffer audit verify DIR\n\n"
               "Checks the hash chain of the audit trail in DIR/" AUDIT_SUBDIR "/ (DIR is the cofferd data\n"
               "directory; a directory holding the trail-*.jsonl files directly is accepted too).\n"
               "exit status: 0 intact, 1 broken or unreadable, 2 usage error\n");
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int audit_verify(const char *data_dir)
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
    if (audit_verify_dir(dir, stdout) != COFFER_OK) {
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
        return audit_verify(argv[2]);
    }
    audit_usage(stderr);
    return CLI_EXIT_USAGE;
}
