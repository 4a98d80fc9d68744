/* Classes of service: rates shared by groups, with guarantees, lent by
 * weight, as Linux's HTB shares a link among classes of packets.
 *
 * A class has, per rate, its own rate (what it is guaranteed within its
 * parent class, or the whole rate at the root) and a ceiling. A group in a
 * class has a guarantee, its limit (the ceiling) and a weight. A call of a
 * group goes when it fits its limit and either its guarantee, or the unused
 * rate of a class above it (it borrows): the nearest ancestor whose own rate
 * has room lends, if every class on the way is under its ceiling. A call
 * within the guarantee is charged to every class above it too, so an owner
 * that comes back puts its class in debt at once and borrowers wait: a
 * borrower gives back within one burst. Among a class's borrowers the spare
 * rate is split by weight (gov_group_set_borrow, recomputed by the
 * supervisor every tick).
 *
 * Classes are shared by every engine of a supervisor (one per core). Their
 * meters are GCRA meters (a theoretical arrival time in one 64-bit word)
 * updated with atomic compare-and-swap: no lock on the per-call path. */
#ifndef GOV_SHARE_H
#define GOV_SHARE_H

#include <stdint.h>

#include "gov.h"

/* A rate as a GCRA meter: conforming while its theoretical arrival time is
 * no later than now + burst; a call that finds the meter full (tat <= now)
 * goes whatever its size and leaves debt. ns_per_byte 0: no rate. */
struct gov_meter {
    int64_t tat;            /* atomic: CLOCK_MONOTONIC ns */
    double ns_per_byte;
    int64_t burst_ns;
};

void gov_meter_init(struct gov_meter *m, double rate, double burst);
/* 0 if `cost` may go now, else the ns until it may. */
int64_t gov_meter_wait(struct gov_meter *m, double cost, int64_t now);
/* Charges cost (negative: a refund, never past a full meter). */
void gov_meter_charge(struct gov_meter *m, double cost, int64_t now);

struct gov_class;

/* A new class under parent (NULL: a root), with rates[r] (bytes/s, 0: not
 * shared) and ceilings (0: its rate), bursts in bytes. NULL on ENOMEM. Its
 * handle is the caller's; gov_class_put() drops it. Groups hold their own
 * references. */
struct gov_class *gov_class_new(struct gov_class *parent, const double *rates,
                                const double *ceilings, const double *bursts);
void gov_class_put(struct gov_class *c);

/* A group's side of a shared rate. */
struct gov_share {
    struct gov_class *cls;   /* NULL: this rate is not shared */
    struct gov_meter own;    /* its guarantee (no rate: none) */
    struct gov_meter borrow; /* what it may borrow now, split by weight */
    uint64_t borrowed;       /* bytes it borrowed so far */
};

/* Attaches s to class c (a reference is taken) with a guarantee (bytes/s,
 * 0: none) and a burst. */
void gov_share_init(struct gov_share *s, struct gov_class *c, int res, double guarantee,
                    double burst, int64_t now);
void gov_share_release(struct gov_share *s);

enum { GOV_ROUTE_NONE = 0, GOV_ROUTE_GUARANTEED = -1 };

/* Whether a call of `cost` on rate res may go now through the class: 0, with
 * *route the way it goes (GOV_ROUTE_GUARANTEED, or k > 0: lent by the k-th
 * class up), or the ns until it may. */
int64_t gov_share_wait(struct gov_share *s, int res, double cost, int64_t now, int *route);
/* Charges (sign 1) or refunds (-1) a call that went by route. */
void gov_share_charge(struct gov_share *s, int res, double cost, int route, int sign,
                      int64_t now);

#endif
