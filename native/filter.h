/* The seccomp filter of a group, built with libseccomp (which handles the
 * i386 and x32 entries of a 64-bit process and builds a binary search tree
 * over syscall numbers). Only the calls that a set limit needs are sent to
 * the supervisor; everything else is allowed by the filter itself, unless
 * the caller's extra rules say otherwise. */
#ifndef GOV_FILTER_H
#define GOV_FILTER_H

#include <stddef.h>
#include <stdint.h>
#include "gov.h"

/* Comparisons of an argument: libseccomp's SCMP_CMP_* values. */
enum {
    GOV_CMP_NE = 1,
    GOV_CMP_LT = 2,
    GOV_CMP_LE = 3,
    GOV_CMP_EQ = 4,
    GOV_CMP_GE = 5,
    GOV_CMP_GT = 6,
    GOV_CMP_MASKED_EQ = 7,  /* (arg & a) == b */
};

/* Actions, in the kernel's order of precedence, lowest first. Extra rules
 * may use all but TRACE and NOTIFY, which are the backends' own. */
enum {
    GOV_ACT_ALLOW,
    GOV_ACT_LOG,
    GOV_ACT_TRACE,
    GOV_ACT_NOTIFY,
    GOV_ACT_ERRNO,
    GOV_ACT_TRAP,
    GOV_ACT_KILL_THREAD,
    GOV_ACT_KILL_PROCESS,
};

enum { GOV_RULE_ARGS = 6, GOV_FILTER_MAX_INSNS = 4096, GOV_MAX_SYSCALL = 1024 };

struct gov_arg_cmp {
    unsigned int arg;  /* 0..5 */
    int op;            /* GOV_CMP_* */
    uint64_t a;        /* the value; GOV_CMP_MASKED_EQ: the mask */
    uint64_t b;        /* GOV_CMP_MASKED_EQ: what arg & mask must equal */
};

/* One extra rule: syscall nr (x86_64 number, below GOV_MAX_SYSCALL, known
 * to libseccomp or not) gets `action` when all its comparisons hold (at
 * most one per argument). */
struct gov_rule {
    int nr;
    int action;        /* GOV_ACT_* */
    int errno_ret;     /* GOV_ACT_ERRNO: the errno, 0..4095 */
    int ncmp;
    struct gov_arg_cmp cmp[6];
};

/* Extra rules and the action of a call that none of them matches. */
struct gov_rules {
    int default_action;   /* GOV_ACT_*; GOV_ACT_ALLOW: as without rules */
    int default_errno;
    int n;
    const struct gov_rule *rule;
};

/* Writes the BPF program (struct sock_filter[]) for a group of `backend`
 * (GOV_BACKEND_*) into buf: the governed calls return USER_NOTIF (seccomp),
 * TRACE (ptrace) or are left to PTRACE_SYSCALL (ptrace-syscall). Under both
 * ptrace backends a tenant may not trace (ptrace: EPERM), nor create an
 * untraced task (clone with CLONE_UNTRACED: EPERM; clone3, whose flags live
 * in memory another thread may change: ENOSYS, and glibc falls back to clone).
 *
 * `extra` (NULL: none) go into the same filter. A call gets the action of
 * the highest-precedence rule it matches, as if the governor's rules and the
 * extra ones were two stacked filters: the governor's with a default of
 * allow, the extra one with extra->default_action. So an extra deny (errno,
 * trap, kill) of a governed call wins over its notification, a governed call
 * that the extra rules merely allow is still governed, a call that no extra
 * rule matches gets the default action if it outranks the governor's rule
 * (ERRNO outranks a notification), and the governor's own denials
 * (io_uring, TIOCSTI...) stay whatever an extra rule allows. At equal
 * precedence the governor's rule wins, then the extra rule listed first.
 * Rules are made disjoint before libseccomp sees them (argcond.h). With
 * extra rules every call through the i386 and x32 tables gets ENOSYS
 * (filter.c says why). Returns the program's length in bytes, or -errno: -EINVAL for a bad
 * rule (syscall number, action, errno, argument, op, or an argument
 * compared twice), -EOPNOTSUPP for ranges that cannot be combined,
 * -E2BIG past ARGC_MAX_TERMS pieces for one syscall or GOV_FILTER_MAX_INSNS
 * instructions, -ENOSPC if buf is too small. */
int gov_filter_build(const struct gov_limits *lim, int backend, const struct gov_rules *extra,
                     void *buf, size_t size);

/* The syscall numbers (x86_64) that the limits govern: 1 in map[nr], for
 * nr < size. The ptrace-syscall backend's filter, in the tracer. */
void gov_filter_governed(const struct gov_limits *lim, unsigned char *map, int size);

#endif
