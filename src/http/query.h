/*
 * The AWS Query protocol (IAM, STS): the request is a form-encoded POST body
 * ("Action=CreateUser&Version=2010-05-08&UserName=alice"), the answer is XML. The pipeline
 * turns the form into the same JSON input object JSON-protocol handlers get and the handler's
 * JSON output into the XML envelope, so a handler does not know which protocol it serves.
 *
 *   listener -> pipeline (query_form_parse) -> sigv4 -> handler -> query_xml_response -> client
 *
 * Input mapping: every form parameter becomes one string member of a flat JSON object, with its
 * name as sent. Lists and maps keep the Query spelling ("Tags.member.1.Key",
 * "PolicyArns.member.2"); handlers that take them read those members. "Action" and "Version"
 * are members too.
 *
 * Output mapping: a JSON object becomes one element per member (<Name>value</Name>), an array
 * becomes <member> children, true/false and integers are written as text, null members are
 * left out. A NULL output writes no <XResult> element (the operations that return nothing).
 *
 * All functions are pure (no shared state) and thread-safe.
 */
#ifndef COFFER_HTTP_QUERY_H
#define COFFER_HTTP_QUERY_H

#include <jansson.h>

#include "common/buf.h"
#include "common/err.h"

#define QUERY_CONTENT_TYPE "application/x-www-form-urlencoded"
#define QUERY_XML_CONTENT_TYPE "text/xml"
#define QUERY_MAX_PARAMS 512   /* parameters in one request */
#define QUERY_MAX_NAME 256     /* bytes of one decoded parameter name */
#define QUERY_MAX_VALUE 262144 /* bytes of one decoded value (policy documents are the largest) */
#define QUERY_MAX_XML_DEPTH 16 /* nesting of the JSON output written as XML */

/*
 * Parses an application/x-www-form-urlencoded body into a new JSON object of strings (see the
 * mapping above). '+' is a space, %XX a byte; values must be UTF-8 without NUL. Errors
 * (COFFER_ERR_VALIDATION, message fit for the client): a bad escape, an empty or non-printable
 * name, a repeated name, invalid UTF-8, too many parameters or an over-long name or value.
 * *out is written only on success.
 */
coffer_err query_form_parse(coffer_cursor body, json_t **out) __attribute__((warn_unused_result));

/* Appends `s` with the five XML specials and control characters escaped. */
coffer_err query_xml_escape(const char *s, size_t len, coffer_buf *out) __attribute__((warn_unused_result));

/*
 * Appends <ActionResponse xmlns="ns"><ActionResult>..</ActionResult><ResponseMetadata>
 * <RequestId>id</RequestId></ResponseMetadata></ActionResponse>. `result` is borrowed.
 */
coffer_err query_xml_response(const char *action, const char *xml_namespace, const json_t *result,
                              const char *request_id, coffer_buf *out) __attribute__((warn_unused_result));

/*
 * Appends the <ErrorResponse> document of the error `code` ("NoSuchEntity", as the service names
 * it) with `message` (may be NULL or ""); `status` >= 500 makes its Type "Receiver".
 */
coffer_err query_xml_error(const char *code, int status, const char *message, const char *request_id,
                           coffer_buf *out) __attribute__((warn_unused_result));

#endif
