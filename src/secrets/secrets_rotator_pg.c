/*
 * The built-in PostgreSQL rotators (the RDS case), "builtin:postgres-single-user" and
 * "builtin:postgres-alternating-users", doing in cofferd what AWS's RDS PostgreSQL rotation
 * templates do in a Lambda, over the same secret JSON:
 *
 *   {"engine": "postgres", "host", "port" (number or string; default 5432), "username",
 *    "password", "dbname" (default "postgres"), "masterarn" (alternating users only)}
 *
 * single user:        a new password for the same role; setSecret logs in with the pending,
 *                     current or previous password (whichever works: a retried rotation) and
 *                     changes its own password.
 * alternating users:  the pending version names the other user of the pair, <username> and
 *                     <username>_clone; setSecret logs in with the master secret (masterarn),
 *                     creates the clone on first use (granted the original's role) or sets its
 *                     password, so the current user keeps working throughout.
 *
 * The steps read and write the secret through the service's own operations, as the account's
 * root would (the rotation runs for the secret's owner); values are wiped after use.
 */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/secret.h"
#include "common/timeutil.h"
#include "secrets/secrets_internal.h"

#define PG_DEFAULT_PORT 5432
#define PG_CLONE_SUFFIX "_clone"
#define PG_PASSWORD_EXCLUDE "/@\"'\\"

struct pg_ctx {
    struct sm *s;
    struct api_caller caller;
    const char *region;
    const char *arn;
    const char *token;
    char *why;
    size_t why_n;
};

/* The step's failure: `what` and a detail (libpq's message, a member) as its reason. */
static coffer_err failed(struct pg_ctx *c, const char *what, const char *detail)
{
    snprintf(c->why, c->why_n, "%s%s", what, detail != NULL ? detail : "");
    return coffer_fail(COFFER_ERR_INTERNAL, "%s", c->why);
}

/* Overwrites every string of `v` before it is freed: secret values and passwords. */
static void wipe_json(json_t *v)
{
    if (json_is_string(v)) {
        coffer_secure_zero((void *)json_string_value(v), json_string_length(v));
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x)
        {
            wipe_json(x);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x)
        {
            wipe_json(x);
        }
    }
}

static void drop(json_t *v)
{
    wipe_json(v);
    json_decref(v);
}

/* One operation of the service, in process, for the secret's owner. `input` is taken. */
static coffer_err call_op(struct pg_ctx *c, api_handler h, const char *op, json_t *input, json_t **out)
{
    if (out != NULL) {
        *out = NULL;
    }
    if (input == NULL) {
        return sm_oom();
    }
    struct api_call call = {
        .caller = &c->caller,
        .region = c->region,
        .request_id = c->token,
        .event_id = c->token,
        .operation = op,
        .now_ms = coffer_now_ms(),
        .input = input,
    };
    coffer_err rc = h(c->s, &call);
    json_decref(call.audit_request);
    json_decref(call.audit_response);
    json_decref(call.audit_resources);
    drop(input);
    if (rc == COFFER_OK && out != NULL) {
        *out = call.output != NULL ? call.output : json_object();
    } else {
        drop(call.output);
    }
    return rc;
}

/* The secret `id`'s value at `stage` (and `vid` when not NULL) as a JSON object; NOT_FOUND passes. */
static coffer_err get_dict(struct pg_ctx *c, const char *id, const char *vid, const char *stage,
                           json_t **dict)
{
    *dict = NULL;
    json_t *in = json_pack("{s:s, s:s}", "SecretId", id, "VersionStage", stage);
    if (in != NULL && vid != NULL && json_object_set_new(in, "VersionId", json_string(vid)) != 0) {
        json_decref(in);
        in = NULL;
    }
    json_t *out = NULL;
    TRY(call_op(c, sm_op_GetSecretValue, "GetSecretValue", in, &out));
    const char *text = sm_str(out, "SecretString");
    json_error_t jerr;
    *dict = text != NULL ? json_loads(text, 0, &jerr) : NULL;
    drop(out);
    if (!json_is_object(*dict)) {
        drop(*dict);
        *dict = NULL;
        char what[128];
        snprintf(what, sizeof(what), "%s of %s", stage, vid != NULL ? vid : id);
        snprintf(c->why, c->why_n, "the secret value (%s) is not a JSON object", what);
        return coffer_fail(COFFER_ERR_INTERNAL, "%s", c->why);
    }
    const char *engine = sm_str(*dict, "engine");
    if (sm_str(*dict, "host") == NULL || sm_str(*dict, "username") == NULL ||
        sm_str(*dict, "password") == NULL || (engine != NULL && strcmp(engine, "postgres") != 0)) {
        drop(*dict);
        *dict = NULL;
        snprintf(c->why, c->why_n, "the secret value (%s) needs engine postgres, host, username and password",
                 stage);
        return coffer_fail(COFFER_ERR_INTERNAL, "%s", c->why);
    }
    return COFFER_OK;
}

