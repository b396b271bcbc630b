/*
 * cofferd: opens the data dir (store, root key, barrier, credentials, audit trail), makes the
 * TLS material and the operator's credentials on first start, starts the identity services and
 * every registered service module (server/services.c), the listener workers and the scheduler
 * of the services' jobs, and shuts down gracefully on SIGTERM/SIGINT.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "audit/audit.h"
#include "common/log.h"
#include "common/secret.h"
#include "common/timeutil.h"
#include "http/pipeline.h"
#include "http/server.h"
#include "http/tls.h"
#include "iam/authz.h"
#include "iam/credentials.h"
#include "iam/directory.h"
#include "iam/iam_service.h"
#include "quota/quota.h"
#include "seal/seal.h"
#include "server/audit_key.h"
#include "server/audit_kms.h"
#include "seal/seal_provider.h"
#include "server/config.h"
#include "server/services.h"
#include "store/store.h"

#define BOOTSTRAP_MARKER "server/bootstrap"
#define ADMIN_PROFILE "coffer"

#define SCHEDULER_MAX_JOBS 32
#define IDENTITY_SERVICES 3 /* IAM, STS, CofferAdmin */

/* One job of a service and when it last ran. */
struct scheduled {
    const struct api_job *job;
    int64_t last_ms;
};

/* Runs the jobs every registered service declares (api_service.jobs), one tick every interval_s. */
struct scheduler {
    pthread_t thread;
    store *st; /* the bare store: its lease says whether this node runs the jobs */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    int interval_s;
    struct scheduled jobs[SCHEDULER_MAX_JOBS];
    size_t n_jobs;
};

/* Services' own events (the KMS sweeper's deletions) go to the trail like any request's. */
static coffer_err trail_append_event(void *ctx, json_t *event)
{
    return audit_trail_append(ctx, event);
}

static coffer_err scheduler_add_jobs(struct scheduler *s, const struct api_service *svc, int64_t now_ms)
{
    for (size_t i = 0; i < svc->n_jobs; i++) {
        if (s->n_jobs == SCHEDULER_MAX_JOBS) {
            return coffer_fail(COFFER_ERR_CONFIG, "more than %d scheduled jobs", SCHEDULER_MAX_JOBS);
        }
        s->jobs[s->n_jobs++] = (struct scheduled){.job = &svc->jobs[i], .last_ms = now_ms};
    }
    return COFFER_OK;
}

/* Once per process: secret blocks that may be swapped out deserve an operator's attention. */
static void report_secret_lock_failure(void)
{
    if (coffer_secret_lock_failed()) {
        log_warn("cannot lock secret memory (mlock; raise RLIMIT_MEMLOCK, e.g. LimitMEMLOCK=): keys may be "
                 "swapped to disk");
    }
}

static void scheduler_tick(struct scheduler *s)
{
    report_secret_lock_failure();
    /* Nodes sharing a database: only the lease holder runs time-driven work, so a deletion or a
     * rotation happens once. The others keep asking, to take over when the holder dies. */
    if (!store_scheduler_lease(s->st)) {
        return;
    }
    for (size_t i = 0; i < s->n_jobs; i++) {
        struct scheduled *j = &s->jobs[i];
        int64_t now_ms = coffer_now_ms();
        if (j->job->period_s > 0 && now_ms - j->last_ms < (int64_t)j->job->period_s * 1000) {
            continue;
        }
        j->last_ms = now_ms;
        if (j->job->fn(j->job->ctx, now_ms) != COFFER_OK) {
            log_warn("scheduler: %s failed: %s", j->job->name, coffer_last_message());
        }
    }
}

static void *scheduler_main(void *arg)
{
    struct scheduler *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += s->interval_s;
        pthread_cond_timedwait(&s->cond, &s->lock, &until);
        if (s->stop) {
            break;
        }
        pthread_mutex_unlock(&s->lock);
        scheduler_tick(s);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static coffer_err write_private_file(const char *path, const char *text)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        return coffer_fail(COFFER_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    }
    size_t len = strlen(text);
    ssize_t w = write(fd, text, len);
    int ok = w == (ssize_t)len && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return coffer_fail(COFFER_ERR_IO, "cannot write %s", path);
    }
    return COFFER_OK;
}

/*
 * First start: an administrator access key for the default account, written as an AWS shared
 * credentials file (and a config file with the region) that the AWS CLI and SDKs read.
 */
