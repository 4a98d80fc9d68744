#include <errno.h>
#include <stdlib.h>
#include <seccomp.h>

#include "argcond.h"

/* The most literals one intersection or negation gives: x != v1 AND
 * x != v2 is 64 + 63 disjoint masked comparisons. */
#define MAXLIT 128
/* Bound on the work of one subtraction, whatever the rules. */
#define MAX_STEPS 1000000

#define FULL (~0ULL)

int argc_lit(int op, uint64_t x, uint64_t b, struct lit *out)
{
    switch (op) {
    case SCMP_CMP_NE:
        *out = (struct lit){LIT_NE, 0, x};
        return 1;
    case SCMP_CMP_EQ:
        *out = (struct lit){LIT_MASK, FULL, x};
        return 1;
    case SCMP_CMP_MASKED_EQ: /* libseccomp masks the value too */
        *out = x ? (struct lit){LIT_MASK, x, b & x} : (struct lit){LIT_ANY, 0, 0};
        return 1;
    case SCMP_CMP_LT:
        *out = (struct lit){LIT_LT, 0, x};
        return x != 0;
    case SCMP_CMP_LE:
        *out = x == FULL ? (struct lit){LIT_ANY, 0, 0} : (struct lit){LIT_LT, 0, x + 1};
        return 1;
    case SCMP_CMP_GT:
        *out = (struct lit){LIT_GE, 0, x + 1};
        return x != FULL;
    case SCMP_CMP_GE:
        *out = x ? (struct lit){LIT_GE, 0, x} : (struct lit){LIT_ANY, 0, 0};
        return 1;
    }
    return -EINVAL;
}

void argc_cmp(const struct lit *l, int *op, uint64_t *a, uint64_t *b)
{
    *b = 0;
    *a = l->v;
    switch (l->op) {
    case LIT_MASK:
        if (l->m == FULL) {
            *op = SCMP_CMP_EQ;
        } else {
            *op = SCMP_CMP_MASKED_EQ;
            *a = l->m;
            *b = l->v;
        }
        return;
    case LIT_NE:
        *op = SCMP_CMP_NE;
        return;
    case LIT_LT:
        *op = SCMP_CMP_LT;
        return;
    default:
        *op = SCMP_CMP_GE;
    }
}

/* Disjoint masked comparisons for "x != v" among the x with (x & m0) == w0,
 * over the bits `bits` (outside m0), high to low: the bits above b as in v,
 * bit b not as in v. */
static int split(uint64_t bits, uint64_t m0, uint64_t w0, uint64_t v, struct lit *out)
{
    uint64_t above = 0;
    int n = 0;
    for (int b = 63; b >= 0; b--) {
        uint64_t bit = 1ULL << b;
        if (!(bits & bit))
            continue;
        out[n++] = (struct lit){LIT_MASK, m0 | above | bit, w0 | (v & above) | (~v & bit)};
        above |= bit;
    }
    return n;
}

int argc_masks(const struct lit *l, struct lit *out)
{
    uint64_t x = l->v, above = 0;
    int n = 0;
    switch (l->op) {
    case LIT_NE:
        return split(FULL, 0, 0, x, out);
    case LIT_LT: /* below x: at the first bit where they differ, x has 1 */
    case LIT_GE: /* x, or above: at the first bit where they differ, x has 0 */
        for (int b = 63; b >= 0; b--) {
            uint64_t bit = 1ULL << b;
            if (!(x & bit) == (l->op == LIT_GE))
                out[n++] = (struct lit){LIT_MASK, above | bit, (x & above) | (~x & bit)};
            above |= bit;
        }
        if (l->op == LIT_GE)
            out[n++] = (struct lit){LIT_MASK, FULL, x};
        return n;
    }
    out[0] = *l;
    return 1;
}

