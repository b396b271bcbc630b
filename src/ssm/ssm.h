/*
 * SSM Parameter Store (AWS JSON 1.1, target prefix "AmazonSSM", signing name "ssm"): named,
 * hierarchical ("/dept/app/env/key"), versioned parameters of type String and StringList.
 * Each parameter is one record "ssm/param/<account>/<region>/<name>" in the host's sealed
 * store holding its retained versions (at most SSM_MAX_VERSIONS), so reading the latest value
 * is one record read and a path listing is one prefix scan of the subtree, whatever the number
 * of parameters elsewhere. Authorization is by the caller's identity policies only:
 * "ssm:<Operation>" on arn:aws:ssm:<region>:<account>:parameter/<name without leading slash>.
 *
 * Thread-safety: handlers run concurrently; every write is one store transaction.
 */
#ifndef COFFER_SSM_SSM_H
#define COFFER_SSM_SSM_H

#include <stddef.h>

#include "api/module.h"

#define SSM_MAX_VERSIONS 100

/*
 * What cofferd configures for the Parameter Store: the module's settings block (host->settings,
 * NULL: SSM_SETTINGS_DEFAULT). The parameter counts per account and region, by tier, past which
 * PutParameter refuses a new parameter with ParameterLimitExceeded (AWS: 10,000 standard,
 * 100,000 advanced).
 */
struct ssm_settings {
    size_t max_standard;
    size_t max_advanced;
};
#define SSM_SETTINGS_DEFAULT                                                                                 \
    {                                                                                                        \
        .max_standard = 10000, .max_advanced = 100000                                                        \
    }

/* The Parameter Store as a module of the daemon (api/module.h); settings: struct ssm_settings. */
extern const struct api_module ssm_module;

#endif
