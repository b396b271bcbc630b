/*
 * Unit tests for src/http/wipe: the request-body wipe over an evbuffer of many extents (more than
 * any fixed peek array holds), and the response reference whose cleanup wipes the body before it
 * is released, wherever libevent moves it (evbuffer_add_buffer, a bufferevent) and however it
 * ends (sent and drained, or dropped). Also the wiping free/realloc installed into jansson and
 * libevent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <event2/bufferevent.h>
#include <event2/event.h>

/* The test watches the release seam of the module, so it builds the module itself. */
#include "../../src/http/wipe.c"

#define CHUNKS 20
#define CHUNK_LEN 100

static uint8_t chunk[CHUNKS][CHUNK_LEN];
static int chunks_released_zero, chunks_released_dirty;

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != 0) {
            return false;
        }
    }
    return true;
}

/* Cleanup of a referenced request chunk: at release, its bytes must already be zero. */
static void chunk_released(const void *data, size_t len, void *extra)
{
    (void)extra;
    if (all_zero(data, len)) {
        chunks_released_zero++;
    } else {
        chunks_released_dirty++;
    }
}

static int evbuf_extents(struct evbuffer *b)
{
    return evbuffer_peek(b, -1, NULL, NULL, 0);
}

static bool evbuf_all_zero(struct evbuffer *b)
{
    int n = evbuf_extents(b);
    struct evbuffer_iovec *v = calloc((size_t)n + 1, sizeof(*v));
    assert_non_null(v);
    assert_int_equal(evbuffer_peek(b, -1, NULL, v, n), n);
    bool ok = true;
    for (int i = 0; i < n; i++) {
        ok = ok && all_zero(v[i].iov_base, v[i].iov_len);
    }
    free(v);
    return ok;
}

/* A body in many chains: referenced chunks (whose release we watch) between copied chains. */
static struct evbuffer *many_extents(void)
{
    struct evbuffer *b = evbuffer_new();
    assert_non_null(b);
    uint8_t secret[37];
    memset(secret, 0x5a, sizeof(secret));
    for (int i = 0; i < CHUNKS; i++) {
        memset(chunk[i], 0xa5, CHUNK_LEN);
        assert_int_equal(evbuffer_add_reference(b, chunk[i], CHUNK_LEN, chunk_released, NULL), 0);
        assert_int_equal(evbuffer_add(b, secret, sizeof(secret)), 0);
    }
    chunks_released_zero = chunks_released_dirty = 0;
    return b;
}

static void test_wipe_every_extent(void **state)
{
    (void)state;
    struct evbuffer *b = many_extents();
    assert_true(evbuf_extents(b) > 2 * HTTP_WIPE_BATCH); /* more than one peek round, and than 8 */
    size_t len = evbuffer_get_length(b);
    http_evbuf_wipe(b);
    assert_int_equal(evbuffer_get_length(b), len);
    assert_true(evbuf_all_zero(b));
    for (int i = 0; i < CHUNKS; i++) {
        assert_true(all_zero(chunk[i], CHUNK_LEN));
    }
    evbuffer_drain(b, len); /* as the listener does: every chain is released wiped */
    assert_int_equal(chunks_released_zero, CHUNKS);
    assert_int_equal(chunks_released_dirty, 0);
    evbuffer_free(b);
}

static void test_wipe_after_partial_drain(void **state)
{
    (void)state;
    struct evbuffer *b = many_extents();
    /* chunk 0, one copied chain and 13 bytes of chunk 1 are gone: the first extent now starts
     * inside a chain */
    evbuffer_drain(b, CHUNK_LEN + 37 + 13);
    http_evbuf_wipe(b);
    assert_true(evbuf_all_zero(b));
    assert_true(all_zero(chunk[1] + 13, CHUNK_LEN - 13));
    evbuffer_free(b);
    /* only the bytes drained before the wipe were never ours to wipe */
    assert_int_equal(chunks_released_dirty, 2);
    assert_int_equal(chunks_released_zero, CHUNKS - 2);
}

static void test_wipe_empty(void **state)
{
    (void)state;
    struct evbuffer *b = evbuffer_new();
    http_evbuf_wipe(b);
    assert_int_equal(evbuffer_get_length(b), 0);
    evbuffer_free(b);
}

/* ---- responses by reference ---- */

static int released, released_dirty;
static size_t released_len;

static void watch_release(void *p, size_t n)
{
    if (all_zero(p, n)) {
        released++;
    } else {
        released_dirty++;
    }
    released_len = n;
    coffer_secret_free(p, n);
}

static coffer_buf secret_body(const char *text)
{
    coffer_buf b;
    coffer_buf_init(&b, true);
    assert_int_equal(coffer_buf_append_str(&b, text), COFFER_OK);
    released = released_dirty = 0;
    released_len = 0;
    http_wipe_release = watch_release;
    return b;
}

#define BODY "{\"KeyId\":\"k\",\"Plaintext\":\"c2VjcmV0IGRhdGEga2V5IGJ5dGVz\"}"

static void test_reference_wiped_when_sent(void **state)
{
    (void)state;
    coffer_buf body = secret_body(BODY);
    size_t cap = body.cap;
    struct evbuffer *ob = evbuffer_new(), *conn = evbuffer_new();
    assert_int_equal(http_evbuf_add_secret(ob, &body), COFFER_OK);
    assert_null(body.data); /* ownership went to the evbuffer */
    /* evhttp_send_reply moves the reply into the connection's output, then frees its own. */
    assert_int_equal(evbuffer_add_buffer(conn, ob), 0);
    evbuffer_free(ob);
    assert_int_equal(released + released_dirty, 0);
    char out[sizeof(BODY)];
    assert_int_equal(evbuffer_remove(conn, out, 10), 10); /* a partial send keeps it alive */
    assert_int_equal(released + released_dirty, 0);
    assert_int_equal(evbuffer_remove(conn, out + 10, sizeof(BODY)), (int)strlen(BODY) - 10);
    assert_memory_equal(out, BODY, strlen(BODY));
    assert_int_equal(released, 1);
    assert_int_equal(released_dirty, 0);
    assert_int_equal(released_len, cap); /* the whole allocation, not only len */
    evbuffer_free(conn);
    assert_int_equal(released, 1);
}