static coffer_err bootstrap_credentials(const struct server_config *cfg, store *st, iam_creds *creds)
{
    coffer_err rc = COFFER_OK;
    coffer_buf marker = COFFER_BUF_INIT, secret = COFFER_SECRET_BUF_INIT, text = COFFER_SECRET_BUF_INIT;
    store_txn *txn = NULL;
    char path[PATH_MAX], cfg_path[PATH_MAX], akid[IAM_ACCESS_KEY_ID_LEN + 1];

    snprintf(path, sizeof(path), "%s/credentials", cfg->data_dir);
    snprintf(cfg_path, sizeof(cfg_path), "%s/config", cfg->data_dir);
    coffer_err got = store_get(st, BOOTSTRAP_MARKER, &marker);
    if (got == COFFER_OK && access(path, F_OK) == 0) {
        log_info("operator credentials: %s (profile %s)", path, ADMIN_PROFILE);
        goto out;
    }
    if (got != COFFER_OK && got != COFFER_ERR_NOT_FOUND) {
        rc = got;
        goto out;
    }
    char root_arn[AWS_ROOT_ARN_LEN + 1];
    snprintf(root_arn, sizeof(root_arn), "arn:aws:iam::%s:root", CONFIG_DEFAULT_ACCOUNT);
    TRY_OUT(iam_creds_create(creds, CONFIG_DEFAULT_ACCOUNT, root_arn, API_PRINCIPAL_ROOT, akid, &secret));
    TRY_OUT(coffer_buf_printf(&text, "[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n",
                              ADMIN_PROFILE, akid, (const char *)secret.data));
    TRY_OUT(coffer_buf_nul_terminate(&text));
    TRY_OUT(write_private_file(path, (const char *)text.data));
    char config_text[256];
    snprintf(config_text, sizeof(config_text), "[profile %s]\nregion = %s\noutput = json\n", ADMIN_PROFILE,
             cfg->region);
    TRY_OUT(write_private_file(cfg_path, config_text));
    TRY_OUT(store_txn_begin(st, &txn));
    TRY_OUT(store_txn_put(txn, BOOTSTRAP_MARKER, coffer_cursor_from_str(akid)));
    rc = store_txn_commit(txn);
    txn = NULL;
    TRY_OUT(rc);
    log_info("created operator credentials for account %s: %s (profile %s), region config %s",
             CONFIG_DEFAULT_ACCOUNT, path, ADMIN_PROFILE, cfg_path);
out:
    store_txn_abort(txn);
    coffer_buf_free(&marker);
    coffer_buf_free(&secret);
    coffer_buf_free(&text);
    return rc;
}

/*
 * DIR/endpoint: the URL clients on this machine reach us at (`coffer admin` reads it), written
 * once the listener is up.
 */
static coffer_err write_endpoint_file(const struct server_config *cfg, bool tls, int port)
{
    char path[PATH_MAX], url[512];
    const char *h = cfg->listen_host;
    bool any4 = h[0] == '\0' || strcmp(h, "0.0.0.0") == 0, any6 = strcmp(h, "::") == 0;
    const char *host = any4 ? "127.0.0.1" : any6 ? "::1" : h;
    bool v6 = strchr(host, ':') != NULL;
    snprintf(url, sizeof(url), "%s://%s%s%s:%d\n", tls ? "https" : "http", v6 ? "[" : "", host, v6 ? "]" : "",
             port);
    snprintf(path, sizeof(path), "%s/endpoint", cfg->data_dir);
    return write_private_file(path, url);
}

static coffer_err ensure_dir(const char *path)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        return coffer_fail(COFFER_ERR_IO, "cannot create directory %s: %s", path, strerror(errno));
    }
    return COFFER_OK;
}

/* One started service module. */
struct running_service {
    const struct api_module *module;
    void *instance;
};

/* The services started so far, for api_host.lookup. */
struct started_services {
    const struct running_service *run;
    const size_t *n;
};

static const void *service_lookup(void *ctx, const char *module_name)
{
    const struct started_services *started = ctx;
    for (size_t i = 0; i < *started->n; i++) {
        const struct running_service *r = &started->run[i];
        if (strcmp(r->module->name, module_name) == 0 && r->module->interface != NULL) {
            return r->module->interface(r->instance);
        }
    }
    return NULL;
}

static void services_stop(struct running_service *run, size_t n)
{
    while (n > 0) {
        n--;
        run[n].module->stop(run[n].instance);
    }
}

