/*
 * Parameter names, ARNs and selectors, as Parameter Store spells them (no I/O, unit tested).
 *
 * A name is "x" (one level; "/x" is the same parameter) or "/a/b/x" (a hierarchy of at most
 * SSM_MAX_LEVELS levels) made of letters, digits, '_', '.', '-'. Its canonical form drops the
 * leading '/' of a one-level name; its key form always has one, so the store keys of a subtree
 * share the prefix of its path ("/a/b/"). The ARN is "...:parameter/" + the name without its
 * leading '/'.
 */
#ifndef COFFER_SSM_SSM_NAME_H
#define COFFER_SSM_SSM_NAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define SSM_MAX_LEVELS 15
#define SSM_ARN_MAX 1011 /* a name's ARN, prefix included */
#define SSM_NAME_MAX 2048

/* The reasons ssm_name_check refuses a name (messages as AWS words them). */
#define SSM_MSG_BAD_NAME                                                                                     \
    "Parameter name: can't be prefixed with \"ssm\" (case-insensitive). If formed as a path, it can "        \
    "consist of sub-paths divided by slash symbol; each sub-path can be formed as a mix of letters, "        \
    "numbers and the following 3 symbols .-_"
#define SSM_MSG_RESERVED_PLAIN "Parameter name: can't be prefixed with \"aws\" or \"ssm\" (case-insensitive)."

/*
 * Checks `name` (leading and trailing spaces ignored) and writes its canonical form into
 * `canon` (size n). `for_write`: also refuse the reserved prefixes ("aws", "ssm"; writing
 * under "/aws/" is AccessDeniedException). `arn_prefix_len` is the length of the ARN prefix
 * "arn:aws:ssm:<region>:<account>:parameter/" the name must fit after.
 * ValidationException, HierarchyLevelLimitExceededException or AccessDeniedException.
 */
coffer_err ssm_name_check(const char *name, bool for_write, size_t arn_prefix_len, char *canon, size_t n)
    __attribute__((warn_unused_result));

/*
 * Splits a read operation's `ref` (a name or a parameter ARN of `arn_prefix`, with an optional
 * ":<version>" or ":<label>" selector) into `name` (size n, not yet checked), the version
 * (*version > 0) or the label (label[0] != 0, size label_n). An ARN of another account or
 * region, or more than one selector, makes the name empty (the parameter is not found).
 * ValidationException only when the selector is empty or too long.
 */
coffer_err ssm_ref_split(const char *ref, const char *arn_prefix, char *name, size_t n, int64_t *version,
                         char *label, size_t label_n) __attribute__((warn_unused_result));

/* The key form of canonical name `canon` ("/x" for "x") written into out (size n). */
void ssm_name_key(const char *canon, char *out, size_t n);

/*
 * Checks a GetParametersByPath path and writes its key prefix ("/a/b/", "/" for the root) into
 * out (size n). ValidationException.
 */
coffer_err ssm_path_prefix(const char *path, char *out, size_t n) __attribute__((warn_unused_result));

/*
 * Whether `label` may name a parameter version: 1-SSM_LABEL_MAX letters, digits, '.', '-',
 * '_', not starting with a digit, "aws" or "ssm" (any case). AWS reports a label that breaks
 * these rules back as invalid rather than failing the request.
 */
#define SSM_LABEL_MAX 100
bool ssm_label_valid(const char *label);

#endif
