/* CPU caps without cgroups: each task of a capped group runs under
 * SCHED_DEADLINE with a runtime per period that the supervisor sets, so the
 * kernel throttles it exactly and invisibly (no stop, no signal, nothing a
 * parent can see). SCHED_FLAG_RESET_ON_FORK lets such tasks fork; their
 * children start as normal tasks until the supervisor's next pass. */
#ifndef GOV_CPU_H
#define GOV_CPU_H

#include <stdint.h>

/* 0 or -errno (EBUSY: the host has no deadline bandwidth left; EPERM: the
 * task's CPU affinity does not span every CPU). runtime_ns 0: back to
 * SCHED_OTHER. */
int gov_cpu_reserve(int tid, uint64_t runtime_ns, uint64_t period_ns);

#endif
