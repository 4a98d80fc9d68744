/* The engine's private parts, shared by its files (none of this is the
 * library's interface: that is engine.h):
 * - engine.c: the loop, its epoll watches and listeners, the groups and the
 *   gov_engine_* / gov_group_* calls;
 * - holds.c: a call's way from arrival to answer: held, released, refused,
 *   interrupted by a signal, failed when its group is stuck;
 * - verdict.c: whether a call fits its group's rates and caps (tasks,
 *   memory, disk space), and charging it;
 * - events.c: what the engine reports: the event ring, and the hold-record
 *   file (keep.h) that outlives a restart;
 * - diskwalk.c: walks of a disk area, off the engine thread (the walker);
 * - wakeups.c: which groups' tenants are woken on the engine's CPU. */
#ifndef GOV_ENGINE_INT_H
#define GOV_ENGINE_INT_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>
#include <linux/seccomp.h>

#include "bucket.h"
#include "classify.h"
#include "diskspace.h"
#include "engine.h"
#include "iowrite.h"
#include "keep.h"
#include "share.h"
#include "shmem.h"
#include "syscalls.h"
#include "tasks.h"
#include "trace.h"

#define MAX_GROUPS 4096
#define EVENT_RING 4096
#define MAX_PROCS 65536
#define MEM_TIDS 64                 /* memory: threads whose process is known (verdict.c mem_tid) */
#define WAKE_TIDS 8                 /* wakeups.c: threads whose last answer is timed */

enum { TAG_LISTENER = 1, TAG_TIMER, TAG_WAKE, TAG_DATA };

struct group;

/* What an epoll event names: a slot of e->watch, by index and generation,
 * never a pointer. Another thread (gov_group_remove, the tracer) or an
 * earlier event of the same batch may free a listener or a hold between
 * epoll_wait and the engine's look at the event; freeing bumps the slot's
 * generation, so the stale event names nothing and is dropped. */
struct watch {
    int tag;                  /* TAG_*, 0: free */
    uint32_t gen;
    void *obj;                /* the listener or hold */
};

struct listener {
    uint64_t key;             /* its watch */
    int fd;
    struct group *g;
    struct listener *next;
};

struct hold {
    int tag;                  /* TAG_DATA while waiting for data */
    uint64_t key;             /* its watch then */
    struct hold *prev, *next;
    struct group *g;
    struct listener *l;       /* seccomp: the listener and notification id */
    uint64_t id;
    struct gov_tracee *t;     /* ptrace: the stopped tracee */
    int pid, nr;
    uint64_t args[6];
    struct gov_call call;
    int tgid;                 /* memory calls: the caller's process, once looked up */
    int res;                  /* the resource it is queued for; -1 waiting for data */
    signed char route[GOV_NRES];  /* shared rates: how it fits its class (share.h) */
    int64_t deadline;         /* waiting for data: SO_RCVTIMEO runs out, 0: never */
    int64_t since;
    int rec;                  /* its slot in the group's record file (keep.h), -1: none */
    struct gov_iocounts io;   /* its thread's counters, read since it made this call */
};

struct memproc {
    int tgid;
    int64_t bytes;
    int64_t start_brk, last_brk;
};

/* A group's tenants' time between an answer and their next call (wakeups.c). */
struct gov_wake {
    struct {
        int pid;
        int64_t answered;     /* 0: its next call is not timed */
    } tid[WAKE_TIDS];         /* the threads last answered, most recent first */
    int calls;                /* notifications this window */
    int64_t min_gap;          /* the shortest gap of the window, 0: none */
    int slow;                 /* windows that found its gap long, less those that did not */
    int off;                  /* 1: its tenants are not woken on the engine's CPU */
};

/* A count of a disk area may serve refusals for this many times as long
 * as its walk took while the area is unchanged, and usage reads walk an
 * area at most once in that time (diskwalk.c). */
#define DISK_REUSE 10

