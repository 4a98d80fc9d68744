/* Conditions on a system call's arguments, in the shape libseccomp takes:
 * a term is a conjunction of at most one comparison per argument. filter.c
 * turns rules of different actions for one syscall into disjoint terms, so
 * that libseccomp's merging of overlapping rules (an unconditional rule
 * swallows conditional ones of any action) never decides a call; these
 * functions intersect and subtract terms for it.
 *
 * A comparison of a 64-bit argument x is kept in one of four forms:
 * (x & m) == v, x != v, x < v, x >= v. The difference of two
 * terms needs negations, which for a masked comparison are several disjoint
 * masked comparisons (one per bit of the mask). Ranges combine only with
 * each other in one direction, or with values that lie wholly on one side:
 * anything else is -EOPNOTSUPP. Internal to native/, not in the cdef. */
#ifndef GOV_ARGCOND_H
#define GOV_ARGCOND_H

#include <stdint.h>

#define ARGC_NARGS 6
#define ARGC_MAX_TERMS 1024   /* pieces of one syscall's rules: past it, -E2BIG */
#define ARGC_MAX_MASKS 65     /* argc_masks of one literal */

enum { LIT_ANY, LIT_MASK, LIT_NE, LIT_LT, LIT_GE };

struct lit {
    int op;       /* LIT_* */
    uint64_t m;   /* LIT_MASK: the mask */
    uint64_t v;   /* the value (LIT_MASK: within m) */
};

struct term {
    struct lit arg[ARGC_NARGS];
};

struct terms {
    struct term *t;
    int n, cap;
};

/* A comparison as libseccomp's SCMP_CMP_* op with its datums (MASKED_EQ:
 * a the mask, b the value; libseccomp masks the value too). 1: *out is it;
 * 0: it never holds; -EINVAL: not an op. */
int argc_lit(int op, uint64_t a, uint64_t b, struct lit *out);

/* The libseccomp comparison for a literal that is not LIT_ANY. */
void argc_cmp(const struct lit *l, int *op, uint64_t *a, uint64_t *b);

/* l as disjoint masked comparisons (at most ARGC_MAX_MASKS); filter.c says
 * why it needs them. */
int argc_masks(const struct lit *l, struct lit *out);

/* out += x AND y (disjoint terms). 0 or -errno. */
int argc_and(const struct term *x, const struct term *y, struct terms *out);

/* out += the part of t outside every q[i], as disjoint terms. 0 or -errno
 * (-EOPNOTSUPP: not expressible; -E2BIG: too many terms). */
int argc_subtract(const struct term *t, const struct terms *q, struct terms *out);

int argc_push(struct terms *ts, const struct term *t);
void argc_free(struct terms *ts);

#endif
