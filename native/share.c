#include <stdlib.h>

#include "share.h"

struct gov_class {
    struct gov_class *parent;
    struct gov_meter own[GOV_NRES];   /* its rate: what it may lend, or use */
    struct gov_meter ceil[GOV_NRES];  /* its ceiling */
    int refs;                         /* atomic */
};

/* ---- meters ---- */

static int64_t now_or_later(int64_t tat, int64_t now)
{
    return tat > now ? tat : now;
}

void gov_meter_init(struct gov_meter *m, double rate, double burst)
{
    m->ns_per_byte = rate > 0 ? 1e9 / rate : 0;
    m->burst_ns = (int64_t)(burst * m->ns_per_byte);
    __atomic_store_n(&m->tat, 0, __ATOMIC_RELAXED); /* full */
}

int64_t gov_meter_wait(struct gov_meter *m, double cost, int64_t now)
{
    if (m->ns_per_byte == 0)
        return 0;
    double need = cost * m->ns_per_byte;
    if (need > (double)m->burst_ns)
        need = (double)m->burst_ns; /* a large call goes when the meter is full */
    int64_t ahead = __atomic_load_n(&m->tat, __ATOMIC_RELAXED) - now;
    double wait = (double)ahead - ((double)m->burst_ns - need);
    return wait <= 0 ? 0 : (int64_t)wait + 1;
}

void gov_meter_charge(struct gov_meter *m, double cost, int64_t now)
{
    if (m->ns_per_byte == 0)
        return;
    int64_t delta = (int64_t)(cost * m->ns_per_byte);
    int64_t old = __atomic_load_n(&m->tat, __ATOMIC_RELAXED), next;
    do {
        next = now_or_later(now_or_later(old, now) + delta, now);
    } while (!__atomic_compare_exchange_n(&m->tat, &old, next, 1, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
}

/* ---- classes ---- */

struct gov_class *gov_class_new(struct gov_class *parent, const double *rates,
                                const double *ceilings, const double *bursts)
{
    struct gov_class *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->parent = parent;
    c->refs = 1;
    if (parent)
        __atomic_add_fetch(&parent->refs, 1, __ATOMIC_RELAXED);
    for (int r = 0; r < GOV_NRES; r++) {
        gov_meter_init(&c->own[r], rates[r], bursts[r]);
        gov_meter_init(&c->ceil[r], ceilings[r] > 0 ? ceilings[r] : rates[r], bursts[r]);
    }
    return c;
}

void gov_class_put(struct gov_class *c)
{
    while (c && __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        struct gov_class *parent = c->parent;
        free(c);
        c = parent;
    }
}

/* ---- a group's shared rate ---- */

void gov_share_init(struct gov_share *s, struct gov_class *c, int res, double guarantee,
                    double burst, int64_t now)
{
    gov_share_release(s);
    __atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
    s->cls = c;
    gov_meter_init(&s->own, guarantee, burst);
    gov_meter_init(&s->borrow, 0, burst);
    s->borrowed = 0;
}

void gov_share_release(struct gov_share *s)
{
    gov_class_put(s->cls);
    s->cls = NULL;
}

static int64_t min_wait(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

int64_t gov_share_wait(struct gov_share *s, int res, double cost, int64_t now, int *route)
{
    const int64_t never = INT64_MAX;
    int64_t best = never;
    *route = GOV_ROUTE_NONE;
    if (s->own.ns_per_byte > 0) {
        best = gov_meter_wait(&s->own, cost, now);
        if (best == 0) {
            *route = GOV_ROUTE_GUARANTEED;
            return 0;
        }
    }
    int64_t share = gov_meter_wait(&s->borrow, cost, now);
    if (share > 0)
        return min_wait(best, share);
    int level = 1;
    for (struct gov_class *c = s->cls; c; c = c->parent, level++) {
        if (c->ceil[res].ns_per_byte == 0)
            continue; /* this class does not share the rate: look above */
        int64_t over = gov_meter_wait(&c->ceil[res], cost, now);
        if (over > 0)
            return min_wait(best, over);
        int64_t lend = gov_meter_wait(&c->own[res], cost, now);
        if (lend == 0) {
            *route = level;
            return 0;
        }
        best = min_wait(best, lend);
    }
    return best == never ? 1000000 : best; /* nothing to wait for: look again in 1 ms */
}

void gov_share_charge(struct gov_share *s, int res, double cost, int route, int sign,
                      int64_t now)
{
    double c = cost * sign;
    if (route == GOV_ROUTE_NONE)
        return;
    if (route == GOV_ROUTE_GUARANTEED) {
        gov_meter_charge(&s->own, c, now);
    } else {
        gov_meter_charge(&s->borrow, c, now);
        s->borrowed += (uint64_t)(int64_t)c;
    }
    /* Every class above pays against its ceiling; the lender and those above
     * it against their own rates too (the classes below the lender borrowed). */
    int level = 1;
    for (struct gov_class *cl = s->cls; cl; cl = cl->parent, level++) {
        gov_meter_charge(&cl->ceil[res], c, now);
        if (route == GOV_ROUTE_GUARANTEED || level >= route)
            gov_meter_charge(&cl->own[res], c, now);
    }
}