struct group {
    int id;
    int backend;              /* GOV_BACKEND_* */
    unsigned char governed[GOV_NR_SYSCALLS];  /* ptrace-syscall: calls that stop */
    struct gov_limits lim;
    struct gov_bucket b[GOV_NRES];   /* rates: the limit */
    struct gov_share share[GOV_NRES];   /* rates a class shares: guarantee, borrowing */
    struct gov_usage u;
    int inits[64];            /* pid 1 of each spawned root; tasks descend from them */
    int ninits;
    struct listener *listeners;
    struct hold holds;        /* sentinel of the FIFO of held calls */
    int nholds;
    int max_held;             /* nholds never passes it (held_cap) */
    int held_res[GOV_NRES];   /* holds per resource */
    struct group *next_held;  /* list of groups with holds */
    int on_held_list;
    struct gov_clones clones; /* clones let go whose child may not exist yet */
    int zombies;              /* at the last count */
    /* Stall detection (check_stalled): the last look found the group stuck,
     * with this much CPU time used and this many calls made so far. */
    int stall_looks;
    uint64_t stall_cpu, stall_calls;
    int64_t stall_next;
    struct memproc *mem;
    int nmem, cap_mem;
    int64_t shared_mem;       /* shared memory of the group: anonymous, SysV, files */
    struct gov_shmem shmem;   /* memory: its files in memory and SysV segments */
    int64_t mem_recount_at;   /* memory: the next periodic recount (mem_recount_due) */
    int mem_tid[MEM_TIDS][2]; /* memory: thread, its process, read since that recount */
    int nmem_tid;
    struct gov_ledger ledger;
    struct gov_disk *disk;    /* disk_space: the writable area, or NULL */
    double disk_pending;      /* page cache dirtied past the growth charged, since the last
                                 recount: growth the count may lack (settle_dirtied) */
    int disk_over;            /* such growth took the area past its quota (disk_fits) */
    int64_t disk_count_start; /* the last count of the area began then, */
    uint64_t disk_exact_gen;  /* with the area at this generation (and grown); */
    uint64_t disk_exact_grown;
    int64_t disk_exact_until; /* it serves refusals until then (disk_count_current) */
    int64_t disk_walk_after;  /* a usage read walks the area again from then on */
    int disk_counting;        /* a walk before a refusal: COUNT_* (diskwalk.c) */
    struct gov_iowrites iowrites;  /* writes to settle (iowrite.h) */
    /* Its own network interface (gov_group_settle_net), per direction:
     * its totals and the group's usage at the last settlement. */
    uint64_t if_seen[2];
    uint64_t used_seen[2];
    struct gov_keep *keep;    /* the hold-record file (keep.h), or NULL */
    struct gov_wake wake;     /* same-CPU wake-ups (wakeups.c) */
};

struct gov_engine {
    pthread_t thread;
    pthread_mutex_t mu;
    int epfd, timerfd, wakefd, evfd;
    int stop;
    int sync_wakeup;
    int want_sync_wakeup;     /* 0: measure round trips without it */
    int64_t wake_review_at;   /* wakeups.c: the next review of the groups' wake-ups */
    struct group *groups[MAX_GROUPS];
    struct group *held;       /* groups that have holds */
    struct seccomp_notif *req;
    struct seccomp_notif_resp *resp;
    struct seccomp_notif_sizes sizes;
    struct gov_pidfds pidfds;
    struct gov_event ring[EVENT_RING];
    int ring_head, ring_len, overflowed;
    int procs[MAX_PROCS];
    int64_t last_sweep;
    int64_t last_pidfd_sweep;
    int64_t timer_at;         /* 0: disarmed */
    struct gov_tracer *tracer; /* with the first ptrace group */
    struct watch *watch;      /* what epoll events name (struct watch) */
    int nwatch, cap_watch;
    int *free_watch, nfree_watch;
    pthread_t walker;         /* walks disk areas before refusals (diskwalk.c) */
    int walker_on;
    int walked;               /* the group it walked last (its index) */
    pthread_cond_t walk_cv;   /* wakes the walker (CLOCK_MONOTONIC) */
};

