/*
 * Policy evaluator: matches a compiled policy (policy.c) against one request and its context
 * keys, following the IAM evaluation logic: within a policy any applicable Deny wins over any
 * applicable Allow; across policies policy_combine applies the same rule. Nothing here parses
 * JSON, and it allocates only for a wildcard segment longer than 512 bytes; the hot path is
 * glob matching over pre-lower-cased strings, linear in the subject (see glob_range).
 */
#include "iam/policy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/timeutil.h"
#include "iam/policy_internal.h"

/* ---------------------------------------------------------------------------------------------
 * Request context
 * ------------------------------------------------------------------------------------------- */

/*
 * A context value with its typed readings parsed once, when set, not per statement. The
 * context is reused from request to request (policy_ctx_clear), so a value keeps its text
 * buffer (s_cap bytes) and an entry its value array: a warm context allocates nothing.
 */
struct ctx_value {
    char *s; /* NUL-terminated; owned when s_cap > 0 */
    size_t s_cap;
    bool is_num, is_date, is_ip;
    double num;            /* when is_num */
    int64_t ms;            /* when is_date */
    struct policy_cidr ip; /* when is_ip */
};

struct ctx_entry {
    char *key;                /* lower-cased */
    uint32_t hash;            /* policy_key_hash(key): most lookups end on a mismatch here */
    bool live;                /* false: a slot kept for reuse, absent to lookups */
    bool variants;            /* one single-valued key per value (case variants): see cond_holds */
    struct ctx_value *values; /* n values, cap allocated */
    size_t n, cap;
};

/* Slots kept across policy_ctx_clear; beyond it (many distinct keys) the context is emptied. */
#define CTX_KEEP_SLOTS 64

static bool parse_ctx_number(const char *s, double *out);

static void ctx_value_read(struct ctx_value *v, const char *s)
{
    v->s = (char *)s;
    /* Numbers and dates start with a digit or a sign, addresses with a hex digit or ':'. */
    unsigned char c0 = (unsigned char)s[0];
    bool numeric = isdigit(c0) || c0 == '-' || c0 == '+' || c0 == '.';
    v->is_num = numeric && parse_ctx_number(s, &v->num);
    v->is_date = numeric && policy_parse_date(s, &v->ms);
    v->is_ip = (isxdigit(c0) || c0 == ':') && policy_parse_cidr(s, false, &v->ip);
}

struct policy_ctx {
    struct ctx_entry *e; /* n slots in use (live or kept), cap allocated */
    size_t n, cap;
};

coffer_err policy_ctx_new(policy_ctx **out)
{
    ENSURE_REF(out);
    *out = calloc(1, sizeof(**out));
    if (*out == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    return COFFER_OK;
}

static void entry_free(struct ctx_entry *e)
{
    for (size_t i = 0; i < e->cap; i++) {
        free(e->values[i].s_cap > 0 ? e->values[i].s : NULL);
    }
    free(e->values);
    free(e->key);
}

static void ctx_release_slots(policy_ctx *c)
{
    for (size_t i = 0; i < c->n; i++) {
        entry_free(&c->e[i]);
    }
    free(c->e);
    c->e = NULL;
    c->n = c->cap = 0;
}

void policy_ctx_free(policy_ctx *c)
{
    if (c == NULL) {
        return;
    }
    ctx_release_slots(c);
    free(c);
}

void policy_ctx_clear(policy_ctx *c)
{
    if (c == NULL) {
        return;
    }
    if (c->n > CTX_KEEP_SLOTS) {
        ctx_release_slots(c); /* bounded: hostile context keys cannot make a kept context grow */
        return;
    }
    for (size_t i = 0; i < c->n; i++) {
        c->e[i].live = false;
        c->e[i].n = 0;
    }
}

uint32_t policy_key_hash(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a: a cheap filter, not a security boundary */
    for (; *s != '\0'; s++) {
        h = (h ^ (uint8_t)*s) * 16777619u;
    }
    return h;
}

/* `key` must already be lower-cased (compiled condition keys are); `hash` is its hash. */
static struct ctx_entry *ctx_find_h(const policy_ctx *c, const char *key, uint32_t hash)
{
    if (c == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < c->n; i++) {
        if (c->e[i].live && c->e[i].hash == hash && strcmp(c->e[i].key, key) == 0) {
            return &c->e[i];
        }
    }
    return NULL;
}

static struct ctx_entry *ctx_find(const policy_ctx *c, const char *key)
{
    return ctx_find_h(c, key, policy_key_hash(key));
}

/* Lower-cases a caller-supplied key into buf; false when it does not fit. */
static bool lower_key(const char *key, char *buf, size_t cap)
{
    size_t n = strlen(key);
    if (n >= cap) {
        return false;
    }
    for (size_t i = 0; i <= n; i++) {
        buf[i] = (char)tolower((unsigned char)key[i]);
    }
    return true;
}

static coffer_err ctx_entry_get(policy_ctx *c, const char *key, struct ctx_entry **out)
{
    ENSURE_REF(c);
    ENSURE_REF(key);
    char lk[POLICY_MAX_STRING + 1];
    ENSURE(*key != '\0' && lower_key(key, lk, sizeof(lk)), COFFER_ERR_USAGE);
    uint32_t hash = policy_key_hash(lk);
    struct ctx_entry *kept = NULL;
    for (size_t i = 0; i < c->n; i++) {
        struct ctx_entry *e = &c->e[i];
        if (e->hash == hash && strcmp(e->key, lk) == 0) {
            if (!e->live) {
                e->live = true;
                e->n = 0;
                e->variants = false;
            }
            *out = e;
            return COFFER_OK;
        }
        if (!e->live && kept == NULL) {
            kept = e;
        }
    }
    size_t klen = strlen(lk);
    if (kept != NULL && strlen(kept->key) >= klen) {
        memcpy(kept->key, lk, klen + 1); /* reuse a free slot whose key buffer is large enough */
        kept->hash = hash;
        kept->live = true;
        kept->n = 0;
        kept->variants = false;
        *out = kept;
        return COFFER_OK;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 8;
        struct ctx_entry *ne = realloc(c->e, cap * sizeof(*ne));
        if (ne == NULL) {
            return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        }
        c->e = ne;
        c->cap = cap;
    }
    struct ctx_entry *e = &c->e[c->n];
    memset(e, 0, sizeof(*e));
    e->hash = hash;
    e->key = strdup(lk);
    if (e->key == NULL) {
        return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
    }
    e->live = true;
    c->n++;
    *out = e;
    return COFFER_OK;
}

static coffer_err entry_append(struct ctx_entry *e, const char *value)
{
    ENSURE_REF(value);
    ENSURE(e->n < POLICY_MAX_CTX_VALUES, COFFER_ERR_LIMIT);
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 2;
        struct ctx_value *nv = realloc(e->values, cap * sizeof(*nv));
        if (nv == NULL) {
            return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        }
        memset(nv + e->cap, 0, (cap - e->cap) * sizeof(*nv));
        e->values = nv;
        e->cap = cap;
    }
    struct ctx_value *v = &e->values[e->n];
    size_t len = strlen(value);
    if (len + 1 > v->s_cap) {
        size_t want = len + 1 < 32 ? 32 : len + 1;
        char *buf = realloc(v->s_cap > 0 ? v->s : NULL, want);
        if (buf == NULL) {
            return coffer_fail(COFFER_ERR_NOMEM, "out of memory");
        }
        v->s = buf;
        v->s_cap = want;
    }
    memcpy(v->s, value, len + 1);
    char *text = v->s;
    size_t text_cap = v->s_cap;
    ctx_value_read(v, text);
    v->s_cap = text_cap;
    e->n++;
    return COFFER_OK;
}

