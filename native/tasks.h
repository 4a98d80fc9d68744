/* A group's tasks, as the `processes` cap counts them: the live tasks below
 * its init shims, the clones the engine let go that have not settled yet,
 * and whether the group can still make progress by itself. */
#ifndef GOV_TASKS_H
#define GOV_TASKS_H

#include <stdint.h>

/* A clone the engine let go whose child may not exist yet. Until it settles
 * it counts as one more task. `known`: the children of `tid` and the threads
 * of `tgid` when it was let go; a member not in that list is its child. */
struct gov_clone {
    int tid, tgid;
    int *known;
    int nknown;
    int64_t since;   /* CLOCK_MONOTONIC ns */
};

struct gov_clones {
    struct gov_clone *v;
    int n, cap;
};

/* Records that thread tid's clone was let go (before the answer, while the
 * call still waits). 0 or -errno. */
int gov_clones_add(struct gov_clones *c, int tid);
/* Thread tid is no longer in its clone (it made another call, or the answer
 * failed). */
void gov_clones_drop(struct gov_clones *c, int tid);
void gov_clones_free(struct gov_clones *c);

/* What a walk of the group's trees found. */
struct gov_census {
    int live;       /* live tasks: threads of processes that have not exited */
    int zombies;    /* processes that exited and wait for their parent's wait() */
    int nprocs;     /* process ids stored */
};

/* Called for each live task: its process, its id, and its children as
 * /proc lists them (space-separated ids). Nonzero stops the walk. */
typedef int (*gov_task_fn)(void *arg, int pid, int tid, const char *children);

/* Walks every task below the roots (the roots themselves excluded) through
 * /proc/P/task/T/children. Stores up to `max` process ids in procs (live
 * and zombie); calls fn, if not NULL, for each live task. 0 or -errno. */
int gov_tasks_walk(const int *roots, int nroots, int *procs, int max, gov_task_fn fn, void *arg,
                   struct gov_census *out);

/* The walk, and then settles the clones of `pending` whose child exists, whose
 * thread has left its clone or is gone, or has been running for
 * GOV_CLONE_RUN_NS since (/proc cannot tell whether a task that runs is still
 * in its clone; no clone takes that long, but that of a process with tens of
 * GiB mapped). 0 or -errno. */
#define GOV_CLONE_RUN_NS 50000000LL
int gov_tasks_count(const int *roots, int nroots, struct gov_clones *pending, int *procs, int max,
                    struct gov_census *out);

/* Whether the group is stuck: no live task can make progress unless another
 * task of the group does. `held`: the tasks the engine holds on a cap
 * (processes, memory), which only the group can free; `free_held`: those it
 * holds on something time or the outside releases (rates, data). A task is
 * stuck when it is held on a cap, waits for its children (wait4, waitid),
 * for a futex without a timeout, or for pipes whose other end only the group
 * holds; anything else (running, stopped, sleeping with a timeout, waiting
 * for a signal, which may come from outside, on a socket, a terminal, a
 * file) can make progress. 1: stuck,
 * 0: not, -errno. *cpu_ns: the live tasks' CPU time, to tell two stuck
 * looks apart from a group that ran in between. */
int gov_tasks_stuck(const int *roots, int nroots, const int *held, int nheld,
                    const int *free_held, int nfree, uint64_t *cpu_ns);

#endif