enum { GO, WAIT, DENY };   /* verdict() */
enum { COUNT_WANTED = 1, COUNT_WALKING };   /* group.disk_counting */

static inline int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

#pragma GCC visibility push(hidden)

/* engine.c */
void wake(struct gov_engine *e);
int watch_add(struct gov_engine *e, int fd, uint32_t events, int tag, void *obj, uint64_t *key);
void watch_del(struct gov_engine *e, int fd, uint64_t key);
struct group *group_of(struct gov_engine *e, int id);
struct hold *new_hold(struct group *g);
void on_call(struct gov_engine *e, struct hold *h, uint32_t arch);
int listener_add(struct gov_engine *e, struct group *g, int fd, struct listener **out);

/* holds.c */
int respond(struct gov_engine *e, struct listener *l, uint64_t id, int64_t val, int error,
            int cont);
int answer(struct gov_engine *e, struct hold *h, int64_t val, int error, int cont);
void unlink_hold(struct group *g, struct hold *h);
void free_hold(struct gov_engine *e, struct hold *h);
struct gov_shmem *shmem_of(struct group *g);
void reclassify(struct gov_engine *e, struct hold *h);
void decide(struct gov_engine *e, struct group *g, struct hold *h, int64_t now);
void run_holds(struct gov_engine *e);

/* wakeups.c */
int wake_set_sync(int fd, int on);
void wake_answered(struct group *g, int pid);
void wake_notified(struct group *g, int pid);
void wake_review(struct gov_engine *e, int64_t now);

/* verdict.c */
int is_rate(int res);
void settle_returned(void *group, const struct gov_call *c, double got);
void settle_write(void *group, const struct gov_call *c, int what, double wrote, double dirtied);
int64_t count_tasks(struct gov_engine *e, struct group *g, int *nprocs);
struct memproc *mem_proc(struct group *g, int tgid);
int verdict(struct gov_engine *e, struct group *g, struct hold *h, int64_t now, int64_t *wait_ns,
            int fresh, int *why);
int deny_errno(struct hold *h, int res);

/* diskwalk.c */
/* Recounts g's area exactly on this thread, under the lock (fails closed). */
void disk_recount(struct gov_engine *e, struct group *g);
/* Whether the last count may serve h's refusal without walking again:
 * nothing the engine sees has changed the area since (its generation, no
 * pending growth), and it began after h came, or it is recent (DISK_REUSE
 * walks' time: space freed from outside the group is seen then) and was
 * exact (not dirty: no deleted file held open, whose last close frees
 * space unseen, close is not notified; no growth in flight). A count that
 * failed serves as recent. */
int disk_count_current(const struct group *g, const struct hold *h);
/* Asks the walker for a count of g's area before a refusal; the refused
 * call waits for it. 0, or -errno if no walker thread can run. */
int disk_want_count(struct gov_engine *e, struct group *g);
/* 1 if h must wait for the count of its group's area that is asked for: it
 * grows the area (`grows`), or adds, removes or renames a name. */
int disk_walk_holds(const struct group *g, const struct hold *h, int grows);
/* A usage read's walk: recounts g's area unless it was walked a moment
 * ago, with e->mu unlocked meanwhile. g, or NULL if it went meanwhile. */
struct group *disk_usage_walk(struct gov_engine *e, struct group *g);
void disk_walker_stop(struct gov_engine *e);
void settle_now(struct group *g, struct hold *h);
void charge(struct group *g, struct hold *h, int sign);

/* events.c */
void emit(struct gov_engine *e, int type, int group, int res, int pid, int nr, int64_t value);
void keep_received(struct hold *h, uint32_t arch);
void keep_charged(struct hold *h);
void keep_done(struct hold *h);

#pragma GCC visibility pop

#endif