/* NOT l, as disjoint literals. */
static int negate(const struct lit *l, struct lit *out)
{
    switch (l->op) {
    case LIT_MASK:
        if (l->m == FULL) {
            out[0] = (struct lit){LIT_NE, 0, l->v};
            return 1;
        }
        return split(l->m, 0, 0, l->v, out);
    case LIT_NE:
        out[0] = (struct lit){LIT_MASK, FULL, l->v};
        return 1;
    case LIT_LT:
        out[0] = (struct lit){LIT_GE, 0, l->v};
        return 1;
    case LIT_GE:
        out[0] = (struct lit){LIT_LT, 0, l->v};
        return 1;
    }
    return 0; /* NOT any: never */
}

/* x AND y on one argument, as disjoint literals: their count (0: never),
 * or -EOPNOTSUPP when one comparison per rule cannot say it. */
static int and_lit(const struct lit *x, const struct lit *y, struct lit *out)
{
    if (x->op > y->op) {
        const struct lit *t = x;
        x = y;
        y = t;
    }
    if (x->op == LIT_ANY) {
        out[0] = *y;
        return 1;
    }
    uint64_t lo = x->v, hi = x->v | ~x->m; /* the span of a masked x */
    switch (x->op * 8 + y->op) {
    case LIT_MASK * 8 + LIT_MASK:
        if ((x->v ^ y->v) & x->m & y->m)
            return 0;
        out[0] = (struct lit){LIT_MASK, x->m | y->m, x->v | y->v};
        return 1;
    case LIT_MASK * 8 + LIT_NE:
        if ((x->v ^ y->v) & x->m) {
            out[0] = *x;
            return 1;
        }
        return split(~x->m, x->m, x->v, y->v, out);
    case LIT_MASK * 8 + LIT_LT:
        if (hi < y->v || lo >= y->v) {
            out[0] = *x;
            return hi < y->v;
        }
        return -EOPNOTSUPP;
    case LIT_MASK * 8 + LIT_GE:
        if (lo >= y->v || hi < y->v) {
            out[0] = *x;
            return lo >= y->v;
        }
        return -EOPNOTSUPP;
    case LIT_NE * 8 + LIT_NE: {
        if (x->v == y->v) {
            out[0] = *x;
            return 1;
        }
        struct lit ne[64];
        int n = split(FULL, 0, 0, x->v, ne), k = 0;
        for (int i = 0; i < n; i++)
            k += and_lit(&ne[i], y, out + k);
        return k;
    }
    case LIT_NE * 8 + LIT_LT:
        out[0] = *y;
        return x->v >= y->v ? 1 : -EOPNOTSUPP;
    case LIT_NE * 8 + LIT_GE:
        out[0] = *y;
        return x->v < y->v ? 1 : -EOPNOTSUPP;
    case LIT_LT * 8 + LIT_LT:
        out[0] = x->v < y->v ? *x : *y;
        return 1;
    case LIT_LT * 8 + LIT_GE:
        return y->v >= x->v ? 0 : -EOPNOTSUPP;
    case LIT_GE * 8 + LIT_GE:
        out[0] = x->v > y->v ? *x : *y;
        return 1;
    }
    return -EOPNOTSUPP;
}