coffer_err policy_ctx_set(policy_ctx *c, const char *key, const char *const *values, size_t n)
{
    struct ctx_entry *e = NULL;
    ENSURE(n <= POLICY_MAX_CTX_VALUES, COFFER_ERR_LIMIT);
    ENSURE(n == 0 || values != NULL, COFFER_ERR_USAGE);
    TRY(ctx_entry_get(c, key, &e));
    e->n = 0;
    e->variants = false;
    for (size_t i = 0; i < n; i++) {
        TRY(entry_append(e, values[i]));
    }
    return COFFER_OK;
}

coffer_err policy_ctx_add(policy_ctx *c, const char *key, const char *value)
{
    struct ctx_entry *e = NULL;
    TRY(ctx_entry_get(c, key, &e));
    return entry_append(e, value);
}

coffer_err policy_ctx_add_variant(policy_ctx *c, const char *key, const char *value)
{
    struct ctx_entry *e = NULL;
    TRY(ctx_entry_get(c, key, &e));
    e->variants = true;
    return entry_append(e, value);
}

coffer_err policy_ctx_set_str(policy_ctx *c, const char *key, const char *value)
{
    return policy_ctx_set(c, key, &value, 1);
}

coffer_err policy_ctx_set_bool(policy_ctx *c, const char *key, bool value)
{
    return policy_ctx_set_str(c, key, value ? "true" : "false");
}

coffer_err policy_ctx_set_number(policy_ctx *c, const char *key, int64_t value)
{
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%lld", (long long)value);
    return policy_ctx_set_str(c, key, tmp);
}

coffer_err policy_ctx_set_time(policy_ctx *c, const char *key, int64_t epoch_s)
{
    char tmp[64];
    coffer_time_iso8601(epoch_s, tmp, sizeof(tmp));
    return policy_ctx_set_str(c, key, tmp);
}

coffer_err policy_ctx_set_ip(policy_ctx *c, const char *key, const char *ip)
{
    struct policy_cidr tmp;
    ENSURE_REF(ip);
    if (!policy_parse_cidr(ip, false, &tmp)) {
        return coffer_fail(COFFER_ERR_USAGE, "not an IP address");
    }
    return policy_ctx_set_str(c, key, ip);
}

