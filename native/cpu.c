#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cpu.h"

#ifndef SCHED_DEADLINE
#define SCHED_DEADLINE 6
#endif
#ifndef SCHED_FLAG_RESET_ON_FORK
#define SCHED_FLAG_RESET_ON_FORK 0x01
#endif

/* Debian 12's glibc has no sched_setattr wrapper. */
struct sched_attr_v1 {
    uint32_t size;
    uint32_t sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime;
    uint64_t sched_deadline;
    uint64_t sched_period;
};

int gov_cpu_reserve(int tid, uint64_t runtime_ns, uint64_t period_ns)
{
    struct sched_attr_v1 a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    if (runtime_ns) {
        a.sched_policy = SCHED_DEADLINE;
        a.sched_flags = SCHED_FLAG_RESET_ON_FORK;
        a.sched_runtime = runtime_ns;
        a.sched_deadline = period_ns;
        a.sched_period = period_ns;
    } else {
        a.sched_policy = SCHED_OTHER;
    }
    return syscall(SYS_sched_setattr, tid, &a, 0) < 0 ? -errno : 0;
}