/* A connection with the credentials of `dict`; NULL when they do not log in. */
static PGconn *pg_login(struct pg_ctx *c, const json_t *dict, char *err, size_t err_n)
{
    char port[24], timeout[24];
    const json_t *p = json_object_get(dict, "port");
    if (json_is_integer(p)) {
        snprintf(port, sizeof(port), "%lld", (long long)json_integer_value(p));
    } else {
        snprintf(port, sizeof(port), "%s", json_is_string(p) ? json_string_value(p) : "5432");
    }
    long secs = (long)(c->s->step_timeout_ms / 1000);
    snprintf(timeout, sizeof(timeout), "%ld", secs < 2 ? 2 : secs);
    const char *db = sm_str(dict, "dbname") != NULL ? sm_str(dict, "dbname") : "postgres";
    const char *keys[] = {
        "host", "port", "user", "password", "dbname", "connect_timeout", "sslmode", "application_name", NULL};
    const char *vals[] = {sm_str(dict, "host"),
                          port,
                          sm_str(dict, "username"),
                          sm_str(dict, "password"),
                          db,
                          timeout,
                          "prefer",
                          "coffer-secretsmanager-rotation",
                          NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 0);
    if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
        snprintf(err, err_n, "%s", conn != NULL ? PQerrorMessage(conn) : "out of memory");
        /* libpq's message ends with a newline */
        size_t n = strlen(err);
        while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == '\r')) {
            err[--n] = 0;
        }
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

/* Runs `sql` (wiped after: it may carry a password). */
static coffer_err pg_exec(struct pg_ctx *c, PGconn *conn, char *sql, PGresult **res_out)
{
    PGresult *res = PQexec(conn, sql);
    coffer_secure_zero(sql, strlen(sql));
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char msg[400];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(conn));
        PQclear(res);
        return failed(c, "PostgreSQL refused the change: ", msg);
    }
    if (res_out != NULL) {
        *res_out = res;
    } else {
        PQclear(res);
    }
    return COFFER_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* The steps                                                                                    */

