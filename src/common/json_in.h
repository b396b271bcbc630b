/*
 * Request bodies to JSON trees. Jansson's reader walks its input one byte at a time through a
 * stream with UTF-8 checks and a growing token buffer: for the small flat objects of the hot
 * operations (Encrypt, Decrypt, GenerateDataKey) that walk costs several times what building
 * the tree does. json_in_simple reads the common shape of those bodies directly; anything it
 * is not sure of it declines, and json_in_object then hands the bytes to Jansson, so every
 * document is either read by both with the same result or by Jansson alone. The fast reader
 * therefore never decides that a body is malformed: errors are Jansson's, as before.
 */
#ifndef COFFER_COMMON_JSON_IN_H
#define COFFER_COMMON_JSON_IN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Nesting the fast reader accepts; deeper documents go to Jansson. */
#define JSON_IN_SIMPLE_MAX_DEPTH 16
/* Digits of an integer the fast reader accepts (fits a json_int_t with room to spare). */
#define JSON_IN_SIMPLE_MAX_DIGITS 15

/*
 * The fast reader. Returns a new JSON object equal (json_equal, same member order) to what
 * json_loadb(p, n, JSON_REJECT_DUPLICATES) returns, or NULL when it declines: the document is
 * not one object, or uses what it leaves to Jansson (any byte >= 0x7f, escapes, fractions,
 * exponents, negative or long integers, nesting deeper than JSON_IN_SIMPLE_MAX_DEPTH, a
 * repeated member), or memory ran out. NULL never means "malformed".
 */
json_t *json_in_simple(const uint8_t *p, size_t n);

/*
 * The request body as one JSON object: json_in_simple, else Jansson with duplicate members
 * rejected. NULL when the body is not valid JSON, not an object, or repeats a member (or memory
 * runs out). The caller owns the result.
 */
json_t *json_in_object(const uint8_t *p, size_t n);

#endif