int argc_push(struct terms *ts, const struct term *t)
{
    if (ts->n >= ARGC_MAX_TERMS)
        return -E2BIG;
    if (ts->n == ts->cap) {
        int cap = ts->cap ? ts->cap * 2 : 16;
        struct term *p = realloc(ts->t, (size_t)cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        ts->t = p;
        ts->cap = cap;
    }
    ts->t[ts->n++] = *t;
    return 0;
}

void argc_free(struct terms *ts)
{
    free(ts->t);
    *ts = (struct terms){0};
}

struct work {
    const struct terms *q;
    struct terms *out;
    long steps;
    struct lit *buf;   /* MAXLIT scratch literals per level of recursion */
    int depth;
};

static int and_from(struct work *w, const struct term *x, const struct term *y, int a)
{
    for (; a < ARGC_NARGS; a++)
        if (y->arg[a].op != LIT_ANY)
            break;
    if (a == ARGC_NARGS)
        return argc_push(w->out, x);
    struct lit *both = w->buf + (size_t)w->depth * MAXLIT;
    int n = and_lit(&x->arg[a], &y->arg[a], both);
    int rc = n < 0 ? n : 0;
    w->depth++;
    for (int i = 0; rc == 0 && i < n; i++) {
        struct term piece = *x;
        piece.arg[a] = both[i];
        rc = and_from(w, &piece, y, a + 1);
    }
    w->depth--;
    return rc;
}

static int alloc_work(struct work *w, int levels)
{
    w->buf = malloc((size_t)levels * MAXLIT * sizeof *w->buf);
    return w->buf ? 0 : -ENOMEM;
}

int argc_and(const struct term *x, const struct term *y, struct terms *out)
{
    struct work w = {.out = out};
    int rc = alloc_work(&w, ARGC_NARGS);
    if (rc == 0)
        rc = and_from(&w, x, y, 0);
    free(w.buf);
    return rc;
}

static int disjoint(const struct term *t, const struct term *q)
{
    struct lit tmp[MAXLIT];
    for (int a = 0; a < ARGC_NARGS; a++)
        if (and_lit(&t->arg[a], &q->arg[a], tmp) == 0)
            return 1;
    return 0;
}

static int sub_one(struct work *w, const struct term *t, int k, int i);

/* out += t minus q[k..]. */
static int sub(struct work *w, const struct term *t, int k)
{
    if (++w->steps > MAX_STEPS)
        return -E2BIG;
    while (k < w->q->n && disjoint(t, &w->q->t[k]))
        k++;
    if (k == w->q->n)
        return argc_push(w->out, t);
    return sub_one(w, t, k, 0);
}

/* The i-th argument that q compares, masked comparisons first and NE last:
 * t minus q is made of t AND NOT q_a for each a in this order, with the
 * comparisons before a taken as they are, so an NE (whose negation is an
 * EQ) is never carried along as it is; -1 past the last. */
static int nth_arg(const struct term *q, int i)
{
    static const int order[] = {LIT_MASK, LIT_LT, LIT_GE, LIT_NE};
    for (int o = 0; o < 4; o++)
        for (int a = 0; a < ARGC_NARGS; a++)
            if (q->arg[a].op == order[o] && i-- == 0)
                return a;
    return -1;
}

/* t minus q[k], for a t that lies inside q[k] on its arguments before the
 * i-th, then minus q[k+1..]: t AND NOT q_a, and (t AND q_a) minus the rest
 * of q[k]. */
static int sub_one(struct work *w, const struct term *t, int k, int i)
{
    const struct term *q = &w->q->t[k];
    int a = nth_arg(q, i);
    if (a < 0)
        return 0; /* t lies inside q[k]: nothing is left */
    struct lit neg[64], *both = w->buf + (size_t)w->depth * MAXLIT;
    int nn = negate(&q->arg[a], neg), rc = 0;
    w->depth++;
    for (int j = 0; rc == 0 && j < nn; j++) {
        int n = and_lit(&t->arg[a], &neg[j], both);
        if (n < 0)
            rc = n;
        for (int m = 0; rc == 0 && m < n; m++) {
            struct term piece = *t;
            piece.arg[a] = both[m];
            rc = sub(w, &piece, k + 1);
        }
    }
    int n = rc ? 0 : and_lit(&t->arg[a], &q->arg[a], both);
    if (n < 0)
        rc = n;
    for (int m = 0; rc == 0 && m < n; m++) {
        struct term piece = *t;
        piece.arg[a] = both[m];
        rc = sub_one(w, &piece, k, i + 1);
    }
    w->depth--;
    return rc;
}

int argc_subtract(const struct term *t, const struct terms *q, struct terms *out)
{
    /* Each q[k] takes at most one level per argument. */
    struct work w = {.q = q, .out = out};
    int rc = alloc_work(&w, (q->n + 1) * ARGC_NARGS);
    if (rc == 0)
        rc = sub(&w, t, 0);
    free(w.buf);
    return rc;
}
