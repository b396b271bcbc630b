/*
 * The error table and the thread-local failure context (code, detail, location).
 */
#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct err_entry {
    const char *name;
    const char *aws_type;
    int status;
    const char *message;
};

static const struct err_entry err_table[COFFER_ERR_COUNT] = {
#define COFFER_ERR_ROW(code, type, st, msg) [code] = {#code, type, st, msg},
    COFFER_ERRORS(COFFER_ERR_ROW)
#undef COFFER_ERR_ROW
};

#define ERR_DETAIL_MAX 512

static _Thread_local coffer_err last_code;
static _Thread_local char last_detail[ERR_DETAIL_MAX];
static _Thread_local char last_where[128];

static const struct err_entry *err_entry_of(coffer_err e)
{
    if ((unsigned)e >= COFFER_ERR_COUNT) {
        e = COFFER_ERR_INTERNAL;
    }
    return &err_table[e];
}

const char *coffer_err_name(coffer_err e)
{
    return err_entry_of(e)->name;
}

const char *coffer_err_aws_type(coffer_err e)
{
    return err_entry_of(e)->aws_type;
}

int coffer_err_http_status(coffer_err e)
{
    return err_entry_of(e)->status;
}

const char *coffer_err_default_message(coffer_err e)
{
    return err_entry_of(e)->message;
}

coffer_err coffer_fail_at(coffer_err code, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_detail, sizeof(last_detail), fmt, ap);
    va_end(ap);
    const char *base = strrchr(file, '/');
    snprintf(last_where, sizeof(last_where), "%s:%d", base ? base + 1 : file, line);
    last_code = code;
    return code;
}

coffer_err coffer_last_err(void)
{
    return last_code;
}

const char *coffer_last_message(void)
{
    return last_detail;
}

const char *coffer_last_location(void)
{
    return last_where;
}

void coffer_clear_err(void)
{
    last_code = COFFER_OK;
    last_detail[0] = '\0';
    last_where[0] = '\0';
}

const char *coffer_err_message(coffer_err e)
{
    if (e == last_code && last_detail[0] != '\0') {
        return last_detail;
    }
    return err_entry_of(e)->message;
}
