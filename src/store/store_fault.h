/*
 * Fault injection for tests: a store that forwards to another one but fails writes on demand,
 * so a test can loop an operation over N = 0, 1, 2, ... and check that each failure leaves no
 * half-written state and no leak. Not for production use.
 */
#ifndef COFFER_STORE_STORE_FAULT_H
#define COFFER_STORE_STORE_FAULT_H

#include "store/store.h"

/*
 * Wraps `inner` (takes ownership: store_close on the wrapper closes it). Faults are off until
 * store_fault_set.
 */
coffer_err store_fault_wrap(store *inner, store **out) __attribute__((warn_unused_result));

/*
 * Arms the wrapper `s` (from store_fault_wrap): the first `fail_after_ops` write operations
 * (store_txn_put, store_txn_delete, store_txn_commit) from now succeed, every later one fails
 * with COFFER_ERR_STORE (a failed commit discards the transaction). A negative value disarms.
 * Thread-safe.
 */
void store_fault_set(store *s, int fail_after_ops);

/* How many write operations failed since the last store_fault_set. */
int store_fault_failures(store *s);

#endif