static void test_reference_wiped_when_dropped(void **state)
{
    (void)state;
    coffer_buf body = secret_body(BODY);
    struct evbuffer *ob = evbuffer_new();
    assert_int_equal(http_evbuf_add_secret(ob, &body), COFFER_OK);
    evbuffer_free(ob); /* connection gone before anything was sent */
    assert_int_equal(released, 1);
    assert_int_equal(released_dirty, 0);
}

/* Through a real bufferevent pair, as a connection writes: the reference is released wiped. */
static void test_reference_through_bufferevent(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    struct bufferevent *pair[2];
    assert_int_equal(bufferevent_pair_new(base, 0, pair), 0);
    bufferevent_enable(pair[0], EV_WRITE);
    bufferevent_enable(pair[1], EV_READ);
    coffer_buf body = secret_body(BODY);
    struct evbuffer *ob = evbuffer_new();
    assert_int_equal(http_evbuf_add_secret(ob, &body), COFFER_OK);
    assert_int_equal(bufferevent_write_buffer(pair[0], ob), 0);
    evbuffer_free(ob);
    for (int i = 0; i < 10; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
    }
    char out[sizeof(BODY)];
    size_t n = bufferevent_read(pair[1], out, sizeof(out));
    assert_int_equal(n, strlen(BODY));
    assert_memory_equal(out, BODY, n);
    assert_int_equal(released, 1);
    assert_int_equal(released_dirty, 0);
    bufferevent_free(pair[0]);
    bufferevent_free(pair[1]);
    event_base_free(base);
}

static void test_reference_needs_secret_buffer(void **state)
{
    (void)state;
    coffer_buf plain;
    coffer_buf_init(&plain, false);
    assert_int_equal(coffer_buf_append_str(&plain, "x"), COFFER_OK);
    struct evbuffer *ob = evbuffer_new();
    assert_int_equal(http_evbuf_add_secret(ob, &plain), COFFER_ERR_USAGE);
    assert_non_null(plain.data);
    assert_int_equal(evbuffer_get_length(ob), 0);
    evbuffer_free(ob);
    coffer_buf_free(&plain);
    coffer_buf empty = secret_body("");
    ob = evbuffer_new();
    assert_int_equal(http_evbuf_add_secret(ob, &empty), COFFER_OK);
    assert_int_equal(evbuffer_get_length(ob), 0);
    evbuffer_free(ob);
}

/* Headers (a libevent chain) and a referenced body become one extent in locked memory; the body's
 * block and then the copy are released wiped. */
static void test_coalesce(void **state)
{
    (void)state;
    coffer_buf body = secret_body(BODY);
    struct evbuffer *conn = evbuffer_new();
    assert_int_equal(
        evbuffer_add_printf(conn, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", strlen(BODY)) > 0, 1);
    size_t head = evbuffer_get_length(conn);
    assert_int_equal(http_evbuf_add_secret(conn, &body), COFFER_OK);
    assert_int_equal(evbuffer_peek(conn, -1, NULL, NULL, 0), 2);
    size_t total = evbuffer_get_length(conn);
    http_evbuf_coalesce_secret(conn);
    assert_int_equal(evbuffer_peek(conn, -1, NULL, NULL, 0), 1);
    assert_int_equal(evbuffer_get_length(conn), total);
    assert_int_equal(released, 1); /* the body's own block, wiped */
    assert_int_equal(released_dirty, 0);
    http_evbuf_coalesce_secret(conn); /* already one extent: nothing to do */
    assert_int_equal(released, 1);
    char out[256];
    assert_int_equal(evbuffer_remove(conn, out, sizeof(out)), (int)total);
    assert_memory_equal(out, "HTTP/1.1 200 OK\r\n", 17);
    assert_memory_equal(out + head, BODY, strlen(BODY));
    assert_int_equal(released, 2); /* the copy, wiped once sent */
    assert_int_equal(released_dirty, 0);
    assert_int_equal(released_len, total);
    evbuffer_free(conn);
}

/* ---- the wiping allocator functions ---- */

static void test_wipe_realloc(void **state)
{
    (void)state;
    uint8_t *p = coffer_wipe_realloc(NULL, 16);
    assert_non_null(p);
    memset(p, 7, 16);
    uint8_t *q = coffer_wipe_realloc(p, 8); /* shrink: same block */
    assert_ptr_equal(q, p);
    q = coffer_wipe_realloc(q, 1 << 16); /* grow: moved, contents kept */
    assert_non_null(q);
    for (int i = 0; i < 16; i++) {
        assert_int_equal(q[i], 7);
    }
    coffer_wipe_free(q);
    coffer_wipe_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wipe_every_extent),
        cmocka_unit_test(test_wipe_after_partial_drain),
        cmocka_unit_test(test_wipe_empty),
        cmocka_unit_test(test_reference_wiped_when_sent),
        cmocka_unit_test(test_reference_wiped_when_dropped),
        cmocka_unit_test(test_reference_through_bufferevent),
        cmocka_unit_test(test_reference_needs_secret_buffer),
        cmocka_unit_test(test_coalesce),
        cmocka_unit_test(test_wipe_realloc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
