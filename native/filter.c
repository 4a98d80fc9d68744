#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sched.h>
#include <sys/mman.h>
#include <netinet/in.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <fcntl.h>

#include "argcond.h"
#include "filter.h"
#include "shmem.h"
#include "syscalls.h"

_Static_assert(GOV_CMP_NE == (int)SCMP_CMP_NE && GOV_CMP_LT == (int)SCMP_CMP_LT &&
                   GOV_CMP_LE == (int)SCMP_CMP_LE && GOV_CMP_EQ == (int)SCMP_CMP_EQ &&
                   GOV_CMP_GE == (int)SCMP_CMP_GE && GOV_CMP_GT == (int)SCMP_CMP_GT &&
                   GOV_CMP_MASKED_EQ == (int)SCMP_CMP_MASKED_EQ,
               "GOV_CMP_* are libseccomp's SCMP_CMP_*");

/* io_uring and native AIO move bytes without a governed call: refuse them
 * as a kernel built without them would, so programs fall back to ordinary
 * calls (glibc's POSIX aio runs on threads that make ordinary calls). */
static const char *const refused_calls[] = {
    "io_uring_setup", "io_uring_enter", "io_uring_register", "io_setup", "io_submit",
    "io_getevents", "io_pgetevents", "io_cancel", "io_destroy", NULL};
/* setxattrat (Linux 6.13), newer than libseccomp's table: refused in a
 * group with a disk area, as by a kernel without it, so that attributes
 * come through the setxattr calls that are charged. libseccomp cannot
 * carry a number it does not know to the i386 and x32 tables: a group with
 * a disk area refuses those whole, as with extra rules (build_ctx). */
#define NR_SETXATTRAT 463
/* A CPU-capped group runs under SCHED_DEADLINE reservations (cpu.h) that its
 * tasks must not replace, nor make impossible: the kernel refuses one to a
 * task whose affinity was narrowed (a child forked, not yet reserved, that
 * pinned itself to one CPU ran uncapped). */
static const char *const sched_calls[] = {
    "sched_setattr", "sched_setscheduler", "sched_setparam", "sched_setaffinity", NULL};

/* A container binds only addresses of its own network namespace: the
 * options that let a socket bind an address it does not have get EPERM.
 * Compared on the registers, so there is no pointer to race. */
static const struct {
    int level, opt;
} nonlocal_bind_opts[] = {
    {IPPROTO_IP, IP_FREEBIND},
    {IPPROTO_IP, IP_TRANSPARENT},
    {IPPROTO_IPV6, IPV6_FREEBIND},
    {IPPROTO_IPV6, IPV6_TRANSPARENT},
};

/* ---- the rules of a filter, before libseccomp sees them ---- */

/* One rule: a syscall, an action (libseccomp's), the comparisons that must
 * all hold. `extra` marks the caller's rules; `seq` keeps the order added. */
struct rule {
    int nr;
    uint32_t action;
    int extra, seq;
    int ncmp;
    struct gov_arg_cmp cmp[GOV_RULE_ARGS];
};

struct rule_list {
    struct rule *r;
    int n, cap;
};

/* The kernel's order of precedence between actions (GOV_ACT_*): when a
 * call matches several rules, the highest one decides. */
static int precedence(uint32_t action)
{
    switch (action & 0xffff0000U) {
    case SCMP_ACT_KILL_PROCESS:
        return GOV_ACT_KILL_PROCESS;
    case SCMP_ACT_KILL_THREAD:
        return GOV_ACT_KILL_THREAD;
    case SCMP_ACT_TRAP:
        return GOV_ACT_TRAP;
    case SCMP_ACT_ERRNO(0):
        return GOV_ACT_ERRNO;
    case SCMP_ACT_NOTIFY:
        return GOV_ACT_NOTIFY;
    case SCMP_ACT_TRACE(0):
        return GOV_ACT_TRACE;
    case SCMP_ACT_LOG:
        return GOV_ACT_LOG;
    }
    return GOV_ACT_ALLOW;
}

static int push_rule(struct rule_list *l, int nr, uint32_t action, int ncmp,
                     const struct gov_arg_cmp *cmp, int extra)
{
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        struct rule *p = realloc(l->r, (size_t)cap * sizeof *p);
        if (!p)
            return -ENOMEM;
        l->r = p;
        l->cap = cap;
    }
    struct rule *r = &l->r[l->n];
    *r = (struct rule){.nr = nr, .action = action, .extra = extra, .seq = l->n, .ncmp = ncmp};
    if (ncmp)  /* cmp may be NULL then, and memcpy's arguments must not */
        memcpy(r->cmp, cmp, (size_t)ncmp * sizeof *cmp);
    l->n++;
    return 0;
}

