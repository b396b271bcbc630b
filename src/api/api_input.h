/*
 * Typed reading of an AWS JSON 1.1 request object, shared by the services. A handler declares
 * the members it reads, in model order, and gets AWS-exact validation errors:
 *
 *   api_in in;
 *   api_in_init(&in, call->input);
 *   TRY_OUT(api_in_string(&in, "KeyId", API_IN_REQUIRED, 1, 2048, &key_id));
 *   TRY_OUT(api_in_blob(&in, "Plaintext", API_IN_REQUIRED | API_IN_SECRET, 1, 4096, &plain));
 *   TRY_OUT(api_in_done(&in));
 *
 * Two kinds of failure, as AWS reports them:
 *  - a member of the wrong JSON type (a number where a string is expected, bad base64, ...)
 *    is a COFFER_ERR_SERIALIZATION (SerializationException) returned at once by the reader;
 *  - a value that breaks a model constraint (length, range, enum, pattern, missing required
 *    member) is recorded and the reader returns COFFER_OK leaving its output unset; the
 *    handler must call api_in_done, which returns COFFER_ERR_VALIDATION with every recorded
 *    error joined as AWS does: "1 validation error detected: Value '1025' at 'numberOfBytes'
 *    failed to satisfy constraint: Member must have value less than or equal to 1024"
 *    ("2 validation errors detected: ...; ..."). Member paths are lowerCamelCase.
 *
 * JSON null counts as absent (the SDKs never send it; AWS treats it so). Unknown members are
 * ignored, as AWS does. Duplicate object keys are the JSON parser's business; we parse request
 * bodies with JSON_REJECT_DUPLICATES (a repeated member is a SerializationException before any
 * handler runs) rather than guess which copy a client meant.
 *
 * String outputs are borrowed from the input object (valid as long as it is); JSON containers
 * (maps, lists) are borrowed too. Blob outputs are owned buffers the caller frees.
 * Not thread-safe per api_in; one api_in per call.
 */
#ifndef COFFER_API_API_INPUT_H
#define COFFER_API_API_INPUT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/err.h"

#define API_IN_MAX_ERRORS 8 /* AWS reports at most a handful; the rest are counted */
#define API_IN_MSG_MAX 480  /* fits the thread-local error detail */

enum api_in_flags {
    API_IN_REQUIRED = 1 << 0, /* absent or null -> "Member must not be null" */
    API_IN_SECRET = 1 << 1,   /* blob goes into a locked buffer; value never echoed in errors */
    API_IN_SENSITIVE = 1 << 2 /* string value never echoed in errors */
};

typedef struct api_in {
    const json_t *obj;        /* borrowed request object (NULL reads as {}) */
    bool not_object;          /* the body is not a JSON object */
    size_t n_errors;          /* validation errors recorded */
    char msg[API_IN_MSG_MAX]; /* "; "-joined constraint messages */
    size_t msg_len;
} api_in;

/* Borrows `input`. A non-object input makes api_in_done fail with SerializationException. */
void api_in_init(api_in *in, const json_t *input);

/* COFFER_OK when no validation error was recorded, else COFFER_ERR_VALIDATION (AWS text). */
coffer_err api_in_done(api_in *in) __attribute__((warn_unused_result));

/*
 * Records a validation error for `member` (a lowerCamelCase path such as "tags.1.member.tagKey")
 * with the constraint text ("Member must ..."). `value` is echoed as "Value '<value>' at" when
 * not NULL, "Value null at" when `is_null`, else "Value at". Useful for service-side checks
 * that AWS reports in the same form.
 */
void api_in_add_error(api_in *in, const char *member, bool is_null, const char *value,
                      const char *constraint);

/* lowerCamelCase of an AWS member name into out (size n): "KeyId" -> "keyId". */
void api_in_member_path(const char *name, char *out, size_t n);

/*
 * String member, length in characters (UTF-8 code points) within [min, max]. *out is the
 * borrowed NUL-terminated value or NULL when absent/invalid. Wrong JSON type -> serialization.
 */
coffer_err api_in_string(api_in *in, const char *name, unsigned flags, size_t min, size_t max,
                         const char **out) __attribute__((warn_unused_result));

/*
 * Blob member: a base64 string (RFC 4648, padded) decoded into `out` (initialised here; secret
 * when API_IN_SECRET). Lengths are decoded bytes. Bad base64 -> serialization. When absent or
 * invalid, out->data is NULL and *present (if given) is false. The caller frees `out`.
 */
coffer_err api_in_blob(api_in *in, const char *name, unsigned flags, size_t min, size_t max, coffer_buf *out,
                       bool *present) __attribute__((warn_unused_result));

/* Integer member within [min, max]; *present false when absent/invalid. Non-integer -> serialization. */
coffer_err api_in_int(api_in *in, const char *name, unsigned flags, int64_t min, int64_t max, int64_t *out,
                      bool *present) __attribute__((warn_unused_result));

/* Boolean member; *out = dflt when absent. */
coffer_err api_in_bool(api_in *in, const char *name, bool dflt, bool *out)
    __attribute__((warn_unused_result));

/*
 * Enum member: the value must be one of `values` (NULL-terminated). *out = index, or -1 when
 * absent/invalid. Constraint text: "Member must satisfy enum value set: [A, B]".
 */
coffer_err api_in_enum(api_in *in, const char *name, unsigned flags, const char *const *values, int *out)
    __attribute__((warn_unused_result));

/*
 * Map of string to string (EncryptionContext). *out is the borrowed object or NULL when
 * absent. Any non-string value -> serialization. Key and value lengths are not constrained.
 */
coffer_err api_in_string_map(api_in *in, const char *name, unsigned flags, const json_t **out)
    __attribute__((warn_unused_result));

/*
 * List of strings: count within [min_n, max_n], each string length within [min, max]
 * (path "<member>.<i>.member", 1-based as AWS writes it). *out borrowed or NULL.
 */
coffer_err api_in_string_list(api_in *in, const char *name, unsigned flags, size_t min_n, size_t max_n,
                              size_t min, size_t max, const json_t **out) __attribute__((warn_unused_result));

/*
 * List of {TagKey, TagValue}: TagKey 1-128 and TagValue 0-256 characters, both required
 * ("tags.1.member.tagKey"). `key_name`/`value_name` allow other services' spellings
 * (SSM and Secrets Manager use Key/Value). *out borrowed or NULL.
 */
coffer_err api_in_tags(api_in *in, const char *name, unsigned flags, const char *key_name,
                       const char *value_name, const json_t **out) __attribute__((warn_unused_result));

/* Number of UTF-8 code points in s (invalid sequences count one per byte). */
size_t api_in_utf8_len(const char *s, size_t n);

#endif
