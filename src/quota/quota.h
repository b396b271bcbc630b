/*
 * Request quotas: token buckets per account. Cryptographic operations share one bucket per
 * account (default 5,500 req/s, as AWS KMS); control-plane operations have a bucket per
 * (account, operation) at the operation's own rate. A bucket holds one second of burst.
 * Over quota the pipeline answers ThrottlingException. Thread-safe.
 */
#ifndef COFFER_QUOTA_QUOTA_H
#define COFFER_QUOTA_QUOTA_H

#include <stdbool.h>
#include <stdint.h>

#define QUOTA_DEFAULT_CRYPTO_RPS 5500.0

typedef struct quota quota;

/* crypto_rps <= 0 turns all quotas off (quota_take always succeeds). */
quota *quota_new(double crypto_rps);
void quota_free(quota *q); /* accepts NULL */

/*
 * Takes one token from the bucket `bucket` ("crypto" or "<service>:<operation>") of `account`,
 * created on first use with capacity and refill rate `rps` (for "crypto" the configured rate
 * is used and `rps` is ignored). Returns false when the bucket is empty. `now_ns` is a
 * monotonic clock reading (coffer_monotonic_ns), passed in so tests control time.
 */
bool quota_take(quota *q, const char *account, const char *bucket, double rps, uint64_t now_ns);

#endif
