/* Shared declarations of the governor engine.
 *
 * Error convention, everywhere in native/: a function returns 0 (or a
 * non-negative value) on success and -errno on failure.  C never exits the
 * process and never prints; Python turns -errno into an exception in one place
 * (governor/_errors.py).
 */
#ifndef GOV_H
#define GOV_H

#include <stdint.h>

/* Resources, in the order governor/supervisor.py's RESOURCES lists them. */
enum {
    GOV_NET_SEND,
    GOV_NET_RECV,
    GOV_DISK_WRITE,
    GOV_DISK_READ,
    GOV_PROCESSES,
    GOV_MEMORY,
    GOV_DISK_SPACE,
    GOV_DISK_INODES,
    GOV_NRES
};

enum { GOV_HOLD = 0, GOV_DENY = 1 };

/* How a group's calls reach the engine. */
enum {
    GOV_BACKEND_SECCOMP = 0,        /* SECCOMP_RET_USER_NOTIF */
    GOV_BACKEND_PTRACE = 1,         /* SECCOMP_RET_TRACE + ptrace */
    GOV_BACKEND_PTRACE_SYSCALL = 2, /* PTRACE_SYSCALL at every call */
};

struct gov_limit {
    int set;         /* 0: not limited, the calls are not even intercepted */
    int mode;        /* GOV_HOLD or GOV_DENY */
    double rate;     /* rates: bytes per second */
    double burst;    /* rates: bucket size in bytes */
    int64_t cap;     /* processes: tasks; memory, disk_space: bytes; disk_inodes */
};

struct gov_limits {
    struct gov_limit r[GOV_NRES];
    int fixed_sched;  /* CPU-capped: tasks may not change their scheduling */
    int container;    /* a container: no typing into the terminal (TIOCSTI,
                         TIOCLINUX -> EPERM); binds only its own addresses
                         (setsockopt IP_FREEBIND, IPV6_FREEBIND, IP_TRANSPARENT,
                         IPV6_TRANSPARENT -> EPERM) */
    int trace_clones; /* seccomp backend with a processes cap: the clone family
                         stops in the engine's tracer (RET_TRACE) instead of
                         notifying, and its tasks are traced. A signal that
                         lands before the engine has received a notification
                         fails the call with EINTR; a ptrace stop is not
                         interrupted, so fork keeps its native semantics. */
};

struct gov_res_usage {
    uint64_t used;       /* bytes moved (rates), or the current value (caps) */
    uint64_t held_calls;
    uint64_t held_ns;
    uint64_t denied;
    uint64_t borrowed;   /* rates a class shares: bytes borrowed from it */
};

struct gov_usage {
    struct gov_res_usage r[GOV_NRES];
    int64_t tasks;
    int64_t peak_tasks;
    int64_t memory;
    int64_t peak_memory;
    uint64_t notifications;
    uint64_t compat_denied;   /* governed calls through the i386/x32 entries */
    int64_t held_now;
};

/* Events that the engine reports to Python through a ring and an eventfd. */
enum {
    GOV_EV_HELD = 1,
    GOV_EV_RELEASED,
    GOV_EV_DENIED,
    GOV_EV_COMPAT,
    GOV_EV_LISTENER_CLOSED,
    GOV_EV_OVERFLOW,
    GOV_EV_STALLED,   /* calls held on a cap failed: no task could free it */
    GOV_EV_HELD_CAP,  /* a call that would wait was denied: its group holds
                         its most calls already (gov_group_set_max_held) */
    GOV_EV_SYNC_WAKEUP, /* a group's same-CPU wake-ups, value 1: on, 0: off (wakeups.c) */
};

/* The most directories of a group's disk area (gov_group_disk_area). */
#define GOV_DISK_DIRS 64

/* Held calls per group, unless gov_group_set_max_held says otherwise: each
 * costs the supervisor memory, and a tenant decides how many it makes. */
#define GOV_MAX_HELD 4096

struct gov_event {
    int type;
    int group;
    int resource;
    int pid;
    int nr;          /* the call's number (i386 or x32 table for compat), -1: none */
    int64_t value;   /* held: cost; released: ns held; denied, held_cap: errno;
                        stalled: the cap's level (tasks, bytes) */
};

#endif