void policy_ctx_unset(policy_ctx *c, const char *key)
{
    char lk[POLICY_MAX_STRING + 1];
    if (key == NULL || !lower_key(key, lk, sizeof(lk))) {
        return;
    }
    struct ctx_entry *e = ctx_find(c, lk);
    if (e == NULL) {
        return;
    }
    e->live = false;
    e->n = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Matching primitives
 * ------------------------------------------------------------------------------------------- */

static inline char fold(char ch, bool icase)
{
    return icase ? (char)tolower((unsigned char)ch) : ch;
}

/*
 * Wildcard matching in time linear in the subject. A pattern is a sequence of segments
 * separated by '*'; the first is anchored at the start of the subject, the last at its end, and
 * every middle one is found at its leftmost place after the previous one (taking the leftmost
 * occurrence never loses a match, since what follows is free to start later). Each segment is
 * searched with the bit-parallel Shift-And automaton, one step per subject byte and 64-bit
 * word of segment, so a subject byte is read by at most one segment search: the cost is
 * O(|pattern| + |subject| * ceil(longest segment / 64)), never the O(|pattern| * |subject|)
 * of backtracking. policy_glob_steps counts those word steps so tests can check the bound.
 */

/* One pattern element: a literal byte or '?'. */
struct glob_tok {
    char c;
    bool any;
};

/* Reads one element of a segment at *p (< pe); false at '*' (segment end). */
static bool glob_next(const char **p, const char *pe, bool esc, struct glob_tok *t)
{
    const char *q = *p;
    if (q >= pe || *q == '*') {
        return false;
    }
    if (esc && q + 1 < pe && *q == POLICY_ESC) {
        t->c = q[1];
        t->any = false;
        *p = q + 2;
        return true;
    }
    t->c = *q;
    t->any = *q == '?';
    *p = q + 1;
    return true;
}

static _Thread_local uint64_t glob_steps;

uint64_t policy_glob_steps(void)
{
    return glob_steps;
}

static _Thread_local uint64_t budget_end; /* glob_steps at which matching stops; 0: no budget */
static _Thread_local bool budget_spent;

void policy_budget_reset(uint64_t steps)
{
    budget_end = steps != 0 ? glob_steps + steps : 0;
    budget_spent = false;
}

bool policy_budget_exhausted(void)
{
    return budget_spent;
}

static bool over_budget(void)
{
    if (budget_end != 0 && glob_steps > budget_end) {
        budget_spent = true;
    }
    return budget_spent;
}

/* Elements in the segment starting at p. */
static size_t seg_len(const char *p, const char *pe, bool esc)
{
    struct glob_tok t;
    size_t n = 0;
    while (glob_next(&p, pe, esc, &t)) {
        n++;
    }
    return n;
}

/* Does the segment at p (n elements) match s[0, n) exactly? */
static bool seg_at(const char *p, const char *pe, const char *s, bool icase, bool esc)
{
    struct glob_tok t;
    while (glob_next(&p, pe, esc, &t)) {
        glob_steps++;
        if (!t.any && fold(t.c, icase) != fold(*s, icase)) {
            return false;
        }
        s++;
    }
    return true;
}

#define GLOB_STACK_WORDS 8 /* segments up to 512 elements match with tables on the stack */

/* The Shift-And tables of one glob call, sized for its longest middle segment. */
struct glob_tab {
    uint64_t *mask;  /* 256 rows of `words`: bit j of row c set when element j is the byte c */
    uint64_t *any;   /* `words`: bit j set when element j is '?' */
    uint64_t *state; /* `words` */
    size_t words;
};

/* Sets (on) or clears (off) the bits of the segment at p in the tables: O(n), not O(256). */
static void seg_table(struct glob_tab *t, const char *p, const char *pe, bool icase, bool esc, bool on)
{
    struct glob_tok e;
    for (size_t j = 0; glob_next(&p, pe, esc, &e); j++) {
        uint64_t bit = 1ull << (j % 64);
        uint64_t *cells[3] = {&t->any[j / 64], NULL, NULL};
        if (!e.any) {
            cells[0] = &t->mask[(size_t)(unsigned char)fold(e.c, icase) * t->words + j / 64];
            if (icase) {
                cells[1] = &t->mask[(size_t)(unsigned char)toupper((unsigned char)e.c) * t->words + j / 64];
            }
        }
        for (size_t k = 0; k < 3 && cells[k] != NULL; k++) {
            *cells[k] = on ? (*cells[k] | bit) : 0;
        }
        glob_steps++;
    }
}

/*
 * Leftmost end of the n-element segment at p within s[0, sn): the offset just past the match,
 * or SIZE_MAX. Shift-And: bit j of the state says "the first j+1 elements match ending here".
 */
static size_t seg_find(struct glob_tab *t, const char *p, const char *pe, size_t n, const char *s, size_t sn,
                       bool icase, bool esc)
{
    size_t words = (n + 63) / 64, found = SIZE_MAX;
    size_t stride = t->words;
    uint64_t last = 1ull << ((n - 1) % 64);
    seg_table(t, p, pe, icase, esc, true);
    memset(t->state, 0, words * sizeof(uint64_t));
    size_t i = 0;
    for (; i < sn; i++) {
        const uint64_t *m = &t->mask[(size_t)(unsigned char)s[i] * stride];
        uint64_t carry = 1; /* a match may start at every position */
        for (size_t w = 0; w < words; w++) {
            uint64_t next_carry = t->state[w] >> 63;
            t->state[w] = ((t->state[w] << 1) | carry) & (m[w] | t->any[w]);
            carry = next_carry;
        }
        if (t->state[words - 1] & last) {
            found = i + 1;
            break;
        }
    }
    glob_steps += (uint64_t)(i < sn ? i + 1 : sn) * words; /* counted once, outside the hot loop */
    seg_table(t, p, pe, icase, esc, false); /* the table is all zero again for the next segment */
    return found;
}

/* Skips the segment at p and the '*' run after it. */
static const char *seg_skip(const char *p, const char *pe, bool esc)
{
    struct glob_tok t;
    while (glob_next(&p, pe, esc, &t)) {
    }
    return p;
}

/* The quadratic fallback when the tables cannot be had: exact, only slower. */
static size_t seg_find_slow(const char *p, const char *pe, size_t n, const char *s, size_t sn, bool icase,
                            bool esc)
{
    for (size_t i = 0; i + n <= sn; i++) {
        if (seg_at(p, pe, s + i, icase, esc)) {
            return i + n;
        }
    }
    return SIZE_MAX;
}

static bool glob_range(const char *pat, size_t pn, const char *s, size_t sn, bool icase, bool esc)
{
    const char *p = pat, *pe = pat + pn;
    /* `last`: the segment after the final '*', anchored at the end; `longest`: of the middle ones */
    const char *last = NULL;
    size_t longest = 0, cur = 0, elems = 0;
    for (const char *q = p; q < pe;) {
        if (*q == '*') {
            if (last != NULL && cur > longest) {
                longest = cur; /* a segment between two stars */
            }
            cur = 0;
            last = ++q;
            continue;
        }
        cur++;
        elems++;
        q += (esc && q + 1 < pe && *q == POLICY_ESC) ? 2 : 1;
    }
    glob_steps += pn;
    if (over_budget()) {
        return false; /* the caller's evaluation is refused as a whole: see policy_budget_reset */
    }
    if (elems > sn) {
        return false; /* too short for the pattern: also keeps the tables below within O(|s|) */
    }
    if (last == NULL) { /* no '*': one anchored segment covering the subject */
        return seg_len(p, pe, esc) == sn && seg_at(p, pe, s, icase, esc);
    }
    size_t n_first = seg_len(p, pe, esc), n_last = seg_len(last, pe, esc);
    if (n_first + n_last > sn || !seg_at(p, pe, s, icase, esc) ||
        !seg_at(last, pe, s + sn - n_last, icase, esc)) {
        return false;
    }
    size_t pos = n_first, end = sn - n_last;
    p = seg_skip(p, pe, esc);
    if (p >= last) {
        return true; /* "a*b": nothing between the anchored ends */
    }
    uint64_t stack_mask[256 * GLOB_STACK_WORDS], stack_any[GLOB_STACK_WORDS], stack_state[GLOB_STACK_WORDS];
    struct glob_tab t = {stack_mask, stack_any, stack_state, (longest + 63) / 64};
    uint64_t *heap = NULL;
    if (t.words > GLOB_STACK_WORDS) {
        heap = calloc(258 * t.words, sizeof(uint64_t));
        t.mask = heap;
        t.any = heap != NULL ? heap + 256 * t.words : NULL;
        t.state = heap != NULL ? heap + 257 * t.words : NULL;
    } else {
        memset(stack_mask, 0, 256 * t.words * sizeof(uint64_t));
        memset(stack_any, 0, sizeof(stack_any));
    }
    glob_steps += 256 * t.words;
    bool ok = true;
    while (ok && p < last) {
        if (over_budget()) {
            ok = false; /* one segment search costs at most |subject| * words: the overshoot is small */
            break;
        }
        if (*p == '*') {
            p++;
            continue;
        }
        size_t n = seg_len(p, pe, esc);
        size_t off = t.mask != NULL ? seg_find(&t, p, pe, n, s + pos, end - pos, icase, esc)
                                    : seg_find_slow(p, pe, n, s + pos, end - pos, icase, esc);
        ok = off != SIZE_MAX;
        pos += ok ? off : 0;
        p = seg_skip(p, pe, esc);
    }
    free(heap);
    return ok;
}

bool policy_glob(const char *pat, const char *s, bool icase, bool esc)
{
    return glob_range(pat, strlen(pat), s, strlen(s), icase, esc);
}

/* Splits off one colon-separated component: [*p, end) and advances *p past the colon. */
static size_t arn_split(const char *s, const char *parts[6], size_t lens[6])
{
    size_t n = 0;
    const char *start = s;
    while (n < 5) {
        const char *colon = strchr(start, ':');
        if (colon == NULL) {
            break;
        }
        parts[n] = start;
        lens[n] = (size_t)(colon - start);
        n++;
        start = colon + 1;
    }
    parts[n] = start;
    lens[n] = strlen(start);
    return n + 1;
}

bool policy_arn_match(const char *pat, const char *s, bool esc)
{
    if (strcmp(pat, "*") == 0) {
        return true;
    }
    const char *pp[6], *sp[6];
    size_t pl[6], sl[6];
    size_t pn = arn_split(pat, pp, pl);
    if (pn < 6) {
        return policy_glob(pat, s, false, esc); /* not a full ARN pattern: whole-string glob */
    }
    size_t sn = arn_split(s, sp, sl);
    if (sn < 6) {
        return false;
    }
    for (size_t i = 0; i < 6; i++) {
        if (!glob_range(pp[i], pl[i], sp[i], sl[i], false, esc)) {
            return false;
        }
    }
    return true;
}

bool policy_parse_cidr(const char *s, bool allow_prefix, struct policy_cidr *out)
{
    char host[64];
    const char *slash = strchr(s, '/');
    size_t hl = slash ? (size_t)(slash - s) : strlen(s);
    if (hl == 0 || hl >= sizeof(host) || (slash != NULL && !allow_prefix)) {
        return false;
    }
    memcpy(host, s, hl);
    host[hl] = '\0';
    memset(out, 0, sizeof(*out));
    unsigned maxbits;
    if (inet_pton(AF_INET, host, out->addr) == 1) {
        out->family = 4;
        maxbits = 32;
    } else if (inet_pton(AF_INET6, host, out->addr) == 1) {
        out->family = 6;
        maxbits = 128;
    } else {
        return false;
    }
    out->prefix = maxbits;
    if (slash != NULL) {
        const char *d = slash + 1;
        size_t dl = strlen(d);
        if (dl == 0 || dl > 3) {
            return false;
        }
        unsigned v = 0;
        for (size_t i = 0; i < dl; i++) {
            if (!isdigit((unsigned char)d[i])) {
                return false;
            }
            v = v * 10 + (unsigned)(d[i] - '0');
        }
        if (v > maxbits) {
            return false;
        }
        out->prefix = v;
    }
    /* mask host bits so that matching compares prefixes only */
    for (unsigned bit = out->prefix; bit < maxbits; bit++) {
        out->addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
    }
    return true;
}

static bool cidr_contains(const struct policy_cidr *net, const struct policy_cidr *ip)
{
    if (net->family != ip->family) {
        return false;
    }
    unsigned full = net->prefix / 8, rest = net->prefix % 8;
    if (memcmp(net->addr, ip->addr, full) != 0) {
        return false;
    }
    if (rest == 0) {
        return true;
    }
    uint8_t mask = (uint8_t)(0xFFu << (8 - rest));
    return (net->addr[full] & mask) == (ip->addr[full] & mask);
}

/* ---------------------------------------------------------------------------------------------
 * Dates: ISO 8601 or epoch seconds
 * ------------------------------------------------------------------------------------------- */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static bool read_digits(const char **p, size_t n, unsigned *out)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i])) {
            return false;
        }
        v = v * 10 + (unsigned)((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool parse_epoch(const char *s, int64_t *ms)
{
    size_t n = strlen(s);
    if (n == 0 || n > 12) {
        return false;
    }
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) {
            return false;
        }
        v = v * 10 + (s[i] - '0');
    }
    *ms = v * 1000;
    return true;
}

