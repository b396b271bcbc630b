/*
 * cofferd-echo: cofferd with its registered services plus the test-only Echo service.
 */
#include "echo/echo_service.h"
#include "server/services.h"

static const struct api_module *const extra[] = {
    &echo_module, /* the registration line */
};

int main(int argc, char **argv)
{
    return cofferd_main(argc, argv, extra, sizeof(extra) / sizeof(extra[0]));
}