static int add_named(struct rule_list *l, uint32_t action, const char *name, int ncmp,
                     const struct gov_arg_cmp *cmp)
{
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR)
        return -EINVAL;
    return push_rule(l, nr, action, ncmp, cmp, 0);
}

/* An unconditional rule. */
static int add_call(struct rule_list *l, uint32_t action, const char *name)
{
    return add_named(l, action, name, 0, NULL);
}

/* 1 << r for every limit set. */
static unsigned limits_set(const struct gov_limits *lim)
{
    unsigned set = 0;
    for (int r = 0; r < GOV_NRES; r++)
        if (lim->r[r].set)
            set |= 1u << r;
    return set;
}

/* The governed calls (syscalls.h) that the limits stop get `action`, each
 * whole or where it matches a condition; with lim->trace_clones the clone
 * family stops in the tracer (RET_TRACE) instead. */
static int add_governed(struct rule_list *l, const struct gov_limits *lim, uint32_t action)
{
    unsigned set = limits_set(lim);
    int rc = 0;
    for (int nr = 0; rc == 0 && nr < GOV_NR_SYSCALLS; nr++) {
        const struct gov_syscall *c = gov_syscall_of(nr);
        if (!c || !((c->always | c->when) & set))
            continue;
        uint32_t act = lim->trace_clones && (c->flags & GOV_SYS_CLONE) ? SCMP_ACT_TRACE(0) : action;
        if (c->always & set)
            rc = push_rule(l, nr, act, 0, NULL, 0);
        for (int i = 0; rc == 0 && !(c->always & set) && i < c->ncond; i++)
            rc = push_rule(l, nr, act, c->cond[i].ncmp, c->cond[i].cmp, 0);
    }
    return rc;
}

void gov_filter_governed(const struct gov_limits *lim, unsigned char *map, int size)
{
    /* ptrace-syscall stops at every call: the engine looks at the flags. */
    unsigned set = limits_set(lim);
    for (int nr = 0; nr < size; nr++) {
        const struct gov_syscall *c = gov_syscall_of(nr);
        map[nr] = c && ((c->always | c->when) & set);
    }
}

static int has_area(const struct gov_limits *lim)
{
    return lim->r[GOV_DISK_SPACE].set || lim->r[GOV_DISK_INODES].set;
}

/* What keeps a tracee traced (see filter.h). The traced clone without
 * CLONE_UNTRACED and clone3 -> ENOSYS win over a governed TRACE by
 * precedence. The flag test is on the register: no TOCTOU. */
static int add_untraceable(struct rule_list *l)
{
    struct gov_arg_cmp untraced = {0, GOV_CMP_MASKED_EQ, CLONE_UNTRACED, CLONE_UNTRACED};
    int rc;
    if ((rc = add_named(l, SCMP_ACT_ERRNO(EPERM), "ptrace", 0, NULL)) < 0 ||
        (rc = add_named(l, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL)) < 0)
        return rc;
    return add_named(l, SCMP_ACT_ERRNO(EPERM), "clone", 1, &untraced);
}

/* What a container may not do (gov.h). A container shares the terminal of
 * `governor run`: TIOCSTI (and a console's TIOCLINUX) would let container
 * root type commands into the host's shell; the kernel reads the request as
 * an unsigned int, so only its low 32 bits are compared. And it binds only
 * addresses it has. */
static int add_container_rules(struct rule_list *l)
{
    static const unsigned long requests[] = {TIOCSTI, TIOCLINUX};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof requests / sizeof requests[0]; i++) {
        struct gov_arg_cmp c = {1, GOV_CMP_MASKED_EQ, 0xffffffffUL, requests[i]};
        rc = add_named(l, SCMP_ACT_ERRNO(EPERM), "ioctl", 1, &c);
    }
    for (size_t i = 0; rc == 0 && i < sizeof nonlocal_bind_opts / sizeof nonlocal_bind_opts[0];
         i++) {
        struct gov_arg_cmp c[2] = {
            {1, GOV_CMP_EQ, (uint64_t)nonlocal_bind_opts[i].level, 0},
            {2, GOV_CMP_EQ, (uint64_t)nonlocal_bind_opts[i].opt, 0},
        };
        rc = add_named(l, SCMP_ACT_ERRNO(EPERM), "setsockopt", 2, c);
    }
    /* i386 socketcall passes its arguments in memory, where no filter can
     * see the option: refused, as a kernel without it would. */
    if (rc == 0)
        rc = add_named(l, SCMP_ACT_ERRNO(ENOSYS), "socketcall", 0, NULL);
    return rc;
}