static bool parse_tz(const char *p, int64_t *offset_s)
{
    *offset_s = 0;
    if (*p == '\0' || (p[0] == 'Z' && p[1] == '\0')) {
        return true;
    }
    if (*p != '+' && *p != '-') {
        return false;
    }
    int sign = *p == '-' ? -1 : 1;
    p++;
    unsigned hh, mm;
    if (!read_digits(&p, 2, &hh)) {
        return false;
    }
    if (*p == ':') {
        p++;
    }
    if (!read_digits(&p, 2, &mm) || *p != '\0' || hh > 23 || mm > 59) {
        return false;
    }
    *offset_s = sign * (int64_t)(hh * 3600 + mm * 60);
    return true;
}

bool policy_parse_date(const char *s, int64_t *epoch_ms)
{
    if (s == NULL) {
        return false;
    }
    if (strchr(s, '-') == NULL) {
        return parse_epoch(s, epoch_ms);
    }
    const char *p = s;
    unsigned y, mo, d, h = 0, mi = 0, sec = 0, frac = 0;
    if (!read_digits(&p, 4, &y) || *p++ != '-' || !read_digits(&p, 2, &mo) || *p++ != '-' ||
        !read_digits(&p, 2, &d)) {
        return false;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31) {
        return false;
    }
    if (*p == 'T' || *p == 't') {
        p++;
        if (!read_digits(&p, 2, &h) || *p++ != ':' || !read_digits(&p, 2, &mi)) {
            return false;
        }
        if (*p == ':') {
            p++;
            if (!read_digits(&p, 2, &sec)) {
                return false;
            }
            if (*p == '.') {
                p++;
                size_t nd = 0;
                while (isdigit((unsigned char)p[nd])) {
                    if (nd < 3) {
                        frac = frac * 10 + (unsigned)(p[nd] - '0');
                    }
                    nd++;
                }
                if (nd == 0 || nd > 9) {
                    return false;
                }
                for (size_t k = nd; k < 3; k++) {
                    frac *= 10;
                }
                p += nd;
            }
        }
        if (h > 23 || mi > 59 || sec > 60) {
            return false;
        }
    }
    int64_t off = 0;
    if (!parse_tz(p, &off)) {
        return false;
    }
    int64_t days = days_from_civil((int64_t)y, mo, d);
    *epoch_ms = ((days * 86400 + h * 3600 + mi * 60 + sec) - off) * 1000 + frac;
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * Policy variables
 * ------------------------------------------------------------------------------------------- */

struct values_view {
    const struct ctx_value *v;
    size_t n;
    bool present;
    bool variants; /* the values are case variants of one single-valued key */
};

/* Context lookup with the request fields as defaults for the principal keys. */
static struct values_view lookup(const struct policy_request *req, const char *key, uint32_t hash,
                                 struct ctx_value *slot)
{
    struct values_view vv = {NULL, 0, false, false};
    const struct ctx_entry *e = ctx_find_h(req->ctx, key, hash);
    if (e != NULL) {
        vv.v = e->values;
        vv.n = e->n;
        vv.present = true;
        vv.variants = e->variants;
        return vv;
    }
    const char *def = NULL;
    if (strcmp(key, "aws:principalarn") == 0) {
        def = req->principal_arn;
    } else if (strcmp(key, "aws:principalaccount") == 0) {
        def = req->principal_account;
    } else if (strcmp(key, "aws:principaltype") == 0) {
        def = req->principal_type;
    }
    if (def != NULL) {
        ctx_value_read(slot, def);
        vv.v = slot;
        vv.n = 1;
        vv.present = true;
    }
    return vv;
}

/*
 * Expands ${key}, ${*}, ${?}, ${$} into out. With `esc`, the literal specials produced by the
 * escapes and every '*'/'?' inside substituted values are prefixed with POLICY_ESC so that the
 * glob treats them as literals: a user named "*" must not become a wildcard.
 * Returns false when a variable is unknown or multi-valued, or the result is too long.
 */
/*
 * Set when a substitution met a key held as several case variants (policy_ctx_add_variant):
 * which spelling is meant cannot be known, so the element is refused, and a Deny statement whose
 * evaluation met one applies (policy_evaluate): a second spelling must not switch a Deny off.
 */
static _Thread_local bool subst_ambiguous;

static bool substitute(const char *in, const struct policy_request *req, bool esc, char *out, size_t cap)
{
    size_t o = 0;
#define PUT(ch)                                                                                              \
    do {                                                                                                     \
        if (o + 1 >= cap) {                                                                                  \
            return false;                                                                                    \
        }                                                                                                    \
        out[o++] = (ch);                                                                                     \
    } while (0)
    for (const char *p = in; *p != '\0';) {
        if (p[0] != '$' || p[1] != '{') {
            PUT(*p++);
            continue;
        }
        const char *close = strchr(p + 2, '}');
        if (close == NULL) {
            PUT(*p++);
            continue;
        }
        /* ${key} or ${key, 'default'} */
        const char *body = p + 2;
        size_t bl = (size_t)(close - body), kl = bl;
        const char *comma = memchr(body, ',', bl), *dflt = NULL;
        size_t dl = 0;
        if (comma != NULL) {
            kl = (size_t)(comma - body);
            const char *d = comma + 1, *de = close;
            while (d < de && *d == ' ') {
                d++;
            }
            while (de > d && de[-1] == ' ') {
                de--;
            }
            if (de - d < 2 || *d != '\'' || de[-1] != '\'') {
                return false;
            }
            dflt = d + 1;
            dl = (size_t)(de - d - 2);
        }
        while (kl > 0 && body[kl - 1] == ' ') {
            kl--;
        }
        char key[256];
        if (kl == 0 || kl >= sizeof(key)) {
            return false;
        }
        for (size_t i = 0; i < kl; i++) {
            key[i] = (char)tolower((unsigned char)body[i]); /* variable names are case-insensitive */
        }
        key[kl] = '\0';
        p = close + 1;
        if (kl == 1 && comma == NULL && (key[0] == '*' || key[0] == '?' || key[0] == '$')) {
            if (esc) {
                PUT(POLICY_ESC);
            }
            PUT(key[0]);
            continue;
        }
        struct ctx_value slot;
        struct values_view vv = lookup(req, key, policy_key_hash(key), &slot);
        if (vv.variants && vv.n > 1) {
            subst_ambiguous = true;
            return false;
        }
        const char *val = vv.n == 1 ? vv.v[0].s : NULL;
        size_t vl = val != NULL ? strlen(val) : dl;
        if (val == NULL && dflt == NULL) {
            return false; /* unknown or multi-valued: the element does not match */
        }
        if (val == NULL) {
            val = dflt;
        }
        for (size_t i = 0; i < vl; i++) {
            if (esc && (val[i] == '*' || val[i] == '?')) {
                PUT(POLICY_ESC);
            }
            PUT(val[i]);
        }
    }
    out[o] = '\0';
    return true;
#undef PUT
}

/* ---------------------------------------------------------------------------------------------
 * Statement elements
 * ------------------------------------------------------------------------------------------- */

/* `action` is lower-cased by the caller when it fits, so `icase` is usually false. */
static bool action_matches(const struct statement *st, const char *action, bool icase)
{
    bool any = false;
    for (size_t i = 0; i < st->n_actions && !any; i++) {
        const struct pattern *pt = &st->actions[i];
        any = pt->literal && !icase ? strcmp(pt->s, action) == 0 : policy_glob(pt->s, action, icase, false);
    }
    return st->not_action ? !any : any;
}

static bool resource_matches(const struct statement *st, const struct policy_request *req)
{
    if (!st->has_resource) {
        return true;
    }
    const char *res = req->resource ? req->resource : "";
    bool any = false;
    for (size_t i = 0; i < st->n_resources && !any; i++) {
        const struct pattern *pt = &st->resources[i];
        if (pt->literal) {
            any = strcmp(pt->s, res) == 0;
            continue;
        }
        if (!pt->has_var) {
            any = policy_arn_match(pt->s, res, false);
            continue;
        }
        char buf[POLICY_MAX_STRING * 2 + 2];
        any = substitute(pt->s, req, true, buf, sizeof(buf)) && policy_arn_match(buf, res, true);
    }
    return st->not_resource ? !any : any;
}

static bool same_account_root(const char *arn, const char *acct)
{
    char root[64];
    snprintf(root, sizeof(root), "arn:aws:iam::%s:root", acct);
    return arn != NULL && strcmp(arn, root) == 0;
}

/*
 * Does a user or role entry bound to a unique id name the caller? The user itself ("AIDA..."), or
 * a session of the role ("AROA...:SESSION"); a name reused by a new entity has a new id.
 */
static bool principal_uid_names(const struct principal *pe, const char *caller_uid)
{
    if (caller_uid == NULL) {
        return false;
    }
    size_t n = strlen(pe->uid);
    return strncmp(caller_uid, pe->uid, n) == 0 && (caller_uid[n] == '\0' || caller_uid[n] == ':');
}

/* An ARN entry names `arn` (the caller's or its role's): by unique id once bound, else by ARN. */
static bool principal_arn_names(const struct principal *pe, const char *arn, const struct policy_request *req)
{
    if (arn == NULL || strcmp(arn, pe->s) != 0) {
        return false;
    }
    return pe->uid == NULL || principal_uid_names(pe, req->principal_id);
}

static bool principal_entry_matches(const struct principal *pe, const struct policy_request *req)
{
    switch (pe->kind) {
    case PRINCIPAL_ANY:
        return true;
    case PRINCIPAL_ACCOUNT:
        return req->principal_account != NULL && req->principal_arn != NULL &&
               strcmp(req->principal_account, pe->s) == 0 &&
               (req->principal_type == NULL || strcmp(req->principal_type, "Service") != 0);
    case PRINCIPAL_ARN:
        return principal_arn_names(pe, req->principal_arn, req) ||
               principal_arn_names(pe, req->principal_role_arn, req);
    case PRINCIPAL_SERVICE:
        return req->principal_type != NULL && strcmp(req->principal_type, "Service") == 0 &&
               req->principal_arn != NULL && strcasecmp(req->principal_arn, pe->s) == 0;
    case PRINCIPAL_OTHER:
        return false;
    }
    return false;
}

/* Is one identity facet (an ARN or an account) named by a NotPrincipal list? */
static bool np_lists_arn(const struct statement *st, const char *arn, const struct policy_request *req)
{
    for (size_t i = 0; i < st->n_principals; i++) {
        const struct principal *pe = &st->principals[i];
        if (pe->kind == PRINCIPAL_ANY) {
            return true;
        }
        if (pe->kind == PRINCIPAL_ARN && principal_arn_names(pe, arn, req)) {
            return true;
        }
        if (pe->kind == PRINCIPAL_ACCOUNT && same_account_root(arn, pe->s)) {
            return true;
        }
        if (pe->kind == PRINCIPAL_SERVICE && strcasecmp(pe->s, arn) == 0) {
            return true;
        }
    }
    return false;
}

static bool np_lists_account(const struct statement *st, const char *acct)
{
    for (size_t i = 0; i < st->n_principals; i++) {
        const struct principal *pe = &st->principals[i];
        if (pe->kind == PRINCIPAL_ANY || (pe->kind == PRINCIPAL_ACCOUNT && strcmp(pe->s, acct) == 0)) {
            return true;
        }
    }
    return false;
}

/*
 * NotPrincipal excludes a caller only when every identity it acts as is listed: the user or
 * session ARN, the role behind a session, and its account, as AWS documents for Deny with
 * NotPrincipal (listing a user without its account still denies the user through the account).
 */
static bool not_principal_excludes(const struct statement *st, const struct policy_request *req)
{
    if (req->principal_arn == NULL) {
        return false;
    }
    if (!np_lists_arn(st, req->principal_arn, req)) {
        return false;
    }
    if (req->principal_role_arn != NULL && !np_lists_arn(st, req->principal_role_arn, req)) {
        return false;
    }
    if (req->principal_account != NULL && !same_account_root(req->principal_arn, req->principal_account) &&
        (req->principal_type == NULL || strcmp(req->principal_type, "Service") != 0) &&
        !np_lists_account(st, req->principal_account)) {
        return false;
    }
    return true;
}

static bool principal_matches(const struct statement *st, const struct policy_request *req)
{
    if (!st->has_principal) {
        return true;
    }
    if (st->not_principal) {
        if (req->principal_arn == NULL) {
            for (size_t i = 0; i < st->n_principals; i++) {
                if (st->principals[i].kind == PRINCIPAL_ANY) {
                    return false;
                }
            }
            return true;
        }
        return !not_principal_excludes(st, req);
    }
    for (size_t i = 0; i < st->n_principals; i++) {
        if (principal_entry_matches(&st->principals[i], req)) {
            return true;
        }
    }
    return false;
}

/* ---------------------------------------------------------------------------------------------
 * Conditions
 * ------------------------------------------------------------------------------------------- */

static bool parse_ctx_number(const char *s, double *out)
{
    if (*s == '\0' || isspace((unsigned char)*s)) {
        return false;
    }
    char *end = NULL;
    double d = strtod(s, &end);
    if (*end != '\0' || d != d) {
        return false;
    }
    *out = d;
    return true;
}

/* Does the context value `v` match the policy value `pv` under the (un-negated) base operator? */
static bool value_matches(const struct policy_cond *c, const struct cond_value *pv,
                          const struct ctx_value *cv, const struct policy_request *req)
{
    char buf[POLICY_MAX_STRING * 2 + 2];
    const char *ps = pv->s;
    bool wild = c->base == COND_STR_LIKE || c->base == COND_ARN_LIKE;
    if (pv->has_var) {
        if (!substitute(pv->s, req, wild, buf, sizeof(buf))) {
            return false;
        }
        ps = buf;
    }
    const char *v = cv->s;
    switch (c->base) {
    case COND_STR_EQ:
        return strcmp(ps, v) == 0;
    case COND_STR_EQ_IC:
        return strcasecmp(ps, v) == 0;
    case COND_STR_LIKE:
        return policy_glob(ps, v, false, pv->has_var);
    case COND_ARN_LIKE:
        return strncmp(v, "arn:", 4) == 0 && policy_arn_match(ps, v, pv->has_var);
    case COND_NUM_EQ:
        return cv->is_num && cv->num == pv->v.num;
    case COND_NUM_LT:
        return cv->is_num && cv->num < pv->v.num;
    case COND_NUM_LE:
        return cv->is_num && cv->num <= pv->v.num;
    case COND_NUM_GT:
        return cv->is_num && cv->num > pv->v.num;
    case COND_NUM_GE:
        return cv->is_num && cv->num >= pv->v.num;
    case COND_DATE_EQ:
        return cv->is_date && cv->ms == pv->v.ms;
    case COND_DATE_LT:
        return cv->is_date && cv->ms < pv->v.ms;
    case COND_DATE_LE:
        return cv->is_date && cv->ms <= pv->v.ms;
    case COND_DATE_GT:
        return cv->is_date && cv->ms > pv->v.ms;
    case COND_DATE_GE:
        return cv->is_date && cv->ms >= pv->v.ms;
    case COND_BOOL:
        return (strcasecmp(v, "true") == 0 && pv->v.b) || (strcasecmp(v, "false") == 0 && !pv->v.b);
    case COND_IP:
        return cv->is_ip && cidr_contains(&pv->v.ip, &cv->ip);
    case COND_NULL:
        return false;
    }
    return false;
}

/* One context value against the policy's values: values OR, negation applied per value. */
static bool one_value(const struct policy_cond *c, const struct ctx_value *v,
                      const struct policy_request *req)
{
    bool any = false;
    for (size_t i = 0; i < c->n_values && !any; i++) {
        any = value_matches(c, &c->values[i], v, req);
    }
    return c->negated ? !any : any;
}

/*
 * One condition over the values of its key. A key the request context does not hold -- one
 * this server never sets (aws:TokenIssueTime for long-term keys, aws:PrincipalTag/... with
 * untagged principals) or one it does not know at all -- is absent, and evaluates exactly as
 * AWS documents for an absent key: a positive operator is false, a negated one (StringNotEquals,
 * NotIpAddress, ...) true, any ...IfExists true, Null:true true and Null:false false,
 * ForAllValues true (vacuously) and ForAnyValue false. So a Deny guardrail on an unknown key
 * written with a negated operator, IfExists or Null fires rather than being silently skipped.
 */
static bool cond_holds_view(const struct policy_cond *c, struct values_view vv,
                            const struct policy_request *req)
{
    if (c->base == COND_NULL) {
        /* "Null": true asks that the key be absent, false that it be present */
        bool absent = !vv.present || vv.n == 0;
        return c->values[0].v.b ? absent : !absent;
    }
    if (c->set == COND_SET_ALL) {
        for (size_t i = 0; i < vv.n; i++) {
            if (!one_value(c, &vv.v[i], req)) {
                return false;
            }
        }
        return true; /* vacuously true on an empty or missing set, as AWS documents */
    }
    if (!vv.present || vv.n == 0) {
        if (c->if_exists) {
            return true;
        }
        return c->set == COND_SET_ANY ? false : c->negated;
    }
    if (c->set == COND_SET_ANY || !c->negated) {
        for (size_t i = 0; i < vv.n; i++) {
            if (one_value(c, &vv.v[i], req)) {
                return true;
            }
        }
        return false;
    }
    /* plain negated operator on a (possibly multi-valued) key: no context value matches */
    for (size_t i = 0; i < vv.n; i++) {
        if (!one_value(c, &vv.v[i], req)) {
            return false;
        }
    }
    return true;
}

/*
 * Case variants: condition-key names are case-insensitive but request data is not, so an
 * encryption context {"classification":"secret","Classification":"x"} gives one key two
 * values. Each is evaluated as if it were the key's only value; a Deny applies when any variant
 * satisfies the condition and an Allow only when every variant does, so a second spelling can
 * neither hide the value a Deny looks for nor lend an Allow the value it wants.
 */
static bool cond_holds(const struct policy_cond *c, const struct policy_request *req, bool deny)
{
    struct ctx_value slot;
    struct values_view vv = lookup(req, c->key, c->key_hash, &slot);
    if (!vv.variants || vv.n <= 1 || c->base == COND_NULL) {
        return cond_holds_view(c, vv, req);
    }
    for (size_t i = 0; i < vv.n; i++) {
        struct values_view one = {&vv.v[i], 1, true, false};
        if (cond_holds_view(c, one, req) == deny) {
            return deny; /* Deny: one variant suffices; Allow: one failing variant refuses */
        }
    }
    return !deny;
}

/* ---------------------------------------------------------------------------------------------
 * Evaluation
 * ------------------------------------------------------------------------------------------- */

static bool statement_applies(const struct statement *st, const struct policy_request *req,
                              const char *action, bool icase)
{
    if (!action_matches(st, action, icase)) {
        return false;
    }
    if (!resource_matches(st, req) || !principal_matches(st, req)) {
        return false;
    }
    for (size_t i = 0; i < st->n_conds; i++) {
        if (!cond_holds(&st->conds[i], req, st->deny)) {
            return false;
        }
    }
    return true;
}

enum policy_decision policy_evaluate(const policy *p, const struct policy_request *req)
{
    enum policy_decision d = POLICY_NOT_APPLICABLE;
    /* lower-case the action once so that every statement compares bytes */
    char action[256];
    const char *act = req->action ? req->action : "";
    bool icase = !lower_key(act, action, sizeof(action));
    if (!icase) {
        act = action;
    }
    for (size_t i = 0; i < p->n_stmts; i++) {
        const struct statement *st = &p->stmts[i];
        if (!st->deny && d == POLICY_ALLOW) {
            continue; /* already allowed: only a Deny can change the outcome */
        }
        subst_ambiguous = false;
        bool applies = statement_applies(st, req, act, icase);
        if (!applies && st->deny && subst_ambiguous) {
            applies = true; /* a variable over case variants: the Deny is not switched off */
        }
        if (budget_spent) {
            return POLICY_DENY_EXPLICIT; /* not evaluated in full: fail closed */
        }
        if (!applies) {
            continue;
        }
        if (st->deny) {
            return POLICY_DENY_EXPLICIT;
        }
        d = POLICY_ALLOW;
    }
    return d;
}

enum policy_decision policy_combine(const enum policy_decision *d, size_t n)
{
    enum policy_decision out = POLICY_NOT_APPLICABLE;
    for (size_t i = 0; i < n; i++) {
        if (d[i] == POLICY_DENY_EXPLICIT) {
            return POLICY_DENY_EXPLICIT;
        }
        if (d[i] == POLICY_ALLOW) {
            out = POLICY_ALLOW;
        }
    }
    return out;
}

enum policy_decision policy_evaluate_all(const policy *const *ps, size_t n, const struct policy_request *req)
{
    enum policy_decision out = POLICY_NOT_APPLICABLE;
    for (size_t i = 0; i < n; i++) {
        if (ps == NULL || ps[i] == NULL) {
            continue;
        }
        enum policy_decision d = policy_evaluate(ps[i], req);
        if (d == POLICY_DENY_EXPLICIT) {
            return d;
        }
        if (d == POLICY_ALLOW) {
            out = d;
        }
    }
    return out;
}

const char *policy_decision_name(enum policy_decision d)
{
    switch (d) {
    case POLICY_ALLOW:
        return "Allow";
    case POLICY_DENY_EXPLICIT:
        return "ExplicitDeny";
    case POLICY_NOT_APPLICABLE:
        return "ImplicitDeny";
    }
    return "ImplicitDeny";
}
