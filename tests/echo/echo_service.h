/*
 * Echo, a test-only service module (see echo_service.c).
 */
#ifndef COFFER_TESTS_ECHO_SERVICE_H
#define COFFER_TESTS_ECHO_SERVICE_H

#include "api/module.h"

extern const struct api_module echo_module;

#endif
