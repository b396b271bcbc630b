/*
 * The policy events log: EventBridge-shaped events ("Parameter Store Policy Action") as JSON
 * lines in "<data dir>/events/ssm.jsonl", each on disk (fsync) before the change it reports
 * commits, so an event is never lost; a crash in between may repeat it at the next run.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ssm/ssm_internal.h"

struct ssm_events {
    pthread_mutex_t mu;
    int fd;
};

coffer_err ssm_events_open(const char *data_dir, struct ssm_events **out)
{
    char path[4096];
    *out = NULL;
    if ((size_t)snprintf(path, sizeof(path), "%s/events", data_dir) >= sizeof(path) - 16) {
        return coffer_fail(COFFER_ERR_CONFIG, "data dir path too long");
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
        return coffer_fail(COFFER_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    }
    strcat(path, "/ssm.jsonl");
    struct ssm_events *ev = calloc(1, sizeof(*ev));
    if (ev == NULL) {
        return ssm_oom();
    }
    ev->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (ev->fd < 0) {
        int e = errno;
        free(ev);
        return coffer_fail(COFFER_ERR_IO, "cannot open %s: %s", path, strerror(e));
    }
    pthread_mutex_init(&ev->mu, NULL);
    *out = ev;
    return COFFER_OK;
}

coffer_err ssm_events_append(struct ssm_events *ev, const json_t *event)
{
    if (ev == NULL) {
        return COFFER_OK;
    }
    char *line = json_dumps(event, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (line == NULL) {
        return ssm_oom();
    }
    size_t n = strlen(line);
    line[n] = '\n'; /* json_dumps's NUL becomes the line's end */
    coffer_err rc = COFFER_OK;
    pthread_mutex_lock(&ev->mu);
    size_t off = 0;
    while (off < n + 1) {
        ssize_t w = write(ev->fd, line + off, n + 1 - off);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            rc = coffer_fail(COFFER_ERR_IO, "cannot write the events log: %s", strerror(errno));
            break;
        }
        off += (size_t)w;
    }
    if (rc == COFFER_OK && fsync(ev->fd) != 0) {
        rc = coffer_fail(COFFER_ERR_IO, "cannot sync the events log: %s", strerror(errno));
    }
    pthread_mutex_unlock(&ev->mu);
    free(line);
    return rc;
}

void ssm_events_close(struct ssm_events *ev)
{
    if (ev == NULL) {
        return;
    }
    close(ev->fd);
    pthread_mutex_destroy(&ev->mu);
    free(ev);
}
