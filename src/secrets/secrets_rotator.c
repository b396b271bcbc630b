/*
 * One step of a rotation function (secrets.h struct secrets_rotation_function), with the event
 * AWS sends a rotation Lambda, {"Step", "SecretId", "ClientRequestToken"}:
 *
 *   exec:/path      the program runs with the event JSON on stdin, cofferd's environment (where
 *                   it finds the credentials it calls Secrets Manager back with, as a Lambda
 *                   does; cofferd's own COFFER_* settings left out) and AWS_REGION; exit
 *                   status 0 is success. Its stdout and stderr go to
 *                   cofferd's log. It runs in a process group of its own, killed whole on
 *                   timeout, and dies with cofferd (PR_SET_PDEATHSIG).
 *   https://, http://  the event is POSTed as application/json; a 2xx answer is success. The
 *                   server's certificate is verified against the function's ca= file, or
 *                   the system's CA certificates.
 *   builtin:...     a rotator inside cofferd (secrets_rotator_pg.c).
 *
 * Every step is bounded by s->step_timeout_ms.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/timeutil.h"
#include "secrets/secrets_internal.h"

extern char **environ;

#define POLL_MS 10

/*
 * cofferd's environment with AWS_REGION / AWS_DEFAULT_REGION set to the secret's region, less
 * cofferd's own settings (COFFER_*: a seal passphrase or a store URL are not the function's).
 */
static char **child_env(const char *region, char *region_var, size_t n1, char *default_var, size_t n2)
{
    size_t count = 0;
    while (environ[count] != NULL) {
        count++;
    }
    char **env = calloc(count + 3, sizeof(*env));
    if (env == NULL) {
        return NULL;
    }
    size_t j = 0;
    for (size_t i = 0; i < count; i++) {
        if (strncmp(environ[i], "AWS_REGION=", 11) != 0 &&
            strncmp(environ[i], "AWS_DEFAULT_REGION=", 19) != 0 && strncmp(environ[i], "COFFER_", 7) != 0) {
            env[j++] = environ[i];
        }
    }
    snprintf(region_var, n1, "AWS_REGION=%s", region);
    snprintf(default_var, n2, "AWS_DEFAULT_REGION=%s", region);
    env[j++] = region_var;
    env[j++] = default_var;
    env[j] = NULL;
    return env;
}

static coffer_err run_exec(struct sm *s, const char *path, const char *region, const char *event, char *why,
                           size_t why_n)
{
    char region_var[96], default_var[96];
    char **env = child_env(region, region_var, sizeof(region_var), default_var, sizeof(default_var));
    if (env == NULL) {
        return sm_oom();
    }
    int in[2];
    if (pipe2(in, O_CLOEXEC) != 0) {
        free(env);
        snprintf(why, why_n, "cannot create a pipe: %s", strerror(errno));
        return coffer_fail(COFFER_ERR_IO, "%s", why);
    }
    pid_t parent = getpid();
    char *const argv[] = {(char *)path, NULL};
    pid_t pid = fork();
    if (pid == 0) {
        /* the child: only async-signal-safe calls until exec */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        dup2(in[0], 0);
        dup2(2, 1);
        close_range(3, ~0U, 0);
        execve(path, argv, env);
        _exit(127);
    }
    free(env);
    close(in[0]);
    if (pid < 0) {
        close(in[1]);
        snprintf(why, why_n, "cannot start %s: %s", path, strerror(errno));
        return coffer_fail(COFFER_ERR_IO, "%s", why);
    }
    setpgid(pid, pid); /* also from here: no race with the kill below */
    /* the event is far smaller than a pipe's buffer; a child that does not read it just exits */
    size_t len = strlen(event), off = 0;
    while (off < len) {
        ssize_t w = write(in[1], event + off, len - off);
        if (w <= 0 && errno != EINTR) {
            break;
        }
        off += w > 0 ? (size_t)w : 0;
    }
    close(in[1]);
    int64_t deadline = coffer_now_ms() + s->step_timeout_ms;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            break;
        }
        if (r < 0 && errno != EINTR) {
            snprintf(why, why_n, "lost the rotation function's process: %s", strerror(errno));
            return coffer_fail(COFFER_ERR_IO, "%s", why);
        }
        bool stopping = sm_rotor_stopping(s);
        if (stopping || coffer_now_ms() > deadline) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            if (stopping) {
                snprintf(why, why_n, "the server stopped");
            } else {
                snprintf(why, why_n, "the rotation function timed out after %lld ms",
                         (long long)s->step_timeout_ms);
            }
            return coffer_fail(COFFER_ERR_IO, "%s", why);
        }
        struct timespec ts = {0, POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        return COFFER_OK;
    }
    if (WIFEXITED(status)) {
        snprintf(why, why_n, "the rotation function exited with status %d", WEXITSTATUS(status));
    } else {
        snprintf(why, why_n, "the rotation function was killed by signal %d",
                 WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    }
    return coffer_fail(COFFER_ERR_INTERNAL, "%s", why);
}

