/*
 * The built-in PostgreSQL rotators.
 */
#include <stdio.h>

#include "secrets/secrets_internal.h"

coffer_err sm_pg_rotator_step(struct sm *s, const char *strategy, const char *region, const char *secret_arn,
                              const char *token, const char *step, char *why, size_t why_n)
{
    (void)s;
    (void)region;
    (void)secret_arn;
    (void)token;
    (void)step;
    snprintf(why, why_n, "the rotator %s is not available", strategy);
    return coffer_fail(COFFER_ERR_INTERNAL, "%s", why);
}
