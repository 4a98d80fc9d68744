#include "bucket.h"

void gov_bucket_init(struct gov_bucket *b, double rate, double burst, int64_t now_ns)
{
    b->rate = rate;
    b->burst = burst;
    b->tokens = burst;
    b->last_ns = now_ns;
}

static void refill(struct gov_bucket *b, int64_t now_ns)
{
    if (now_ns > b->last_ns) {
        b->tokens += b->rate * (double)(now_ns - b->last_ns) / 1e9;
        if (b->tokens > b->burst)
            b->tokens = b->burst;
        b->last_ns = now_ns;
    }
}

int64_t gov_bucket_wait_ns(struct gov_bucket *b, double cost, int64_t now_ns)
{
    refill(b, now_ns);
    double need = cost < b->burst ? cost : b->burst;
    if (b->tokens >= need)
        return 0;
    double ns = (need - b->tokens) / b->rate * 1e9;
    if (ns > GOV_BUCKET_MAX_WAIT_NS) /* a double past int64 would convert to anything */
        return GOV_BUCKET_MAX_WAIT_NS;
    return ns < 1 ? 1 : (int64_t)ns + 1;
}

void gov_bucket_charge(struct gov_bucket *b, double cost)
{
    b->tokens -= cost;
}

void gov_bucket_settle(struct gov_bucket *b, double delta, int64_t now_ns)
{
    refill(b, now_ns);
    double floor = b->tokens < -b->rate ? b->tokens : -b->rate;
    b->tokens -= delta;
    if (b->tokens > b->burst)
        b->tokens = b->burst;
    if (b->tokens < floor)
        b->tokens = floor;
}
