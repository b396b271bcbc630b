/*
 * The per-account parameter counts behind ParameterLimitExceeded (AWS: 10,000 standard and
 * 100,000 advanced parameters per account and region; cofferd --ssm-max-standard and
 * --ssm-max-advanced).
 *
 * The counts are one record "ssm/count/<account>/<region>" = {"Standard": n, "Advanced": m},
 * updated in the same transaction as the parameter record it counts. Transactions are
 * serialised (store.h), so two PutParameter racing for the last free place cannot both see it
 * free: the counts are exact under concurrency, and a create or delete costs one small record
 * read and write rather than a scan of the account's parameters.
 *
 * A missing record (a data dir from before the counts existed) is rebuilt by counting the
 * account's parameters once, in the transaction. A delete that forgets to call ssm_count_add
 * would leave the counts too high, never too low; so before refusing a parameter the counts
 * are rebuilt the same way and the decision is made on the exact figure. That scan happens only
 * at the limit.
 */
#include <stdio.h>
#include <string.h>

#include "ssm/ssm_internal.h"

struct counts {
    json_int_t standard;
    json_int_t advanced;
};

static coffer_err count_visit(void *ctx, const char *key, coffer_cursor value)
{
    (void)key;
    struct counts *c = ctx;
    json_t *rec = NULL;
    TRY(ssm_rec_parse(value, &rec));
    const char *tier = ssm_vstr(ssm_rec_latest(rec), "Tier");
    if (tier != NULL && strcmp(tier, "Advanced") == 0) {
        c->advanced++;
    } else {
        c->standard++;
    }
    json_decref(rec);
    return COFFER_OK;
}

/* Counts the parameters of `account` in `region` as `t` sees them. */
static coffer_err count_scan(store_txn *t, const char *account, const char *region, struct counts *c)
{
    char prefix[128];
    snprintf(prefix, sizeof(prefix), "ssm/param/%s/%s/", account, region);
    *c = (struct counts){0, 0};
    return store_txn_scan(t, prefix, NULL, 0, count_visit, c);
}

/* The counts as recorded in `t` (rebuilt by a scan when the record is missing). */
static coffer_err count_read(store_txn *t, const char *key, const char *account, const char *region,
                             struct counts *c)
{
    coffer_buf b;
    coffer_buf_init(&b, false);
    json_t *rec = NULL;
    coffer_err rc = store_txn_get(t, key, &b);
    if (rc == COFFER_ERR_NOT_FOUND) {
        coffer_clear_err();
        TRY_OUT(count_scan(t, account, region, c));
    } else {
        TRY_OUT(rc);
        json_error_t jerr;
        rec = json_loadb((const char *)b.data, b.len, 0, &jerr);
        if (rec == NULL) {
            FAIL_OUT(COFFER_ERR_INTERNAL, "corrupt parameter count record");
        }
        c->standard = json_integer_value(json_object_get(rec, "Standard"));
        c->advanced = json_integer_value(json_object_get(rec, "Advanced"));
    }
out:
    coffer_buf_free(&b);
    json_decref(rec);
    return rc;
}

coffer_err ssm_count_standard_full(const struct ssm *s, store_txn *t, const char *account, const char *region,
                                   bool *full)
{
    char key[128];
    snprintf(key, sizeof(key), "ssm/count/%s/%s", account, region);
    struct counts c = {0, 0};
    TRY(count_read(t, key, account, region, &c));
    if (c.standard + 1 > (json_int_t)s->limits.max_standard) {
        /* decide on the exact figure (see above) */
        TRY(count_scan(t, account, region, &c));
    }
    *full = c.standard + 1 > (json_int_t)s->limits.max_standard;
    return COFFER_OK;
}

coffer_err ssm_count_add(const struct ssm *s, store_txn *t, const char *account, const char *region,
                         int d_standard, int d_advanced)
{
    if (d_standard == 0 && d_advanced == 0) {
        return COFFER_OK;
    }
    char key[128];
    snprintf(key, sizeof(key), "ssm/count/%s/%s", account, region);
    struct counts c = {0, 0};
    json_t *rec = NULL;
    coffer_err rc = COFFER_OK;
    TRY_OUT(count_read(t, key, account, region, &c));
    bool over_std = d_standard > 0 && c.standard + d_standard > (json_int_t)s->limits.max_standard;
    bool over_adv = d_advanced > 0 && c.advanced + d_advanced > (json_int_t)s->limits.max_advanced;
    if (over_std || over_adv) {
        /* refuse only on the exact figure (see above) */
        TRY_OUT(count_scan(t, account, region, &c));
        over_std = d_standard > 0 && c.standard + d_standard > (json_int_t)s->limits.max_standard;
        over_adv = d_advanced > 0 && c.advanced + d_advanced > (json_int_t)s->limits.max_advanced;
    }
    if (over_std) {
        FAIL_OUT(COFFER_ERR_LIMIT_EXCEEDED,
                 "You have reached the maximum number of standard parameters for this AWS account and Region "
                 "(%zu). To add more parameters, either delete existing parameters or upgrade to the "
                 "advanced-parameter tier (charges apply).",
                 s->limits.max_standard);
    }
    if (over_adv) {
        FAIL_OUT(COFFER_ERR_LIMIT_EXCEEDED,
                 "You have reached the maximum number of advanced parameters for this AWS account and Region "
                 "(%zu). To add more parameters, delete existing advanced parameters.",
                 s->limits.max_advanced);
    }
    c.standard += d_standard;
    c.advanced += d_advanced;
    json_decref(rec);
    rec = json_pack("{s:I, s:I}", "Standard", c.standard < 0 ? 0 : c.standard, "Advanced",
                    c.advanced < 0 ? 0 : c.advanced);
    if (rec == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    TRY_OUT(ssm_rec_store(t, key, rec));
out:
    json_decref(rec);
    return rc;
}