int cofferd_main(int argc, char **argv, const struct api_module *const *extra, size_t n_extra)
{
    struct server_config cfg;
    struct server_audit_kms audit_kms = {0}; /* the encrypted trail's key source, once KMS is up */
    coffer_err rc = COFFER_OK;
    store *st = NULL, *records = NULL; /* the bare store (the seal's keyring) and its sealed view */
    seal *sl = NULL;
    iam_creds *creds = NULL;
    iam_directory *dir = NULL;
    iam_services *identity = NULL;
    audit_trail *trail = NULL;
    crypto_pkey *audit_key = NULL; /* signs the trail's digests; outlives the trail */
    audit_limiter *unauth_limit = NULL;
    quota *q = NULL;
    struct running_service running[PIPELINE_MAX_SERVICES];
    size_t n_running = 0;
    authz *az = NULL;
    http_server *http = NULL;
    SSL_CTX *tls = NULL;
    struct scheduler sched = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    bool sched_started = false;
    char path[PATH_MAX], path2[PATH_MAX];
    int lock_fd = -1;

    /* JSON values hold request and response secrets (Plaintext, SecretAccessKey, the lexer's
     * token buffer while parsing): every block jansson frees is wiped first. */
    json_set_alloc_funcs(malloc, coffer_wipe_free);
    if (server_config_load(&cfg, argc, argv) != COFFER_OK) {
        fprintf(stderr, "cofferd: %s\n", coffer_last_message());
        return 2;
    }
    int lvl = coffer_log_level_parse(cfg.log_level);
    if (lvl < 0) {
        fprintf(stderr, "cofferd: unknown log level '%s'\n", cfg.log_level);
        return 2;
    }
    coffer_log_set_level((enum coffer_log_level)lvl);
    if (coffer_process_harden() != 0) {
        log_warn("could not disable core dumps");
    }
    signal(SIGPIPE, SIG_IGN);
    umask(077);
    /* Block the stop signals in every thread (workers inherit the mask); main waits for them. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

    TRY_OUT(ensure_dir(cfg.data_dir));
    if (strcmp(cfg.store, "sqlite") == 0) {
        snprintf(path, sizeof(path), "sqlite:%s/coffer.db", cfg.data_dir);
        TRY_OUT(store_open(path, &st));
    } else {
        /* Records in a shared database; DIR still holds this deployment's root key, TLS CA and
         * audit trail, which every node of it has a copy of. */
        TRY_OUT(store_open(cfg.store, &st));
    }
    /* Held shared while we run: `coffer seal migrate` takes it exclusive and so never re-wraps
     * the keyring under a running server. */
    TRY_OUT(seal_dir_lock(cfg.data_dir, false, &lock_fd));
    /* A root key file is made only for a data dir without a keyring: for one that has a keyring,
     * a missing file is a missing key, and a start with the wrong provider leaves nothing behind. */
    bool fresh = false;
    TRY_OUT(seal_spec_check(st, cfg.seal, &fresh));
    struct seal_provider *root = NULL;
    TRY_OUT(seal_provider_from_spec(cfg.seal, cfg.data_dir, fresh, &root));
    TRY_OUT(seal_open(root, st, &sl)); /* fails closed: nothing below runs unsealed */
    /* Everything below the seal reads and writes through the barrier: no record in clear. */
    TRY_OUT(seal_store_wrap(sl, st, &records));
    TRY_OUT(iam_creds_new(records, sl, &creds));
    TRY_OUT(bootstrap_credentials(&cfg, records, creds));
    TRY_OUT(iam_directory_new(records, creds, &dir));
    /* Sessions end with their role, whether or not policies are enforced. */
    struct iam_identity_source roles = iam_directory_identity_source(dir);
    iam_creds_set_session_roles(creds, &roles);
    iam_directory_set_limits(dir, &cfg.iam_limits);
    TRY_OUT(iam_dir_account_ensure(dir, CONFIG_DEFAULT_ACCOUNT, "operator", coffer_now_ms() / 1000));
    TRY_OUT(iam_services_new(dir, creds, CONFIG_DEFAULT_ACCOUNT, &identity));
    snprintf(path, sizeof(path), "%s/audit", cfg.data_dir);
    TRY_OUT(ensure_dir(path));
    if (cfg.node_id[0] == '\0') {
        /* The node this trail's digests are of, else one derived from the host and the dir. */
        bool recorded = false;
        TRY_OUT(audit_trail_recorded_node(path, cfg.node_id, &recorded));
        if (!recorded) {
            TRY_OUT(server_node_id_default(cfg.data_dir, cfg.node_id));
        }
    }
    /* Each node signs its own digest chain with its own key, sealed in the store. */
    TRY_OUT(server_audit_key_load(records, cfg.node_id, &audit_key));
    struct audit_trail_options trail_opts = {
        .node_id = cfg.node_id,
        .sign_key = audit_key,
        .period_ms = cfg.audit_period_ms,
        .encrypted = cfg.audit_kms_key_id[0] != '\0',
    };
    TRY_OUT(audit_trail_open_ex(path, &trail_opts, &trail));
    log_info("audit: node %s, digests every %u ms", cfg.node_id, cfg.audit_period_ms);
    struct audit_limit_options limit_opts = {
        .per_source = cfg.audit_unauth_per_source,
        .total = cfg.audit_unauth_total,
        .window_s = cfg.audit_unauth_window_s,
    };
    TRY_OUT(audit_limiter_new(&limit_opts, &unauth_limit));
    q = quota_new(cfg.quota_crypto_rps);
    if (cfg.authorization) {
        struct iam_identity_source identities = iam_directory_identity_source(dir);
        TRY_OUT(authz_new(&identities, &az));
    }

    if (!cfg.insecure_http) {
        if (cfg.tls_cert[0] == '\0') {
            snprintf(path, sizeof(path), "%s/tls", cfg.data_dir);
            TRY_OUT(tls_ensure_certificates(path));
            snprintf(path, sizeof(path), "%s/tls/%s", cfg.data_dir, TLS_CERT_FILE);
            snprintf(path2, sizeof(path2), "%s/tls/%s", cfg.data_dir, TLS_KEY_FILE);
            TRY_OUT(tls_server_ctx_new(path, path2, &tls));
        } else {
            TRY_OUT(tls_server_ctx_new(cfg.tls_cert, cfg.tls_key, &tls));
        }
    } else {
        log_warn("serving plain HTTP (--insecure-http): credentials and keys cross the network unencrypted");
    }

    struct pipeline pipe = {
        .region = cfg.region,
        .lookup = iam_creds_lookup,
        .lookup_ctx = creds,
        .max_skew_s = SIGV4_DEFAULT_SKEW_S,
        .quota = q,
        .trail = trail,
        .unauth_limit = unauth_limit,
    };
    /* The registered services first: the first answers requests that no service claims. */
    struct server_service services[PIPELINE_MAX_SERVICES];
    size_t n_services = server_services(&cfg, services, PIPELINE_MAX_SERVICES);
    if (n_services + n_extra + IDENTITY_SERVICES > PIPELINE_MAX_SERVICES) {
        FAIL_OUT(COFFER_ERR_CONFIG, "more than %d services", PIPELINE_MAX_SERVICES);
    }
    for (size_t i = 0; i < n_extra; i++) {
        services[n_services++] = (struct server_service){.module = extra[i]};
    }
    struct started_services started = {.run = running, .n = &n_running};
    for (size_t i = 0; i < n_services; i++) {
        struct api_host host = {
            .store = records, /* the sealed view: a service never writes a record in clear */
            .seal = sl,
            .region = cfg.region,
            .authz = az,
            .record = trail_append_event,
            .record_ctx = trail,
            .trail = trail,
            .settings = services[i].settings,
            .data_dir = cfg.data_dir,
            .lookup = service_lookup,
            .lookup_ctx = &started,
        };
        const struct api_service *api = NULL;
        running[n_running].module = services[i].module;
        TRY_OUT(services[i].module->start(&host, &running[n_running].instance, &api));
        n_running++;
        pipe.services[pipe.n_services++] = api;
    }
    pipe.services[pipe.n_services++] = iam_services_iam_api(identity);
    pipe.services[pipe.n_services++] = iam_services_sts_api(identity);
    pipe.services[pipe.n_services++] = iam_services_admin_api(identity);
    /* A service's operations are found by binary search: a table out of order or with a name
     * twice would make some of them unreachable, so such a service stops the start. */
    for (size_t i = 0; i < pipe.n_services; i++) {
        if (api_ops_check(pipe.services[i]->ops, pipe.services[i]->n_ops) != COFFER_OK) {
            char why[256]; /* the detail lives in the buffer the next failure writes */
            snprintf(why, sizeof(why), "%s", coffer_last_message());
            FAIL_OUT(COFFER_ERR_CONFIG, "service \"%s\": %s", pipe.services[i]->signing_name, why);
        }
    }

    if (cfg.audit_kms_key_id[0] != '\0') {
        /* KMS is up now: the events so far (the start, this first key's GenerateDataKey) stay
         * in a plaintext file of their own; from here on every event is sealed. Before serving,
         * so no client request is ever recorded in clear. */
        const struct kms_api *kms = service_lookup(&started, "kms");
        if (kms == NULL) {
            FAIL_OUT(COFFER_ERR_CONFIG, "--audit-kms-key-id needs the KMS service");
        }
        server_audit_kms_init(&audit_kms, kms, cfg.audit_kms_key_id, cfg.region);
        TRY_OUT(audit_trail_start_encryption(trail, &audit_kms.source));
        log_info("audit: trail files encrypted under %s", cfg.audit_kms_key_id);
    }

    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    struct http_server_config hcfg = {
        .listen_host = cfg.listen_host,
        .listen_port = cfg.listen_port,
        .workers = cfg.workers > 0 ? cfg.workers : (ncpu > 0 ? (int)ncpu : 2),
        .tls = tls,
        .max_body = cfg.max_body,
        .max_headers = 64 * 1024,
        .timeout_s = cfg.timeout_s,
        .max_connections = cfg.max_connections,
        .handler = pipeline_handle,
        .handler_ctx = &pipe,
        .pass_end = pipeline_pass_end,
    };
    TRY_OUT(http_server_start(&hcfg, &http));
    TRY_OUT(write_endpoint_file(&cfg, tls != NULL, http_server_port(http)));

    sched.interval_s = cfg.sweep_interval_s;
    sched.st = st;
    for (size_t i = 0; i < pipe.n_services; i++) {
        TRY_OUT(scheduler_add_jobs(&sched, pipe.services[i], coffer_now_ms()));
    }
    if (pthread_create(&sched.thread, NULL, scheduler_main, &sched) != 0) {
        FAIL_OUT(COFFER_ERR_INTERNAL, "cannot start the scheduler");
    }
    sched_started = true;

    log_info("cofferd listening on %s://%s:%d (region %s, %d workers, data %s, store %s)",
             tls ? "https" : "http", cfg.listen_host, http_server_port(http), cfg.region, hcfg.workers,
             cfg.data_dir, store_backend_name(st));
    report_secret_lock_failure();
    /* A line for scripts that start us on port 0. */
    fprintf(stdout, "listening %d\n", http_server_port(http));
    fflush(stdout);
    int sig = 0;
    sigwait(&stop_signals, &sig);
    log_info("signal %d: finishing requests in flight, then stopping", sig);
