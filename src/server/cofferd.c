/*
 * cofferd with the registered services (server/services.c).
 */
#include "server/services.h"

int main(int argc, char **argv)
{
    return cofferd_main(argc, argv, NULL, 0);
}
