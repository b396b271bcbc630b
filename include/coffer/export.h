/*
 * How libcoffer marks its public functions, as libsodium's export.h does:
 *   COFFER_API           exported from libcoffer.so (the library builds with -fvisibility=hidden,
 *                        so anything without it stays private)
 *   COFFER_WARN_UNUSED   the result must be used: a status that is ignored is a bug, and so is
 *                        an object that is built and then lost
 *   COFFER_NONNULL(...)  the numbered pointer arguments (from 1) must not be NULL; passing a
 *                        literal NULL is a compile-time warning in the caller
 * Compilers without GNU attributes see empty macros.
 *
 * libcoffer's own sources are built with COFFER_BUILDING_LIBRARY defined, which drops
 * COFFER_NONNULL there: the compiler would otherwise be free to delete the library's NULL
 * checks, and a caller that passes NULL anyway (through a variable) still gets
 * COFFER_STATUS_USAGE rather than a crash.
 */
#ifndef COFFER_EXPORT_H
#define COFFER_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define COFFER_API __attribute__((visibility("default")))
#define COFFER_WARN_UNUSED __attribute__((warn_unused_result))
#if defined(COFFER_BUILDING_LIBRARY)
#define COFFER_NONNULL(...)
#else
#define COFFER_NONNULL(...) __attribute__((nonnull(__VA_ARGS__)))
#endif
#else
#define COFFER_API
#define COFFER_WARN_UNUSED
#define COFFER_NONNULL(...)
#endif

#endif
