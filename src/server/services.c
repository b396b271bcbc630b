/*
 * The registered services (see services.h): add a service here with one line.
 */
#include "server/services.h"

#include "kms/kms.h"
#include "secrets/secrets.h"
#include "ssm/ssm.h"

size_t server_services(const struct server_config *cfg, struct server_service *out, size_t max)
{
    const struct server_service registered[] = {
        /* In start order: a service may look up only those before it (SSM reads Secrets Manager's
         * secrets for /aws/reference/secretsmanager/, both encrypt through KMS). */
        {&kms_module, &cfg->kms},
        {&secrets_module, &cfg->secrets},
        {&ssm_module, &cfg->ssm},
    };
    size_t n = sizeof(registered) / sizeof(registered[0]);
    for (size_t i = 0; i < n && i < max; i++) {
        out[i] = registered[i];
    }
    return n;
}
