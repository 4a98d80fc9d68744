/* Token bucket with debt: a call that needs more than the bucket holds may go
 * when the bucket is full, and leaves it in debt, so long-run rates are exact
 * whatever the call size. */
#ifndef GOV_BUCKET_H
#define GOV_BUCKET_H

#include <stdint.h>

struct gov_bucket {
    double rate;      /* tokens (bytes) per second */
    double burst;     /* capacity */
    double tokens;    /* may be negative: debt */
    int64_t last_ns;  /* CLOCK_MONOTONIC of the last refill */
};

void gov_bucket_init(struct gov_bucket *b, double rate, double burst, int64_t now_ns);
#define GOV_BUCKET_MAX_WAIT_NS 1000000000000000000LL /* ~31 years */

/* 0 if a call of `cost` may go now; else ns until it may (at most
 * GOV_BUCKET_MAX_WAIT_NS). Refills first. */
int64_t gov_bucket_wait_ns(struct gov_bucket *b, double cost, int64_t now_ns);
void gov_bucket_charge(struct gov_bucket *b, double cost);
/* Applies a correction found after the fact (positive: debt, negative:
 * refund). A refund never fills the bucket past its burst; a debt never
 * takes it below one second of the rate, unless it was there already. */
void gov_bucket_settle(struct gov_bucket *b, double delta, int64_t now_ns);

#endif