out:
    if (rc != COFFER_OK) {
        log_error("cofferd: %s", coffer_last_message());
    }
    http_server_stop(http);
    http_server_free(http);
    if (sched_started) {
        pthread_mutex_lock(&sched.lock);
        sched.stop = true;
        pthread_cond_signal(&sched.cond);
        pthread_mutex_unlock(&sched.lock);
        pthread_join(sched.thread, NULL);
    }
    /* No data key is asked of a stopping KMS: the current trail file goes on instead. */
    atomic_store(&audit_kms.stopped, true);
    services_stop(running, n_running);
    authz_free(az); /* before the directory it asks for identity policies */
    iam_services_free(identity);
    iam_directory_free(dir);
    quota_free(q);
    if (unauth_limit != NULL && trail != NULL) {
        /* The last window's suppressed count goes on record before the trail closes. A failure is
         * logged by the flush itself, and there is nothing left to retry it with at shutdown. */
        (void)audit_limiter_flush(unauth_limit, trail, cfg.region, coffer_now_ms(), true);
    }
    audit_limiter_free(unauth_limit);
    audit_trail_close(trail); /* closes the current file and writes the final digest */
    crypto_pkey_free(audit_key);
    iam_creds_free(creds);
    store_close(records);
    seal_free(sl);
    store_close(st);
    SSL_CTX_free(tls);
    if (lock_fd >= 0) {
        close(lock_fd);
    }
    if (rc == COFFER_OK) {
        log_info("stopped");
    }
    return rc == COFFER_OK ? 0 : 1;
}