/* A memory-limited group keeps pipes at their default size: F_SETPIPE_SZ
 * above 64 KiB gets EPERM, as an unprivileged process over
 * fs.pipe-max-size does (shmem.h counts a pipe as 64 KiB). Compared on the
 * registers: no pointer to race. And it has no secret memory (memfd_secret:
 * pages no file handle finds again, bounded only by RLIMIT_MEMLOCK, which
 * root passes): ENOSYS, as from a kernel without it. */
static int add_memory_refusals(struct rule_list *l)
{
    struct gov_arg_cmp pipe_sz[2] = {
        {1, GOV_CMP_EQ, F_SETPIPE_SZ, 0},
        {2, GOV_CMP_GT, GOV_PIPE_BYTES, 0},
    };
    int rc = add_named(l, SCMP_ACT_ERRNO(EPERM), "fcntl", 2, pipe_sz);
    return rc < 0 ? rc : add_call(l, SCMP_ACT_ERRNO(ENOSYS), "memfd_secret");
}

static int governor_rules(const struct gov_limits *lim, int backend, struct rule_list *l)
{
    int rc = 0;
    int traced = backend != GOV_BACKEND_SECCOMP || lim->trace_clones;
    if (backend != GOV_BACKEND_PTRACE_SYSCALL)
        rc = add_governed(l, lim, backend == GOV_BACKEND_SECCOMP ? SCMP_ACT_NOTIFY
                                                                 : SCMP_ACT_TRACE(0));
    if (rc < 0 || (traced && (rc = add_untraceable(l)) < 0))
        return rc;
    for (const char *const *n = refused_calls; *n; n++)
        if ((rc = add_call(l, SCMP_ACT_ERRNO(ENOSYS), *n)) < 0)
            return rc;
    for (const char *const *n = sched_calls; lim->fixed_sched && *n; n++)
        if ((rc = add_call(l, SCMP_ACT_ERRNO(EPERM), *n)) < 0)
            return rc;
    if (lim->r[GOV_MEMORY].set && (rc = add_memory_refusals(l)) < 0)
        return rc;
    return lim->container ? add_container_rules(l) : 0;
}

/* ---- the caller's rules ---- */

/* libseccomp's action for GOV_ACT_* (kill, trap, errno, log, allow: trace
 * and notify are the backend's); 0 with *out set, or -EINVAL. */
static int extra_action(int kind, int err, uint32_t *out)
{
    switch (kind) {
    case GOV_ACT_ALLOW:
        *out = SCMP_ACT_ALLOW;
        return 0;
    case GOV_ACT_LOG:
        *out = SCMP_ACT_LOG;
        return 0;
    case GOV_ACT_ERRNO:
        if (err < 0 || err > 4095)
            return -EINVAL;
        *out = SCMP_ACT_ERRNO((uint32_t)err);
        return 0;
    case GOV_ACT_TRAP:
        *out = SCMP_ACT_TRAP;
        return 0;
    case GOV_ACT_KILL_THREAD:
        *out = SCMP_ACT_KILL_THREAD;
        return 0;
    case GOV_ACT_KILL_PROCESS:
        *out = SCMP_ACT_KILL_PROCESS;
        return 0;
    }
    return -EINVAL;
}

static int check_extra(const struct gov_rule *r, uint32_t *action)
{
    /* Numbers newer than libseccomp's table are taken as they are. */
    if (r->nr < 0 || r->nr >= GOV_MAX_SYSCALL)
        return -EINVAL;
    if (r->ncmp < 0 || r->ncmp > GOV_RULE_ARGS)
        return -EINVAL;
    unsigned seen = 0;
    for (int i = 0; i < r->ncmp; i++) {
        const struct gov_arg_cmp *c = &r->cmp[i];
        if (c->arg >= GOV_RULE_ARGS || (seen & (1u << c->arg)) || c->op < GOV_CMP_NE ||
            c->op > GOV_CMP_MASKED_EQ)
            return -EINVAL;
        seen |= 1u << c->arg;
    }
    return extra_action(r->action, r->errno_ret, action);
}

/* ---- rules to libseccomp: one syscall at a time ---- */