static size_t discard(char *ptr, size_t size, size_t n, void *ctx)
{
    (void)ptr;
    (void)ctx;
    return size * n;
}

static int progress(void *ctx, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a;
    (void)b;
    (void)c;
    (void)d;
    return sm_rotor_stopping(ctx) ? 1 : 0;
}

static coffer_err run_webhook(struct sm *s, const struct secrets_rotation_function *f, const char *event,
                              char *why, size_t why_n)
{
    const char *url = f->target;
    char detail[CURL_ERROR_SIZE] = "";
    CURL *h = curl_easy_init();
    if (h == NULL) {
        return sm_oom();
    }
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)s->step_timeout_ms);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, event);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(event));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "coffer-secretsmanager-rotation");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, s);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, detail);
    /* the webhook is where the new credentials go: its certificate is always checked, against
     * the function's own CA file when it names one */
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (f->ca[0] != 0) {
        curl_easy_setopt(h, CURLOPT_CAINFO, f->ca);
        curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
    }
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(h);
    if (cc == CURLE_PEER_FAILED_VERIFICATION) {
        snprintf(why, why_n, "the rotation webhook's TLS certificate is not trusted by %s: %s",
                 f->ca[0] != 0 ? f->ca : "the system's CA certificates",
                 detail[0] != 0 ? detail : curl_easy_strerror(cc));
        return coffer_fail(COFFER_ERR_IO, "%s", why);
    }
    if (cc != CURLE_OK) {
        snprintf(why, why_n, "the rotation webhook failed: %s",
                 detail[0] != 0 ? detail : curl_easy_strerror(cc));
        return coffer_fail(COFFER_ERR_IO, "%s", why);
    }
    if (status < 200 || status > 299) {
        snprintf(why, why_n, "the rotation webhook answered HTTP %ld", status);
        return coffer_fail(COFFER_ERR_INTERNAL, "%s", why);
    }
    return COFFER_OK;
}

coffer_err sm_rotator_step(struct sm *s, const struct secrets_rotation_function *f, const char *region,
                           const char *secret_arn, const char *token, const char *step, char *why,
                           size_t why_n)
{
    if (strncmp(f->target, "builtin:", 8) == 0) {
        return sm_pg_rotator_step(s, f->target + 8, region, secret_arn, token, step, why, why_n);
    }
    json_t *ev =
        json_pack("{s:s, s:s, s:s}", "Step", step, "SecretId", secret_arn, "ClientRequestToken", token);
    char *text = ev != NULL ? json_dumps(ev, JSON_COMPACT) : NULL;
    json_decref(ev);
    if (text == NULL) {
        return sm_oom();
    }
    coffer_err rc = strncmp(f->target, "exec:", 5) == 0 ? run_exec(s, f->target + 5, region, text, why, why_n)
                                                        : run_webhook(s, f, text, why, why_n);
    free(text);
    return rc;
}