static coffer_err create_secret(struct pg_ctx *c, bool alternating)
{
    json_t *current = NULL, *pending = NULL, *pw = NULL;
    coffer_err rc = COFFER_OK;
    TRY_OUT(get_dict(c, c->arn, NULL, SM_CURRENT, &current));
    rc = get_dict(c, c->arn, c->token, SM_PENDING, &pending);
    if (rc == COFFER_OK) {
        goto out; /* made by an earlier attempt of this rotation */
    }
    if (rc != COFFER_ERR_NOT_FOUND) {
        goto out;
    }
    coffer_clear_err();
    TRY_OUT(call_op(c, sm_op_GetRandomPassword, "GetRandomPassword",
                    json_pack("{s:s}", "ExcludeCharacters", PG_PASSWORD_EXCLUDE), &pw));
    if (alternating) {
        const char *user = sm_str(current, "username");
        size_t n = strlen(user), sn = strlen(PG_CLONE_SUFFIX);
        char other[256];
        if (n > sn && strcmp(user + n - sn, PG_CLONE_SUFFIX) == 0) {
            snprintf(other, sizeof(other), "%.*s", (int)(n - sn), user);
        } else {
            snprintf(other, sizeof(other), "%s%s", user, PG_CLONE_SUFFIX);
        }
        if (json_object_set_new(current, "username", json_string(other)) != 0) {
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
    }
    if (json_object_set(current, "password", json_object_get(pw, "RandomPassword")) != 0) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    char *text = json_dumps(current, JSON_COMPACT);
    if (text == NULL) {
        FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
    }
    json_t *in = json_pack("{s:s, s:s, s:s, s:[s]}", "SecretId", c->arn, "ClientRequestToken", c->token,
                           "SecretString", text, "VersionStages", SM_PENDING);
    coffer_secure_zero(text, strlen(text));
    free(text);
    TRY_OUT(call_op(c, sm_op_PutSecretValue, "PutSecretValue", in, NULL));
out:
    drop(current);
    drop(pending);
    drop(pw);
    return rc;
}

/* A login with the first of `dicts` that works; NULL (why set) when none does. */
static PGconn *login_any(struct pg_ctx *c, json_t *const *dicts, size_t n)
{
    char err[300] = "";
    for (size_t i = 0; i < n; i++) {
        if (dicts[i] == NULL) {
            continue;
        }
        PGconn *conn = pg_login(c, dicts[i], err, sizeof(err));
        if (conn != NULL) {
            return conn;
        }
    }
    failed(c, "cannot log in to PostgreSQL: ", err);
    return NULL;
}

/* The value at `stage`, or NULL when the secret has none there. */
static coffer_err get_optional(struct pg_ctx *c, const char *stage, json_t **dict)
{
    coffer_err rc = get_dict(c, c->arn, NULL, stage, dict);
    if (rc == COFFER_ERR_NOT_FOUND) {
        coffer_clear_err();
        return COFFER_OK;
    }
    return rc;
}

static coffer_err set_secret(struct pg_ctx *c, bool alternating)
{
    json_t *current = NULL, *pending = NULL, *previous = NULL, *master = NULL;
    PGconn *conn = NULL;
    PGresult *res = NULL;
    char *user = NULL, *pw = NULL, *cur_user = NULL, *sql = NULL;
    coffer_err rc = COFFER_OK;
    TRY_OUT(get_dict(c, c->arn, NULL, SM_CURRENT, &current));
    TRY_OUT(get_dict(c, c->arn, c->token, SM_PENDING, &pending));
    if (strcmp(sm_str(current, "host"), sm_str(pending, "host")) != 0) {
        TRY_OUT(failed(c, "the pending value names another database host than the current one", ""));
    }
    if (alternating) {
        const char *masterarn = sm_str(current, "masterarn");
        if (masterarn == NULL) {
            TRY_OUT(failed(c, "the alternating-users rotator needs masterarn in the secret value", ""));
        }
        TRY_OUT(get_dict(c, masterarn, NULL, SM_CURRENT, &master));
        if ((conn = login_any(c, &master, 1)) == NULL) {
            FAIL_OUT(COFFER_ERR_INTERNAL, "%s", c->why);
        }
    } else {
        /* already done by an earlier attempt? */
        char err[300];
        conn = pg_login(c, pending, err, sizeof(err));
        if (conn != NULL) {
            goto out;
        }
        TRY_OUT(get_optional(c, SM_PREVIOUS, &previous));
        json_t *const tries[] = {current, previous};
        if ((conn = login_any(c, tries, 2)) == NULL) {
            FAIL_OUT(COFFER_ERR_INTERNAL, "%s", c->why);
        }
    }
    user = PQescapeIdentifier(conn, sm_str(pending, "username"), strlen(sm_str(pending, "username")));
    pw = PQescapeLiteral(conn, sm_str(pending, "password"), strlen(sm_str(pending, "password")));
    if (user == NULL || pw == NULL) {
        TRY_OUT(failed(c, "cannot quote the user name or password: ", PQerrorMessage(conn)));
    }
    bool exists = true;
    if (alternating) {
        char *lit = PQescapeLiteral(conn, sm_str(pending, "username"), strlen(sm_str(pending, "username")));
        if (lit == NULL || asprintf(&sql, "SELECT 1 FROM pg_roles WHERE rolname = %s", lit) < 0) {
            PQfreemem(lit);
            sql = NULL;
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
        PQfreemem(lit);
        TRY_OUT(pg_exec(c, conn, sql, &res));
        exists = PQntuples(res) > 0;
        PQclear(res);
        res = NULL;
        free(sql);
        sql = NULL;
    }
    if (exists) {
        if (asprintf(&sql, "ALTER ROLE %s WITH PASSWORD %s", user, pw) < 0) {
            sql = NULL;
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
        TRY_OUT(pg_exec(c, conn, sql, NULL));
    } else {
        /* the clone: a login of its own with every privilege of the original through membership */
        cur_user = PQescapeIdentifier(conn, sm_str(current, "username"), strlen(sm_str(current, "username")));
        if (cur_user == NULL ||
            asprintf(&sql, "CREATE ROLE %s WITH LOGIN PASSWORD %s IN ROLE %s", user, pw, cur_user) < 0) {
            sql = NULL;
            FAIL_OUT(COFFER_ERR_NOMEM, "out of memory");
        }
        TRY_OUT(pg_exec(c, conn, sql, NULL));
    }
out:
    if (sql != NULL) {
        coffer_secure_zero(sql, strlen(sql));
        free(sql);
    }
    if (pw != NULL) {
        coffer_secure_zero(pw, strlen(pw));
        PQfreemem(pw);
    }
    PQfreemem(user);
    PQfreemem(cur_user);
    PQclear(res);
    PQfinish(conn);
    drop(current);
    drop(pending);
    drop(previous);
    drop(master);
    return rc;
}

static coffer_err test_secret(struct pg_ctx *c)
{
    json_t *pending = NULL;
    TRY(get_dict(c, c->arn, c->token, SM_PENDING, &pending));
    PGconn *conn = login_any(c, &pending, 1);
    drop(pending);
    if (conn == NULL) {
        return coffer_fail(COFFER_ERR_INTERNAL, "%s", c->why);
    }
    char sql[] = "SELECT now()";
    coffer_err rc = pg_exec(c, conn, sql, NULL);
    PQfinish(conn);
    return rc;
}

/* Moves AWSCURRENT to the pending version (AWSPREVIOUS follows) and takes AWSPENDING off it. */
static coffer_err finish_secret(struct pg_ctx *c)
{
    json_t *desc = NULL;
    TRY(call_op(c, sm_op_DescribeSecret, "DescribeSecret", json_pack("{s:s}", "SecretId", c->arn), &desc));
    const char *current = NULL;
    const char *vid;
    json_t *stages;
    json_object_foreach(json_object_get(desc, "VersionIdsToStages"), vid, stages)
    {
        size_t i;
        json_t *l;
        json_array_foreach(stages, i, l)
        {
            if (strcmp(json_string_value(l), SM_CURRENT) == 0) {
                current = vid;
            }
        }
    }
    coffer_err rc = COFFER_OK;
    if (current == NULL || strcmp(current, c->token) != 0) {
        json_t *in = json_pack("{s:s, s:s, s:s}", "SecretId", c->arn, "VersionStage", SM_CURRENT,
                               "MoveToVersionId", c->token);
        if (in != NULL && current != NULL &&
            json_object_set_new(in, "RemoveFromVersionId", json_string(current)) != 0) {
            json_decref(in);
            in = NULL;
        }
        rc = call_op(c, sm_op_UpdateSecretVersionStage, "UpdateSecretVersionStage", in, NULL);
    }
    if (rc == COFFER_OK) {
        rc = call_op(c, sm_op_UpdateSecretVersionStage, "UpdateSecretVersionStage",
                     json_pack("{s:s, s:s, s:s}", "SecretId", c->arn, "VersionStage", SM_PENDING,
                               "RemoveFromVersionId", c->token),
                     NULL);
    }
    json_decref(desc);
    return rc;
}

coffer_err sm_pg_rotator_step(struct sm *s, const char *strategy, const char *region, const char *secret_arn,
                              const char *token, const char *step, char *why, size_t why_n)
{
    bool alternating = strcmp(strategy, "postgres-alternating-users") == 0;
    if (!alternating && strcmp(strategy, "postgres-single-user") != 0) {
        snprintf(why, why_n, "unknown built-in rotator %s", strategy);
        return coffer_fail(COFFER_ERR_INTERNAL, "%s", why);
    }
    struct pg_ctx c = {
        .s = s, .region = region, .arn = secret_arn, .token = token, .why = why, .why_n = why_n};
    /* the secret's owner: "arn:aws:secretsmanager:REGION:ACCOUNT:secret:..." */
    const char *p = secret_arn;
    for (int i = 0; i < 4 && p != NULL; i++) {
        p = strchr(p, ':');
        p = p != NULL ? p + 1 : NULL;
    }
    if (p == NULL || strlen(p) < API_ACCOUNT_ID_LEN) {
        snprintf(why, why_n, "not a secret ARN");
        return coffer_fail(COFFER_ERR_INTERNAL, "%s", why);
    }
    snprintf(c.caller.account_id, sizeof(c.caller.account_id), "%.*s", API_ACCOUNT_ID_LEN, p);
    snprintf(c.caller.principal_arn, sizeof(c.caller.principal_arn), "arn:aws:iam::%s:root",
             c.caller.account_id);
    snprintf(c.caller.principal_id, sizeof(c.caller.principal_id), "%s", c.caller.account_id);
    c.caller.principal_kind = API_PRINCIPAL_ROOT;
    c.caller.source_ip = "secretsmanager.amazonaws.com";
    c.caller.user_agent = "secretsmanager.amazonaws.com";
    c.caller.secure_transport = true;
    coffer_err rc;
    if (strcmp(step, "createSecret") == 0) {
        rc = create_secret(&c, alternating);
    } else if (strcmp(step, "setSecret") == 0) {
        rc = set_secret(&c, alternating);
    } else if (strcmp(step, "testSecret") == 0) {
        rc = test_secret(&c);
    } else {
        rc = finish_secret(&c);
    }
    if (rc != COFFER_OK && why[0] == 0) {
        snprintf(why, why_n, "%s", coffer_last_message());
    }
    return rc;
}