static int by_syscall_then_rank(const void *pa, const void *pb)
{
    const struct rule *a = pa, *b = pb;
    if (a->nr != b->nr)
        return a->nr < b->nr ? -1 : 1;
    int pa_ = precedence(a->action), pb_ = precedence(b->action);
    if (pa_ != pb_)
        return pa_ > pb_ ? -1 : 1;
    if (a->extra != b->extra)
        return a->extra - b->extra; /* at equal precedence, the governor's first */
    return a->seq - b->seq;
}

/* The rule's condition as a term: 1, or 0 if it never holds. */
static int rule_term(const struct rule *r, struct term *t)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; i < r->ncmp; i++) {
        const struct gov_arg_cmp *c = &r->cmp[i];
        int rc = argc_lit(c->op, c->a, c->b, &t->arg[c->arg]);
        if (rc <= 0)
            return rc;
    }
    return 1;
}

static int emit_masks(scmp_filter_ctx ctx, int nr, uint32_t action, struct term *t, int a,
                      int *budget);

/* One rule into libseccomp. libseccomp 2.5.4 can hang adding rules that
 * share a first comparison of NE, LT or GE followed by another comparison;
 * it never did with those on a rule's last argument only (4000 random rule
 * sets; 8 in 3000 hung otherwise). So such comparisons on any other
 * argument are made masked ones first (argc_masks). */
static int emit(scmp_filter_ctx ctx, int nr, uint32_t action, const struct term *t)
{
    struct scmp_arg_cmp cmp[ARGC_NARGS];
    unsigned n = 0;
    for (unsigned a = 0; a < ARGC_NARGS; a++) {
        if (t->arg[a].op == LIT_ANY)
            continue;
        int op;
        argc_cmp(&t->arg[a], &op, &cmp[n].datum_a, &cmp[n].datum_b);
        cmp[n].arg = a;
        cmp[n++].op = (enum scmp_compare)op;
    }
    for (unsigned i = 0; i + 1 < n; i++)
        if (cmp[i].op != SCMP_CMP_EQ && cmp[i].op != SCMP_CMP_MASKED_EQ) {
            struct term copy = *t;
            int budget = ARGC_MAX_TERMS;
            return emit_masks(ctx, nr, action, &copy, (int)cmp[i].arg, &budget);
        }
    return seccomp_rule_add_array(ctx, action, nr, n, cmp);
}

/* t with every NE, LT or GE before its last argument, from argument a on,
 * made masked comparisons. */
static int emit_masks(scmp_filter_ctx ctx, int nr, uint32_t action, struct term *t, int a,
                      int *budget)
{
    int last = ARGC_NARGS - 1;
    while (last > 0 && t->arg[last].op == LIT_ANY)
        last--;
    while (a < last && (t->arg[a].op == LIT_ANY || t->arg[a].op == LIT_MASK))
        a++;
    if (a >= last)
        return --*budget < 0 ? -E2BIG : emit(ctx, nr, action, t);
    struct lit masks[ARGC_MAX_MASKS], saved = t->arg[a];
    int n = argc_masks(&saved, masks), rc = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        t->arg[a] = masks[i];
        rc = emit_masks(ctx, nr, action, t, a + 1, budget);
    }
    t->arg[a] = saved;
    return rc;
}

/* The rules r[0..n) of one syscall, sorted by rank, into ctx: each rule
 * gets the calls that it matches and no rule before it does, so the pieces
 * handed to libseccomp are disjoint. Calls that no extra rule matches get
 * the default action, which outranks every rule of lower precedence. */
static int add_syscall(scmp_filter_ctx ctx, const struct rule *r, int n, uint32_t def)
{
    struct terms extra = {0}, covered = {0}, base = {0}, pieces = {0};
    struct term t;
    int rc = 0;
    for (int i = 0; rc == 0 && i < n; i++)
        if (r[i].extra && (rc = rule_term(&r[i], &t)) > 0)
            rc = argc_push(&extra, &t);
    for (int i = 0; rc >= 0 && i < n; i++) {
        if ((rc = rule_term(&r[i], &t)) <= 0)
            continue;
        base.n = pieces.n = 0;
        if (r[i].action != def) {
            if (!r[i].extra && precedence(r[i].action) < precedence(def))
                for (int j = 0; rc >= 0 && j < extra.n; j++)
                    rc = argc_and(&t, &extra.t[j], &base);
            else
                rc = argc_push(&base, &t);
            for (int j = 0; rc >= 0 && j < base.n; j++)
                rc = argc_subtract(&base.t[j], &covered, &pieces);
            for (int j = 0; rc >= 0 && j < pieces.n; j++)
                rc = emit(ctx, r[i].nr, r[i].action, &pieces.t[j]);
        }
        if (rc >= 0)
            rc = argc_push(&covered, &t);
    }
    argc_free(&extra);
    argc_free(&covered);
    argc_free(&base);
    argc_free(&pieces);
    return rc < 0 ? rc : 0;
}

/* The filter of all rules. Without extra rules (nor a disk area: filter
 * rules by number, NR_SETXATTRAT) the governor's go to the
 * native, i386 and x32 tables: governed calls through the latter are
 * notified too and refused by the engine (their own comparisons are of
 * values below 2^32, which libseccomp compares on 32 bits there alike).
 * With them the i386 and x32 tables are refused whole (ENOSYS, the
 * bad-arch action): 32-bit programs are not supported under the governor,
 * and there libseccomp compares arguments on 32 bits and routes i386
 * socket calls through socketcall, where a rule on an argument is lost
 * (a setsockopt rule on its fd vanished from the direct call). */
static int build_ctx(struct rule_list *l, uint32_t def, int with_extra, scmp_filter_ctx *out)
{
    qsort(l->r, (size_t)l->n, sizeof *l->r, by_syscall_then_rank);
    scmp_filter_ctx ctx = seccomp_init(def);
    if (!ctx)
        return -ENOMEM;
    /* libseccomp's binary tree: an ungoverned call costs the same with 40
     * rules as with 4. */
    int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    if (rc == 0)
        rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
    if (rc == 0 && with_extra)
        rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_ERRNO(ENOSYS));
    if (rc == 0 && !with_extra && (rc = seccomp_arch_add(ctx, SCMP_ARCH_X86)) == 0)
        rc = seccomp_arch_add(ctx, SCMP_ARCH_X32);
    for (int i = 0, j; rc == 0 && i < l->n; i = j) {
        for (j = i; j < l->n && l->r[j].nr == l->r[i].nr; j++)
            ;
        rc = add_syscall(ctx, &l->r[i], j - i, def);
    }
    if (rc < 0) {
        seccomp_release(ctx);
        ctx = NULL;
    }
    *out = ctx;
    return rc;
}

int gov_filter_build(const struct gov_limits *lim, int backend, const struct gov_rules *extra,
                     void *buf, size_t size)
{
    struct rule_list l = {0};
    scmp_filter_ctx ctx = NULL;
    uint32_t def = SCMP_ACT_ALLOW, action;
    int rc, memfd = -1;
    if (backend < GOV_BACKEND_SECCOMP || backend > GOV_BACKEND_PTRACE_SYSCALL)
        return -EINVAL;
    if (extra && (extra->n < 0 || (extra->n && !extra->rule) ||
                  extra_action(extra->default_action, extra->default_errno, &def) < 0))
        return -EINVAL;
    if ((rc = governor_rules(lim, backend, &l)) < 0)
        goto out;
    for (int i = 0; extra && i < extra->n; i++)
        if ((rc = check_extra(&extra->rule[i], &action)) < 0 ||
            (rc = push_rule(&l, extra->rule[i].nr, action, extra->rule[i].ncmp,
                            extra->rule[i].cmp, 1)) < 0)
            goto out;
    if (has_area(lim) &&
        (rc = push_rule(&l, NR_SETXATTRAT, SCMP_ACT_ERRNO(ENOSYS), 0, NULL, 0)) < 0)
        goto out;
    if ((rc = build_ctx(&l, def, extra != NULL || has_area(lim), &ctx)) < 0)
        goto out;

    /* libseccomp 2.5 exports only to an fd. */
    memfd = memfd_create("gov-filter", MFD_CLOEXEC);
    if (memfd < 0) {
        rc = -errno;
        goto out;
    }
    if ((rc = seccomp_export_bpf(ctx, memfd)) < 0)
        goto out;
    off_t len = lseek(memfd, 0, SEEK_END);
    if (len < 0 || len / 8 > GOV_FILTER_MAX_INSNS || (size_t)len > size) {
        rc = len < 0 ? -errno : len / 8 > GOV_FILTER_MAX_INSNS ? -E2BIG : -ENOSPC;
        goto out;
    }
    ssize_t got = pread(memfd, buf, (size_t)len, 0);
    rc = got == len ? (int)len : -EIO;
out:
    if (memfd >= 0)
        close(memfd);
    if (ctx)
        seccomp_release(ctx);
    free(l.r);
    return rc;
}
