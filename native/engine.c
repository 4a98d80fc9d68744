#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "bucket.h"
#include "classify.h"
#include "diskspace.h"
#include "engine.h"
#include "fault.h"
#include "filter.h"
#include "iowrite.h"
#include "keep.h"
#include "procfs.h"
#include "share.h"
#include "shmem.h"
#include "tasks.h"
#include "trace.h"

/* Debian 12's headers predate kernel 6.6. */
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif

#define MAX_GROUPS 4096
#define EVENT_RING 4096
#define CAP_RECHECK_NS 20000000LL   /* caps free up without a syscall: poll */
#define MEM_RECOUNT_NS 1000000000LL /* memory: a recount at least this often (mem_recount_due) */
#define SWEEP_NS 100000000LL        /* drop holds whose task went away */
#define MAX_PROCS 65536
#define SIGNAL_SWEEP_NS 20000000LL  /* held calls that a signal may interrupt: looked at */
/* The kernel's restart codes: a call that returns one of them is restarted
 * once the signal is handled (ERESTARTSYS: only with SA_RESTART, else it
 * fails with EINTR). */
#define ERESTARTSYS 512
#define ERESTARTNOINTR 513
#define NR_SYSCALLS 512
#define STALL_NS 200000000LL      /* cap holds this old: is the group stuck? */
#define PIDFD_SWEEP_NS 1000000000LL /* pidfds of exited tasks closed this often */
#define KEEP_ID_PROBE 256           /* ids past the last recorded one, looked at on resume */

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

struct group {
    int id;
    int backend;              /* GOV_BACKEND_* */
    unsigned char governed[NR_SYSCALLS];  /* ptrace-syscall: calls that stop */
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
    struct gov_ledger ledger;
    struct gov_disk *disk;    /* disk_space: the writable area, or NULL */
    double disk_pending;      /* page cache dirtied past the growth charged, since the last
                                 recount: growth the count may lack (settle_dirtied) */
    int disk_over;            /* such growth took the area past its quota (disk_fits) */
    struct gov_iowrites iowrites;  /* writes to settle (iowrite.h) */
    /* Its own network interface (gov_group_settle_net), per direction:
     * its totals and the group's usage at the last settlement. */
    uint64_t if_seen[2];
    uint64_t used_seen[2];
    struct gov_keep *keep;    /* the hold-record file (keep.h), or NULL */
};

struct gov_engine {
    pthread_t thread;
    pthread_mutex_t mu;
    int epfd, timerfd, wakefd, evfd;
    int stop;
    int sync_wakeup;
    int want_sync_wakeup;     /* 0: measure round trips without it */
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
};

/* ---- epoll's view: watches ---- */

/* Adds fd to epoll as a watch of obj; its key in *key. 0 or -errno. */
static int watch_add(struct gov_engine *e, int fd, uint32_t events, int tag, void *obj,
                     uint64_t *key)
{
    if (!e->nfree_watch && e->nwatch == e->cap_watch) {
        int cap = e->cap_watch ? e->cap_watch * 2 : 64;
        struct watch *w = realloc(e->watch, sizeof *w * cap);
        int *f = w ? realloc(e->free_watch, sizeof *f * cap) : NULL;
        if (w)
            e->watch = w;
        if (!f)
            return -ENOMEM;
        e->free_watch = f;
        e->cap_watch = cap;
    }
    int i = e->nfree_watch ? e->free_watch[--e->nfree_watch] : e->nwatch;
    if (i == e->nwatch)
        e->watch[e->nwatch++].gen = 0;
    struct watch *w = &e->watch[i];
    w->tag = tag;
    w->obj = obj;
    *key = (uint64_t)w->gen << 32 | (uint32_t)i;
    struct epoll_event ev = {.events = events, .data.u64 = *key};
    if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int err = errno;
        w->tag = 0;
        w->obj = NULL;
        w->gen++;
        e->free_watch[e->nfree_watch++] = i;
        return -err;
    }
    return 0;
}

/* Takes fd out of epoll and frees its watch: events already reported for
 * it name nothing now. */
static void watch_del(struct gov_engine *e, int fd, uint64_t key)
{
    int i = (int)(uint32_t)key;
    epoll_ctl(e->epfd, EPOLL_CTL_DEL, fd, NULL);
    e->watch[i].tag = 0;
    e->watch[i].obj = NULL;
    e->watch[i].gen++;
    e->free_watch[e->nfree_watch++] = i;
}

/* The live watch an event names, or NULL (freed since). */
static struct watch *watch_of(struct gov_engine *e, uint64_t key)
{
    uint32_t i = (uint32_t)key;
    if (i >= (uint32_t)e->nwatch || e->watch[i].gen != (uint32_t)(key >> 32) || !e->watch[i].tag)
        return NULL;
    return &e->watch[i];
}

static struct group *group_of(struct gov_engine *e, int id);

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void emit(struct gov_engine *e, int type, int group, int res, int pid, int nr,
                 int64_t value)
{
    if (e->ring_len == EVENT_RING) {
        e->overflowed = 1;
        return;
    }
    if (e->overflowed) {
        e->overflowed = 0;
        emit(e, GOV_EV_OVERFLOW, group, -1, 0, -1, 0);
    }
    e->ring[(e->ring_head + e->ring_len++) % EVENT_RING] =
        (struct gov_event){type, group, res, pid, nr, value};
    uint64_t one = 1;
    ssize_t n = write(e->evfd, &one, sizeof one);
    (void)n;
}

/* ---- the hold-record file (keep.h): received calls outlive a restart ---- */

static void keep_received(struct hold *h, uint32_t arch)
{
    struct group *g = h->g;
    if (g->keep)
        h->rec = gov_keep_note(g->keep, h->id, h->pid, h->nr, arch, h->args, &g->u);
}

static void keep_charged(struct hold *h)
{
    if (h->rec >= 0)
        gov_keep_charged(h->g->keep, h->rec, &h->g->u);
}

/* h's call is answered, or no longer waits. */
static void keep_done(struct hold *h)
{
    if (h->rec >= 0)
        gov_keep_clear(h->g->keep, h->rec, &h->g->u);
    h->rec = -1;
}

/* ---- answering the kernel ---- */

/* 0, or -errno (-ENOENT: the task was interrupted or died meanwhile). */
static int respond(struct gov_engine *e, struct listener *l, uint64_t id, int64_t val,
                   int error, int cont)
{
    memset(e->resp, 0, e->sizes.seccomp_notif_resp);
    e->resp->id = id;
    e->resp->val = val;
    e->resp->error = error;
    e->resp->flags = cont ? SECCOMP_USER_NOTIF_FLAG_CONTINUE : 0;
    return ioctl(l->fd, SECCOMP_IOCTL_NOTIF_SEND, e->resp) < 0 ? -errno : 0;
}

/* ---- answering a call: the one place where the backends differ ---- */

/* Reads are charged, under ptrace, what they returned (at their exit stop);
 * so are writes whose size comes from iovecs in tenant memory, which another
 * thread may change after the engine read them (iowrite.h). */
static int charged_at_exit(int nr)
{
    return nr == SYS_read || nr == SYS_readv || nr == SYS_pread64 || nr == SYS_preadv ||
           nr == SYS_preadv2 || nr == SYS_recvfrom || nr == SYS_recvmsg || nr == SYS_splice ||
           nr == SYS_sendfile || nr == SYS_copy_file_range || gov_iowrite_is(nr) ||
           nr == SYS_sendmsg;
}

/* The tracee of a ptrace hold, no longer held by it. */
static struct gov_tracee *unhold(struct hold *h)
{
    struct gov_tracee *t = h->t;
    h->t = NULL;
    if (t)
        t->hold = NULL;
    return t;
}

/* What a call let run now is settled against later (iowrite.h): under
 * seccomp what an iovec write wrote; the page cache a write dirtied, in a
 * group with disk_space, and with disk_write when it was charged as no file
 * (one charged as a file was charged what it asked, whichever file it
 * lands in). Read before it runs. */
static void note_write(struct gov_engine *e, struct hold *h)
{
    struct group *g = h->g;
    int what = 0;
    if (h->l && h->call.moves && gov_iowrite_is(h->nr))
        what |= GOV_IOW_WROTE;
    if (gov_iowrite_may_dirty(h->nr) &&
        (g->disk || (g->lim.r[GOV_DISK_WRITE].set && !(h->call.moves & (1u << GOV_DISK_WRITE)))))
        what |= GOV_IOW_DIRTIED;
    if (what)
        gov_iowrite_note(&g->iowrites, &e->pidfds, h->pid, h->nr, what, &h->call, &h->io);
}

/* Lets h's call run (cont), or makes it return val, or fail with error.
 * 0, or -ENOENT when the task no longer waits (interrupted or gone). */
static int answer(struct gov_engine *e, struct hold *h, int64_t val, int error, int cont)
{
    if (cont)
        note_write(e, h);
    if (h->l) {
        int rc = respond(e, h->l, h->id, val, error, cont);
        keep_done(h);
        return rc;
    }
    struct gov_tracee *t = unhold(h);
    if (!t)
        return -ENOENT;
    if (cont && charged_at_exit(h->nr)) {
        t->at_exit = 1;
        t->exit_call = h->call;
        t->exit_call.wait_fd = -1;
    }
    gov_tracer_answer(e->tracer, t, cont ? GOV_TR_GO : GOV_TR_DENY, error ? error : val);
    return 0;
}

/* How a signal meets a held call: as it would meet the call natively. A
 * held task does not wake for signals by itself (seccomp: the listener's
 * wait is killable once received; ptrace: the task is stopped), so the
 * engine looks for them (still_waits). */
enum {
    SIG_WAITS,       /* file I/O, memory: the signal comes once the call is done */
    SIG_RESTARTS,    /* fork: the handler runs, then the call starts again */
    SIG_INTERRUPTS,  /* a socket call that would block natively: EINTR, or a
                        restart with SA_RESTART */
};

static int signal_effect(const struct hold *h)
{
    if (h->tag == TAG_DATA || h->res == GOV_NET_SEND || h->res == GOV_NET_RECV)
        return SIG_INTERRUPTS;
    return h->res == GOV_PROCESSES ? SIG_RESTARTS : SIG_WAITS;
}

/* Whether the engine must watch h's task for signals. Under seccomp a
 * signal whose default action ends the process kills a killable waiter by
 * itself; a ptrace-stopped tracee wakes for SIGKILL only. */
static int watch_signals(const struct hold *h)
{
    return h->t || signal_effect(h) != SIG_WAITS;
}

/* Whether h's task still waits in its call: 0 once it is gone, or once a
 * pending signal took it out of the call, as the kernel would have (it then
 * comes back as a new call, never charged twice). Only signals that will
 * reach this thread count: its own, or its process's when it is the only
 * thread (another thread may take those, and a restart code must never
 * reach a thread without a signal to handle). */
static int still_waits(struct gov_engine *e, struct hold *h, int sweep)
{
    if (h->l && sweep && ioctl(h->l->fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &h->id) != 0) {
        keep_done(h);
        return 0;
    }
    if (!h->l && !h->t)
        return 0;
    if (!watch_signals(h))
        return 1;
    int effect = signal_effect(h), sigs = gov_task_signals(h->pid);
    int code = 0;
    if (sigs <= 0)
        return 1; /* none, or gone: the listener or the tracer sees it go */
    if (effect == SIG_RESTARTS && (sigs & GOV_SIG_DELIVERABLE))
        code = ERESTARTNOINTR;
    else if (effect == SIG_INTERRUPTS && (sigs & GOV_SIG_DELIVERABLE))
        code = h->call.timeout_ns ? EINTR : ERESTARTSYS; /* as a timed receive does */
    else if (sigs & GOV_SIG_FATAL)
        code = ERESTARTNOINTR; /* it dies on its way out */
    else
        return 1;
    if (h->l) {
        respond(e, h->l, h->id, 0, -code, 0);
        keep_done(h);
    } else
        gov_tracer_answer(e->tracer, unhold(h), GOV_TR_INTERRUPT, code);
    return 0;
}

/* ---- caps: tasks and committed memory ---- */

static int is_rate(int res)
{
    return res != GOV_PROCESSES && res != GOV_MEMORY && res != GOV_DISK_SPACE &&
           res != GOV_DISK_INODES;
}

/* A write's fd was looked at when the call arrived, and another thread may
 * have made its number name another file before the kernel used it (dup2;
 * iowrite.h). disk_write: a call charged as no file that dirtied page cache
 * wrote a file, and takes what it dirtied as a debt. disk_space: page cache
 * dirtied past the growth charged may be growth of another file of the area
 * (or an in-place rewrite of clean pages: the count cannot tell), pending
 * until the next recount (disk_fits). */
static void settle_dirtied(struct group *g, const struct gov_call *c, double dirtied)
{
    if (dirtied <= 0)
        return;
    if (g->lim.r[GOV_DISK_WRITE].set && !(c->moves & (1u << GOV_DISK_WRITE))) {
        gov_bucket_charge(&g->b[GOV_DISK_WRITE], dirtied);
        g->u.r[GOV_DISK_WRITE].used += (int64_t)dirtied;
    }
    double grown = 0;
    for (int i = 0; i < c->nch; i++)
        if (c->ch[i].res == GOV_DISK_SPACE)
            grown += c->ch[i].cost;
    if (g->disk && dirtied > grown) {
        g->disk_pending += dirtied - grown;
        gov_disk_touch(g->disk);
    }
}

/* A call let go with estimates turned out to move `got` bytes: the rate
 * resources it moves are charged the difference (a debt, or a refund). */
static void settle_returned(void *group, const struct gov_call *c, double got)
{
    struct group *g = group;
    for (int r = 0; r < GOV_NRES; r++) {
        if (!(c->moves & (1u << r)) || !g->lim.r[r].set || !is_rate(r))
            continue;
        double delta = got; /* what it returned, less the estimate charged */
        for (int i = 0; i < c->nch; i++)
            if (c->ch[i].res == r)
                delta -= c->ch[i].cost;
        gov_bucket_charge(&g->b[r], delta);
        g->u.r[r].used += (int64_t)delta;
        int s = c->ledger_slot;
        if (r == GOV_NET_RECV && s >= 0 && g->ledger.slot[s].ino == c->ledger_ino)
            g->ledger.slot[s].charged += delta;
    }
}

/* A noted call, settled (iowrite.h). */
static void settle_write(void *group, const struct gov_call *c, int what, double wrote,
                         double dirtied)
{
    if (what & GOV_IOW_WROTE)
        settle_returned(group, c, wrote);
    if (what & GOV_IOW_DIRTIED)
        settle_dirtied(group, c, dirtied);
}

static int64_t count_tasks(struct gov_engine *e, struct group *g, int *nprocs)
{
    struct gov_census c;
    int rc = gov_tasks_count(g->inits, g->ninits, &g->clones, e->procs, MAX_PROCS, &c);
    if (rc < 0)
        return rc;
    if (nprocs)
        *nprocs = c.nprocs;
    g->u.tasks = c.live;
    g->zombies = c.zombies;
    if (c.live > g->u.peak_tasks)
        g->u.peak_tasks = c.live;
    g->u.r[GOV_PROCESSES].used = (uint64_t)(c.live + g->clones.n);
    return c.live;
}

enum { TASK_FITS, TASK_WAIT, TASK_ZOMBIES };

/* May a thread of g create a task now? The cap counts live tasks and clones
 * not yet settled: a task that exited no longer holds a fork back, so a
 * parent held in fork never waits for children that it would reap itself.
 * Exited tasks that nobody reaped still hold a pid each: they may fill as
 * much again as the cap, past which clones fail (TASK_ZOMBIES) as at a
 * pids limit, whatever the mode: waiting could be waiting for oneself. */
static int task_fits(struct gov_engine *e, struct group *g)
{
    int64_t live = count_tasks(e, g, NULL);
    int64_t cap = g->lim.r[GOV_PROCESSES].cap, next = live + g->clones.n + 1;
    if (live < 0)
        return TASK_WAIT;
    if (next + g->zombies > 2 * cap)
        return TASK_ZOMBIES;
    return next <= cap ? TASK_FITS : TASK_WAIT;
}

static struct memproc *mem_proc(struct group *g, int tgid)
{
    for (int i = 0; i < g->nmem; i++)
        if (g->mem[i].tgid == tgid)
            return &g->mem[i];
    if (g->nmem == g->cap_mem) {
        int cap = g->cap_mem ? g->cap_mem * 2 : 16;
        struct memproc *m = realloc(g->mem, sizeof *m * cap);
        if (!m)
            return NULL;
        g->mem = m;
        g->cap_mem = cap;
    }
    struct memproc *m = &g->mem[g->nmem++];
    *m = (struct memproc){.tgid = tgid, .start_brk = -1};
    return m;
}

static int64_t mem_total(struct group *g)
{
    int64_t sum = g->shared_mem;
    for (int i = 0; i < g->nmem; i++)
        sum += g->mem[i].bytes;
    g->u.memory = sum;
    if (sum > g->u.peak_memory)
        g->u.peak_memory = sum;
    return sum;
}

/* Rebuilds the memory table from every live process of the group. */
static void mem_refresh_all(struct gov_engine *e, struct group *g)
{
    int n = 0;
    if (count_tasks(e, g, &n) < 0)
        return;
    struct memproc *old = g->mem;
    int nold = g->nmem;
    g->mem = NULL;
    g->nmem = g->cap_mem = 0;
    for (int i = 0; i < n; i++) {
        int tgid;
        int64_t bytes = gov_task_committed(e->procs[i], &tgid);
        struct memproc *m = bytes >= 0 ? mem_proc(g, e->procs[i]) : NULL;
        if (!m)
            continue;
        m->bytes = bytes;
        for (int j = 0; j < nold; j++)
            if (old[j].tgid == m->tgid) {
                m->start_brk = old[j].start_brk;
                m->last_brk = old[j].last_brk;
            }
    }
    free(old);
    /* Shared objects count once, however many processes map them. */
    static struct gov_shm_obj objs[4096]; /* the engine thread's only */
    int nobjs = 0;
    for (int i = 0; i < n; i++) {
        gov_task_shared_anon(e->procs[i], objs, &nobjs, 4096);
        gov_shmem_fds(&g->shmem, e->procs[i], objs, &nobjs, 4096);
    }
    gov_shmem_recount(&g->shmem, n ? e->procs[0] : 0, objs, &nobjs, 4096);
    g->shared_mem = 0;
    for (int i = 0; i < nobjs; i++)
        g->shared_mem += objs[i].size;
    mem_total(g);
    g->mem_recount_at = now_ns() + MEM_RECOUNT_NS;
}

/* Memory that grew without a call we charged (a file the group was handed
 * open, a write whose fd was swapped under it) is found by a recount: at
 * the group's first memory call and at most once a second after that. */
static void mem_recount_due(struct gov_engine *e, struct group *g)
{
    if (now_ns() >= g->mem_recount_at)
        mem_refresh_all(e, g);
}

/* Bytes that brk(addr) would commit for the process; fills its state. */
static double brk_growth(struct memproc *m, uint64_t addr)
{
    int64_t start = gov_task_stat(m->tgid, 47); /* start_brk */
    if (start >= 0 && start != m->start_brk) { /* first sight, or a new exec */
        m->start_brk = start;
        m->last_brk = start;
    }
    return addr > (uint64_t)m->last_brk ? (double)(addr - (uint64_t)m->last_brk) : 0;
}

/* The memory call of h: sets its cost; 1 if it fits, 0 if not, -1 if the
 * engine cannot tell (out of memory or fds: the call fails, closed).
 * `fresh`: do the slow, exact recount before saying no. */
static int memory_fits(struct gov_engine *e, struct group *g, struct hold *h, int fresh)
{
    int tgid;
    int64_t bytes = gov_task_committed(h->pid, &tgid);
    if (bytes == -ENOENT || bytes == -ESRCH)
        return 1; /* gone: the call will not run */
    if (bytes < 0)
        return -1;
    h->tgid = tgid;
    mem_recount_due(e, g);
    struct memproc *m = mem_proc(g, tgid);
    if (!m)
        return -1;
    m->bytes = bytes;
    if (h->call.brk) {
        h->call.nch = 0;
        double grow = brk_growth(m, h->args[0]);
        if (grow > 0)
            h->call.ch[h->call.nch++] = (struct gov_charge){GOV_MEMORY, grow};
    }
    double cost = h->call.nch ? h->call.ch[0].cost : 0;
    if (cost == 0)
        return 1;
    int64_t cap = g->lim.r[GOV_MEMORY].cap;
    if (mem_total(g) + cost <= cap)
        return 1;
    if (!fresh)
        return 0;
    mem_refresh_all(e, g);
    return mem_total(g) + cost <= cap;
}

/* A call that grows a file in memory (classify.c: a GOV_MEMORY charge on a
 * call that is not a memory call): its growth against the memory cap. -1 if
 * it is larger than the whole cap. */
static int file_memory_fits(struct gov_engine *e, struct group *g, struct hold *h, int fresh)
{
    double cost = 0;
    for (int i = 0; i < h->call.nch; i++)
        if (h->call.ch[i].res == GOV_MEMORY)
            cost += h->call.ch[i].cost;
    int64_t cap = g->lim.r[GOV_MEMORY].cap;
    if (cost == 0 || !g->lim.r[GOV_MEMORY].set)
        return 1;
    mem_recount_due(e, g);
    if (mem_total(g) + cost <= cap)
        return 1;
    if (cost > (double)cap)
        return -1;
    if (!fresh)
        return 0;
    mem_refresh_all(e, g);
    return mem_total(g) + cost <= cap;
}

/* ---- disk space: the same pattern as memory, on the group's area ---- */

static void disk_recount(struct gov_engine *e, struct group *g)
{
    int n = 0;
    if (count_tasks(e, g, &n) < 0 || n >= MAX_PROCS) {
        g->disk->failed = -ESRCH; /* the holders of deleted files are unknown */
        g->disk->dirty = 1;
        return;
    }
    gov_disk_recount(g->disk, e->procs, n);
    g->disk_pending = 0;
}

/* The area's cap that bytes and inodes more would pass (-1: none); with
 * `any`, the first that they grow at all. Growth the count may lack
 * (disk_pending) counts with the bytes. */
static int disk_within(struct group *g, double bytes, double inodes, int any)
{
    const struct gov_limit *sp = &g->lim.r[GOV_DISK_SPACE], *in = &g->lim.r[GOV_DISK_INODES];
    if (bytes > 0 && sp->set && (any || g->disk->used + g->disk_pending + bytes > sp->cap))
        return GOV_DISK_SPACE;
    if (inodes > 0 && in->set && (any || g->disk->inodes + inodes > in->cap))
        return GOV_DISK_INODES;
    return -1;
}

/* -1 if h's growth of the area fits disk_space and disk_inodes, else the
 * resource that says no; `fresh`: recount exactly before saying no. A
 * target the recount does not find in the area (a file elsewhere on the
 * same filesystem) costs nothing. Fail closed:
 * - while no recount can finish, the area may not grow at all;
 * - growth the count may lack (disk_pending, pages a write dirtied beyond
 *   its charge) counts too: when it may take the area past its quota, the
 *   area is recounted, and if it is over, every write that could land in
 *   it is refused, whatever its fd names now (another thread may change
 *   that before the kernel uses it), until a recount finds it back under
 *   (disk_over). */
static int disk_fits(struct gov_engine *e, struct group *g, struct hold *h, int fresh)
{
    double bytes = 0, inodes = 0;
    for (int i = 0; i < h->call.nch; i++) {
        if (h->call.ch[i].res == GOV_DISK_SPACE)
            bytes = h->call.ch[i].cost;
        else if (h->call.ch[i].res == GOV_DISK_INODES)
            inodes = h->call.ch[i].cost;
    }
    int may_dirty = gov_iowrite_may_dirty(h->nr);
    if (!g->disk || (bytes <= 0 && inodes <= 0 && !may_dirty))
        return -1;
    const struct gov_limit *sp = &g->lim.r[GOV_DISK_SPACE];
    int why = disk_within(g, bytes, inodes, g->disk->failed);
    if (why < 0 && sp->set && (g->disk_over || (may_dirty && g->disk->used + g->disk_pending >
                                                              sp->cap)))
        why = GOV_DISK_SPACE;
    if (why < 0 || !fresh)
        return why;
    int unexplained = g->disk_over || g->disk_pending > 0;
    disk_recount(e, g);
    if (g->disk->failed)
        return why;
    if (unexplained && sp->set)
        g->disk_over = g->disk->used > sp->cap;
    if (g->disk_over)
        return GOV_DISK_SPACE;
    if (!gov_disk_inside(g->disk, h->call.disk_dev, h->call.disk_ino)) {
        for (int i = 0; i < h->call.nch; i++)
            if (h->call.ch[i].res == GOV_DISK_SPACE || h->call.ch[i].res == GOV_DISK_INODES)
                h->call.ch[i].cost = 0;
        return -1;
    }
    return disk_within(g, bytes, inodes, 0);
}

/* ---- deciding ---- */

enum { GO, WAIT, DENY };

/* Whether h may go now; for WAIT, *wait_ns (0: a cap, recheck later); for
 * WAIT and DENY, *why: the resource that says no. */
static int verdict(struct gov_engine *e, struct group *g, struct hold *h, int64_t now,
                   int64_t *wait_ns, int fresh, int *why)
{
    *wait_ns = 0;
    int res = -1, fits = 1;
    if (h->call.kind == GOV_CALL_TASK) {
        res = GOV_PROCESSES;
        int t = g->lim.r[GOV_PROCESSES].set ? task_fits(e, g) : TASK_FITS;
        if (t == TASK_ZOMBIES) {
            *why = res;
            return DENY;
        }
        fits = t == TASK_FITS;
    } else if (h->call.kind == GOV_CALL_MEMORY) {
        res = GOV_MEMORY;
        fits = memory_fits(e, g, h, fresh);
        /* More than the whole cap never fits: fail it at once, as the
         * kernel fails a mapping larger than memory (a program probing how
         * much it may allocate must not wait for ever). */
        if (fits < 0 ||
            (!fits && h->call.nch && h->call.ch[0].cost > (double)g->lim.r[GOV_MEMORY].cap)) {
            *why = res;
            return DENY;
        }
    } else if ((fits = file_memory_fits(e, g, h, fresh)) <= 0) {
        *why = res = GOV_MEMORY;
        if (fits < 0)
            return DENY;
    } else if ((res = disk_fits(e, g, h, fresh)) >= 0) {
        fits = 0; /* deny only: a full area does not free itself */
    } else {
        for (int i = 0; i < h->call.nch; i++) {
            int r = h->call.ch[i].res;
            if (!g->lim.r[r].set)
                continue;
            int64_t w = gov_bucket_wait_ns(&g->b[r], h->call.ch[i].cost, now);
            if (w == 0 && g->share[r].cls) {
                int route;
                w = gov_share_wait(&g->share[r], r, h->call.ch[i].cost, now, &route);
                h->route[r] = (signed char)route;
            }
            if (w > *wait_ns) {
                *wait_ns = w;
                res = r;
            }
        }
        fits = *wait_ns == 0;
    }
    *why = res;
    if (fits)
        return GO;
    return g->lim.r[res].mode == GOV_DENY ? DENY : WAIT;
}

static int deny_errno(struct hold *h, int res)
{
    if (res == GOV_DISK_SPACE || res == GOV_DISK_INODES)
        return EDQUOT;
    if (h->call.kind == GOV_CALL_MEMORY || res == GOV_MEMORY)
        return ENOMEM;
    return EAGAIN;
}

/* Applies a TCP receive's settlement (classify.h) at once: debt or refund. */
static void settle_now(struct group *g, struct hold *h)
{
    double c = h->call.correction;
    h->call.correction = 0;
    if (c == 0 || !g->lim.r[GOV_NET_RECV].set)
        return;
    gov_bucket_charge(&g->b[GOV_NET_RECV], c);
    g->u.r[GOV_NET_RECV].used += (uint64_t)(int64_t)c;
}

/* The estimate just charged for a TCP receive waits in its ledger slot for
 * the next settlement. */
static void ledger_note(struct group *g, struct hold *h, int sign)
{
    int s = h->call.ledger_slot;
    if (s < 0 || g->ledger.slot[s].ino != h->call.ledger_ino)
        return;
    for (int i = 0; i < h->call.nch; i++)
        if (h->call.ch[i].res == GOV_NET_RECV)
            g->ledger.slot[s].charged += sign * h->call.ch[i].cost;
}

static void charge(struct group *g, struct hold *h, int sign)
{
    double disk[2] = {0, 0}; /* the area's bytes, inodes */
    ledger_note(g, h, sign);
    for (int i = 0; i < h->call.nch; i++) {
        int r = h->call.ch[i].res;
        double c = h->call.ch[i].cost * sign;
        if (r == GOV_DISK_SPACE || r == GOV_DISK_INODES)
            disk[r == GOV_DISK_INODES] = h->call.ch[i].cost;
        if (!g->lim.r[r].set)
            continue;
        if (is_rate(r))
            gov_bucket_charge(&g->b[r], c);
        if (g->share[r].cls)
            gov_share_charge(&g->share[r], r, h->call.ch[i].cost, h->route[r], sign, now_ns());
        if (r == GOV_MEMORY && h->call.kind != GOV_CALL_MEMORY) {
            g->shared_mem += (int64_t)c; /* a file in memory grows */
            mem_total(g);
        }
        g->u.r[r].used += (int64_t)c;
    }
    if (g->disk && (disk[0] || disk[1]))
        gov_disk_charge(g->disk, h->pid, h->nr, disk[0], disk[1], h->call.disk_dev,
                        h->call.disk_ino, sign);
    if (g->disk && h->call.disk_entry)
        gov_disk_touch(g->disk);
    if (h->call.kind == GOV_CALL_TASK && g->lim.r[GOV_PROCESSES].set) {
        if (sign > 0)
            gov_clones_add(&g->clones, h->pid);
        else
            gov_clones_drop(&g->clones, h->pid);
    }
    if (h->call.kind == GOV_CALL_MEMORY && h->call.nch && h->tgid > 0) {
        struct memproc *m = mem_proc(g, h->tgid);
        if (h->call.shared_mem) {
            g->shared_mem += (int64_t)h->call.ch[0].cost * sign;
            if (h->nr == SYS_shmget && sign > 0)
                gov_shmem_creator(&g->shmem, h->tgid);
        } else if (m) {
            m->bytes += (int64_t)h->call.ch[0].cost * sign;
            if (h->call.brk && sign > 0)
                m->last_brk = (int64_t)h->args[0];
        }
        mem_total(g);
    }
}

/* Charges and lets the call run; refunds if the task is no longer waiting. */
static void let_go(struct gov_engine *e, struct group *g, struct hold *h)
{
    charge(g, h, 1);
    keep_charged(h);
    if (answer(e, h, 0, 0, 1) == -ENOENT) {
        charge(g, h, -1);
        if (g->keep)
            gov_keep_usage(g->keep, &g->u);
    }
    /* Tasks and memory keep no per-call charge in u.r[].used: they report
     * the current level. */
    g->u.r[GOV_PROCESSES].used = (uint64_t)(g->u.tasks + g->clones.n);
    g->u.r[GOV_MEMORY].used = (uint64_t)g->u.memory;
}

static void refuse(struct gov_engine *e, struct group *g, struct hold *h, int res)
{
    int err = deny_errno(h, res);
    if (h->call.brk) {
        /* brk reports failure by returning the unchanged break. */
        struct memproc *m = h->tgid > 0 ? mem_proc(g, h->tgid) : NULL;
        answer(e, h, m ? m->last_brk : 0, 0, 0);
    } else {
        answer(e, h, 0, -err, 0);
    }
    g->u.r[res].denied++;
    emit(e, GOV_EV_DENIED, g->id, res, h->pid, h->nr, err);
}

/* The queue of earlier held calls that h must wait behind (FIFO per
 * resource): one of a resource it charges, or -1. A call that charges
 * nothing (a pipe read) waits behind nobody. */
static int queued_behind(struct group *g, const struct hold *h)
{
    if (h->call.kind == GOV_CALL_TASK)
        return g->held_res[GOV_PROCESSES] ? GOV_PROCESSES : -1;
    if (h->call.kind == GOV_CALL_MEMORY)
        return g->held_res[GOV_MEMORY] ? GOV_MEMORY : -1;
    for (int i = 0; i < h->call.nch; i++)
        if (g->held_res[h->call.ch[i].res])
            return h->call.ch[i].res;
    return -1;
}

/* Whether a queue that h would join is blocked in this pass. */
static int behind_blocked(const struct hold *h, const int *blocked)
{
    if (blocked[h->res])
        return 1;
    for (int i = 0; h->call.kind == GOV_CALL_BYTES && i < h->call.nch; i++)
        if (blocked[h->call.ch[i].res])
            return 1;
    return 0;
}

static void held_list_add(struct gov_engine *e, struct group *g)
{
    if (!g->on_held_list) {
        g->on_held_list = 1;
        g->next_held = e->held;
        e->held = g;
    }
}

static void unlink_hold(struct group *g, struct hold *h)
{
    h->prev->next = h->next;
    h->next->prev = h->prev;
    g->nholds--;
    if (h->res >= 0)
        g->held_res[h->res]--;
}

static void free_hold(struct gov_engine *e, struct hold *h)
{
    unhold(h);
    if (h->call.wait_fd >= 0) {
        /* The tenant shares the file: closing our fd would not unregister it. */
        if (h->tag == TAG_DATA)
            watch_del(e, h->call.wait_fd, h->key);
        close(h->call.wait_fd);
    }
    free(h);
}

static struct gov_shmem *shmem_of(struct group *g)
{
    return g->lim.r[GOV_MEMORY].set ? &g->shmem : NULL;
}

/* Reclassifies a receive at release: more may be queued by now. */
static void reclassify(struct gov_engine *e, struct hold *h)
{
    int wait_fd = h->call.wait_fd;
    h->call.wait_fd = -1;
    gov_classify(&e->pidfds, &h->g->ledger, h->g->disk, shmem_of(h->g), h->pid, h->nr, h->args,
                 &h->call);
    if (h->call.kind == GOV_CALL_WAIT_DATA) {
        /* Readable, yet nothing queued: EOF or an error. It costs nothing. */
        close(h->call.wait_fd);
        h->call.wait_fd = -1;
        h->call.kind = GOV_CALL_BYTES;
        h->call.nch = 0;
    }
    if (wait_fd >= 0)
        close(wait_fd);
}

static int is_receive(int nr)
{
    return nr == SYS_read || nr == SYS_readv || nr == SYS_recvfrom || nr == SYS_recvmsg ||
           nr == SYS_recvmmsg || nr == SYS_splice;
}

/* Queues h under res, the resource that holds it (-1: waiting for data). */
static void enqueue(struct gov_engine *e, struct group *g, struct hold *h, int64_t now, int res)
{
    h->since = now;
    h->prev = g->holds.prev;
    h->next = &g->holds;
    g->holds.prev->next = h;
    g->holds.prev = h;
    g->nholds++;
    h->res = res;
    if (h->res >= 0)
        g->held_res[h->res]++;
    held_list_add(e, g);
}

static void arm_timer(struct gov_engine *e, int64_t at)
{
    struct itimerspec its = {0};
    if (at) {
        its.it_value.tv_sec = at / 1000000000LL;
        its.it_value.tv_nsec = at % 1000000000LL;
    }
    timerfd_settime(e->timerfd, TFD_TIMER_ABSTIME, &its, NULL);
    e->timer_at = at;
}

/* The timer fires at the earliest moment a hold may change. */
static void arm_before(struct gov_engine *e, int64_t at)
{
    if (!e->timer_at || at < e->timer_at)
        arm_timer(e, at);
}

/* A call that would wait while its group holds max_held already is denied:
 * the supervisor's memory stays bounded whatever the tenant does. 1 if it
 * was (h is answered, not freed). */
static int held_cap(struct gov_engine *e, struct group *g, struct hold *h, int res)
{
    if (g->nholds < g->max_held)
        return 0;
    int err = h->call.kind == GOV_CALL_MEMORY || res == GOV_MEMORY ? ENOMEM : EAGAIN;
    answer(e, h, 0, -err, 0);
    if (res >= 0)
        g->u.r[res].denied++;
    emit(e, GOV_EV_HELD_CAP, g->id, res, h->pid, h->nr, err);
    return 1;
}

/* First look at a call, or at a call whose data just arrived. */
static void decide(struct gov_engine *e, struct group *g, struct hold *h, int64_t now)
{
    settle_now(g, h);
    if (h->call.kind == GOV_CALL_WAIT_DATA) {
        if (held_cap(e, g, h, GOV_NET_RECV)) {
            free_hold(e, h);
            return;
        }
        if (watch_add(e, h->call.wait_fd, EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, TAG_DATA, h,
                      &h->key) == 0) {
            h->tag = TAG_DATA;
            h->deadline = h->call.timeout_ns ? now + h->call.timeout_ns : 0;
            enqueue(e, g, h, now, -1);
            arm_before(e, h->deadline ? h->deadline : now + SWEEP_NS);
            arm_before(e, now + SIGNAL_SWEEP_NS);
            return;
        }
        /* Cannot watch it (out of memory): the receive fails rather than
         * wait in the kernel for data that nobody would charge. */
        answer(e, h, 0, -ENOMEM, 0);
        g->u.r[GOV_NET_RECV].denied++;
        emit(e, GOV_EV_DENIED, g->id, GOV_NET_RECV, h->pid, h->nr, ENOMEM);
        free_hold(e, h);
        return;
    }
    int64_t wait = 0;
    int why = queued_behind(g, h);
    int v = why >= 0 ? WAIT : verdict(e, g, h, now, &wait, 1, &why);
    switch (v) {
    case GO:
        let_go(e, g, h);
        free_hold(e, h);
        return;
    case DENY:
        refuse(e, g, h, why);
        free_hold(e, h);
        return;
    }
    /* Held: filed under the resource that refused it, or whose earlier
     * held calls it waits behind. */
    int res = why;
    if (held_cap(e, g, h, res)) {
        free_hold(e, h);
        return;
    }
    g->u.r[res].held_calls++;
    emit(e, GOV_EV_HELD, g->id, res, h->pid, h->nr,
         h->call.nch ? (int64_t)h->call.ch[0].cost : 1);
    enqueue(e, g, h, now, res);
    arm_before(e, now + (wait ? wait : CAP_RECHECK_NS));
    if (watch_signals(h))
        arm_before(e, now + SIGNAL_SWEEP_NS);
}

/* Releases what fits, in order; returns when to look again (0: never). */
static int64_t release_ready(struct gov_engine *e, struct group *g, int64_t now)
{
    int blocked[GOV_NRES] = {0};
    int64_t next = 0;
    int sweep = now - e->last_sweep >= SWEEP_NS, watched = 0;
    for (struct hold *h = g->holds.next, *n; h != &g->holds; h = n) {
        n = h->next;
        int res = h->res;
        /* Calls a signal may end are looked at every pass. */
        if ((sweep || watch_signals(h)) && !still_waits(e, h, sweep)) {
            unlink_hold(g, h); /* interrupted: it comes back as a new call */
            if (res >= 0)
                g->u.r[res].held_ns += (uint64_t)(now - h->since);
            free_hold(e, h);
            continue;
        }
        if (h->tag == TAG_DATA) {
            if (h->deadline && now >= h->deadline) {
                /* What the kernel answers when SO_RCVTIMEO runs out. */
                unlink_hold(g, h);
                answer(e, h, 0, -EAGAIN, 0);
                free_hold(e, h);
                continue;
            }
            int64_t at = h->deadline ? h->deadline : now + SWEEP_NS;
            if (!next || at < next)
                next = at;
            watched = 1;
            continue;
        }
        watched |= watch_signals(h);
        if (behind_blocked(h, blocked))
            continue;
        if (is_receive(h->nr)) {
            reclassify(e, h);
            settle_now(g, h);
        }
        int64_t wait;
        int why;
        int v = verdict(e, g, h, now, &wait, 1, &why);
        if (v == WAIT) {
            blocked[res] = blocked[why] = 1;
            if (why != res) { /* another of its resources holds it now */
                g->held_res[res]--;
                g->held_res[h->res = why]++;
            }
            int64_t at = now + (wait ? wait : CAP_RECHECK_NS);
            if (!next || at < next)
                next = at;
            continue;
        }
        unlink_hold(g, h);
        g->u.r[res].held_ns += (uint64_t)(now - h->since);
        if (v == GO) {
            let_go(e, g, h);
            emit(e, GOV_EV_RELEASED, g->id, res, h->pid, h->nr, now - h->since);
        } else {
            refuse(e, g, h, why);
        }
        free_hold(e, h);
    }
    if (watched) {
        int64_t at = now + SIGNAL_SWEEP_NS;
        if (!next || at < next)
            next = at;
    }
    return next;
}

static int on_cap(int res)
{
    return res == GOV_PROCESSES || res == GOV_MEMORY;
}

/* Fails every call of g held on a cap, as the kernel's limits would. */
static void fail_cap_holds(struct gov_engine *e, struct group *g, int64_t now)
{
    int res = g->held_res[GOV_PROCESSES] ? GOV_PROCESSES : GOV_MEMORY;
    emit(e, GOV_EV_STALLED, g->id, res, 0, -1,
         res == GOV_PROCESSES ? g->u.tasks + g->clones.n : g->u.memory);
    for (struct hold *h = g->holds.next, *n; h != &g->holds; h = n) {
        n = h->next;
        if (h->res < 0 || !on_cap(h->res))
            continue;
        unlink_hold(g, h);
        g->u.r[h->res].held_ns += (uint64_t)(now - h->since);
        refuse(e, g, h, h->res);
        free_hold(e, h);
    }
}

/* A call held on a cap (processes, memory) waits for another task of the
 * group to exit or give memory back. When no task can do that any more
 * (tasks.h: every one is held on a cap or waits for the others), waiting is
 * for ever: the held calls fail instead. The group must look stuck twice,
 * STALL_NS apart, having used no CPU time and made no governed call in
 * between. Returns when to look again (0: no cap holds). */
static int64_t check_stalled(struct gov_engine *e, struct group *g, int64_t now)
{
    int64_t oldest = now;
    int ncap = 0, nother = 0, held[256], others[256];
    for (struct hold *h = g->holds.next; h != &g->holds; h = h->next) {
        if (h->res >= 0 && on_cap(h->res)) {
            if (h->since < oldest)
                oldest = h->since;
            if (ncap < 256)
                held[ncap++] = h->pid;
        } else if (nother < 256) {
            others[nother++] = h->pid;
        }
    }
    if (!ncap) {
        g->stall_looks = 0;
        return 0;
    }
    if (now - oldest < STALL_NS)
        return oldest + STALL_NS;
    if (now < g->stall_next)
        return g->stall_next;
    uint64_t cpu = 0;
    int stuck = gov_tasks_stuck(g->inits, g->ninits, held, ncap, others, nother, &cpu) > 0;
    if (stuck && g->stall_looks && cpu == g->stall_cpu &&
        g->u.notifications == g->stall_calls) {
        fail_cap_holds(e, g, now);
        g->stall_looks = 0;
        return 0;
    }
    g->stall_looks = stuck;
    g->stall_cpu = cpu;
    g->stall_calls = g->u.notifications;
    g->stall_next = now + STALL_NS;
    return g->stall_next;
}

static void run_holds(struct gov_engine *e)
{
    int64_t now = now_ns(), next = 0;
    struct group **pp = &e->held;
    while (*pp) {
        struct group *g = *pp;
        int64_t at = release_ready(e, g, now);
        int64_t stall_at = check_stalled(e, g, now);
        if (stall_at && (!at || stall_at < at))
            at = stall_at;
        if (!g->nholds) {
            g->on_held_list = 0;
            *pp = g->next_held;
            continue;
        }
        if (at && (!next || at < next))
            next = at;
        pp = &g->next_held;
    }
    if (now - e->last_sweep >= SWEEP_NS)
        e->last_sweep = now;
    arm_timer(e, next);
}

/* ---- the loop ---- */

static void close_listener(struct gov_engine *e, struct listener *l)
{
    struct group *g = l->g;
    watch_del(e, l->fd, l->key);
    for (struct hold *h = g->holds.next, *n; h != &g->holds; h = n) {
        n = h->next;
        if (h->l == l) {
            unlink_hold(g, h);
            free_hold(e, h);
        }
    }
    for (struct listener **pp = &g->listeners; *pp; pp = &(*pp)->next)
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    emit(e, GOV_EV_LISTENER_CLOSED, g->id, -1, 0, -1, 0);
    close(l->fd);
    free(l);
}

static struct hold *new_hold(struct group *g)
{
    struct hold *h = calloc(1, sizeof *h);
    if (h) {
        h->g = g;
        h->call.wait_fd = -1;
        h->rec = -1;
    }
    return h;
}

/* First sight of a governed call: h has its group, task, number, arguments. */
static void on_call(struct gov_engine *e, struct hold *h, uint32_t arch)
{
    struct group *g = h->g;
    g->u.notifications++;
    if (arch != AUDIT_ARCH_X86_64 || (h->nr & __X32_SYSCALL_BIT)) {
        /* The i386 and x32 entries of governed calls are not served. */
        answer(e, h, 0, -ENOSYS, 0);
        g->u.compat_denied++;
        emit(e, GOV_EV_COMPAT, g->id, -1, h->pid, h->nr, h->nr);
        free_hold(e, h);
        return;
    }
    /* Its last iovec write is over (iowrite.h); at exit_group, every one. */
    gov_iowrite_settle(&g->iowrites, &e->pidfds, h->nr == SYS_exit_group ? -1 : h->pid,
                       settle_write, g, &h->io);
    if (h->nr == SYS_exit || h->nr == SYS_exit_group) {
        answer(e, h, 0, 0, 1);
        free_hold(e, h);
        return;
    }
    gov_classify(&e->pidfds, &g->ledger, g->disk, shmem_of(g), h->pid, h->nr, h->args, &h->call);
    /* Growing a shared file mapping lets more of the file be written with no
     * call (classify.c charge_shared_map). */
    if (h->nr == SYS_mremap && g->lim.r[GOV_DISK_WRITE].set && h->args[2] > h->args[1] &&
        gov_task_shared_file_map(h->pid, h->args[0]) > 0)
        gov_classify_shared_remap(h->args[2] - h->args[1], &h->call);
    /* A thread that makes another call has returned from its last clone, or
     * its last growth of the disk area. */
    gov_clones_drop(&g->clones, h->pid);
    if (g->disk)
        gov_disk_returned(g->disk, h->pid);
    if (h->call.kind == GOV_CALL_DISK_FREE && g->disk)
        gov_disk_touch(g->disk); /* recounted when usage is read, or before a denial */
    /* Mappings are notified for disk_write too, where memory is free. */
    if (h->call.kind == GOV_CALL_DISK_FREE || h->call.kind == GOV_CALL_REFUSED ||
        (h->call.kind == GOV_CALL_MEMORY && !g->lim.r[GOV_MEMORY].set)) {
        int err = h->call.kind == GOV_CALL_REFUSED ? -h->call.refuse_errno : 0;
        answer(e, h, 0, err, !err);
        free_hold(e, h);
        return;
    }
    decide(e, g, h, now_ns());
}

static void on_notification(struct gov_engine *e, struct listener *l)
{
    memset(e->req, 0, e->sizes.seccomp_notif);
    if (ioctl(l->fd, SECCOMP_IOCTL_NOTIF_RECV, e->req) < 0)
        return; /* ENOENT: the task went away before we looked */
    struct hold *h = new_hold(l->g);
    if (!h) {
        respond(e, l, e->req->id, 0, -ENOMEM, 0);
        return;
    }
    h->l = l;
    h->id = e->req->id;
    h->pid = (int)e->req->pid;
    h->nr = e->req->data.nr;
    memcpy(h->args, e->req->data.args, sizeof h->args);
    keep_received(h, e->req->data.arch);
    on_call(e, h, e->req->data.arch);
}

/* ---- the ptrace backends (trace.h) ---- */

int gov_engine_traced_call(struct gov_engine *e, struct gov_tracee *t, uint32_t arch, int nr,
                           const uint64_t *args)
{
    struct group *g = group_of(e, t->group);
    if (!g) {
        /* Its group is gone (or it never had one): it may not run
         * ungoverned. */
        syscall(SYS_tgkill, t->tid, t->tid, SIGKILL);
        return 1;
    }
    /* ptrace-syscall stops at every call; the i386 and x32 entries are all
     * refused there (their numbers are other tables'). */
    if (t->backend == GOV_BACKEND_PTRACE_SYSCALL && arch == AUDIT_ARCH_X86_64 &&
        !(nr & __X32_SYSCALL_BIT) && (nr < 0 || nr >= NR_SYSCALLS || !g->governed[nr]))
        return 0;
    struct hold *h = new_hold(g);
    if (!h) {
        gov_tracer_answer(e->tracer, t, GOV_TR_DENY, -ENOMEM);
        return 1;
    }
    h->t = t;
    t->hold = h;
    h->pid = t->tid;
    h->nr = nr;
    memcpy(h->args, args, sizeof h->args);
    on_call(e, h, arch);
    return 1;
}

void gov_engine_traced_exit(struct gov_engine *e, struct gov_tracee *t, int64_t ret)
{
    struct group *g = group_of(e, t->group);
    if (g)
        settle_returned(g, &t->exit_call, ret > 0 ? (double)ret : 0);
}

void gov_engine_traced_gone(struct gov_engine *e, struct gov_tracee *t)
{
    struct hold *h = t->hold;
    if (!h)
        return;
    unlink_hold(h->g, h);
    if (h->res >= 0)
        h->g->u.r[h->res].held_ns += (uint64_t)(now_ns() - h->since);
    free_hold(e, h);
}

static void on_data(struct gov_engine *e, struct hold *h)
{
    struct group *g = h->g;
    watch_del(e, h->call.wait_fd, h->key);
    unlink_hold(g, h);
    h->tag = 0;
    reclassify(e, h);
    decide(e, g, h, now_ns());
}

static void *engine_main(void *arg)
{
    struct gov_engine *e = arg;
    struct epoll_event evs[64];
    while (1) {
        int n = epoll_wait(e->epfd, evs, 64, -1);
        pthread_mutex_lock(&e->mu);
        if (e->stop) {
            pthread_mutex_unlock(&e->mu);
            return NULL;
        }
        int timer = 0;
        for (int i = 0; i < n; i++) {
            struct watch *w = watch_of(e, evs[i].data.u64);
            int tag = w ? w->tag : 0; /* 0: freed since epoll_wait returned */
            if (tag == TAG_LISTENER) {
                struct listener *l = w->obj;
                if (evs[i].events & EPOLLIN)
                    on_notification(e, l);
                else if (evs[i].events & (EPOLLHUP | EPOLLERR))
                    close_listener(e, l);
            } else if (tag == TAG_DATA) {
                on_data(e, w->obj);
            } else if (tag == TAG_TIMER) {
                uint64_t ticks;
                ssize_t r = read(e->timerfd, &ticks, sizeof ticks);
                (void)r;
                timer = 1;
            } else if (tag == TAG_WAKE) {
                uint64_t v;
                ssize_t r = read(e->wakefd, &v, sizeof v);
                (void)r;
                timer = 1;
            }
        }
        if (timer)
            run_holds(e);
        int64_t now = now_ns();
        if (now - e->last_pidfd_sweep >= PIDFD_SWEEP_NS) {
            gov_pidfds_sweep(&e->pidfds);
            e->last_pidfd_sweep = now;
        }
        pthread_mutex_unlock(&e->mu);
    }
}

int gov_engine_new(struct gov_engine **out)
{
    struct gov_engine *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    e->epfd = e->timerfd = e->wakefd = e->evfd = -1;
    pthread_mutex_init(&e->mu, NULL);
    gov_pidfds_init(&e->pidfds);
    int rc;
    if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &e->sizes) < 0) {
        rc = -errno;
        goto fail;
    }
    e->req = calloc(1, e->sizes.seccomp_notif);
    e->resp = calloc(1, e->sizes.seccomp_notif_resp);
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    e->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    e->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    e->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (!e->req || !e->resp || e->epfd < 0 || e->timerfd < 0 || e->wakefd < 0 || e->evfd < 0) {
        rc = -(errno ?: ENOMEM);
        goto fail;
    }
    uint64_t key;
    if ((rc = watch_add(e, e->timerfd, EPOLLIN, TAG_TIMER, e, &key)) < 0 ||
        (rc = watch_add(e, e->wakefd, EPOLLIN, TAG_WAKE, e, &key)) < 0)
        goto fail;
    e->sync_wakeup = -1; /* learnt with the first listener */
    e->want_sync_wakeup = 1;
    /* Signals are the host program's business: none may land on this thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = -pthread_create(&e->thread, NULL, engine_main, e);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc < 0)
        goto fail;
    *out = e;
    return 0;
fail:
    free(e->req);
    free(e->resp);
    for (int *fd = &e->epfd; fd <= &e->evfd; fd++)
        if (*fd >= 0)
            close(*fd);
    free(e->watch);
    free(e->free_watch);
    free(e);
    return rc;
}

static void free_group(struct gov_engine *e, struct group *g)
{
    while (g->listeners)
        close_listener(e, g->listeners);
    for (struct hold *h = g->holds.next, *n; h != &g->holds; h = n) {
        n = h->next;
        free_hold(e, h);
    }
    for (struct group **pp = &e->held; *pp; pp = &(*pp)->next_held)
        if (*pp == g) {
            *pp = g->next_held;
            break;
        }
    gov_clones_free(&g->clones);
    gov_iowrite_free(&g->iowrites);
    for (int r = 0; r < GOV_NRES; r++)
        gov_share_release(&g->share[r]);
    free(g->mem);
    gov_shmem_free(&g->shmem);
    if (g->disk && g->disk->walking)
        g->disk->orphan = 1; /* disk_recount_unlocked frees it */
    else if (g->disk)
        gov_disk_free(g->disk);
    gov_keep_close(g->keep);
    free(g);
}

static void wake(struct gov_engine *e)
{
    uint64_t one = 1;
    ssize_t n = write(e->wakefd, &one, sizeof one);
    (void)n;
}

void gov_engine_free(struct gov_engine *e)
{
    pthread_mutex_lock(&e->mu);
    e->stop = 1;
    wake(e);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    /* The tracer first: no stop reaches a group from here on. Its tracees
     * die with its thread (EXITKILL); their memory goes after the groups',
     * whose holds point at them. */
    if (e->tracer)
        gov_tracer_stop(e->tracer);
    for (int i = 0; i < MAX_GROUPS; i++)
        if (e->groups[i]) {
            free_group(e, e->groups[i]);
            e->groups[i] = NULL;
        }
    if (e->tracer)
        gov_tracer_free(e->tracer);
    gov_pidfds_clear(&e->pidfds);
    close(e->epfd);
    close(e->timerfd);
    close(e->wakefd);
    close(e->evfd);
    free(e->req);
    free(e->resp);
    free(e->watch);
    free(e->free_watch);
    free(e);
}

int gov_engine_sync_wakeup(struct gov_engine *e)
{
    return e->sync_wakeup;
}

void gov_engine_set_sync_wakeup(struct gov_engine *e, int on)
{
    pthread_mutex_lock(&e->mu);
    e->want_sync_wakeup = on;
    pthread_mutex_unlock(&e->mu);
}

static struct group *group_of(struct gov_engine *e, int id)
{
    return id >= 0 && id < MAX_GROUPS ? e->groups[id] : NULL;
}

int gov_group_new(struct gov_engine *e, const struct gov_limits *lim, int backend)
{
    if (backend < GOV_BACKEND_SECCOMP || backend > GOV_BACKEND_PTRACE_SYSCALL)
        return -EINVAL;
    pthread_mutex_lock(&e->mu);
    int id = -ENOSPC;
    for (int i = 0; i < MAX_GROUPS; i++)
        if (!e->groups[i]) {
            id = i;
            break;
        }
    struct group *g = id >= 0 && gov_fault(ENOMEM) == 0 ? calloc(1, sizeof *g) : NULL;
    if (id >= 0 && !g)
        id = -ENOMEM;
    if (g && (backend != GOV_BACKEND_SECCOMP || lim->trace_clones) && !e->tracer) {
        int rc = gov_tracer_new(&e->tracer, e, &e->mu);
        if (rc < 0) {
            free(g);
            g = NULL;
            id = rc;
        }
    }
    if (g) {
        g->id = id;
        g->backend = backend;
        gov_filter_governed(lim, g->governed, NR_SYSCALLS);
        g->lim = *lim;
        g->holds.next = g->holds.prev = &g->holds;
        g->max_held = GOV_MAX_HELD;
        int64_t now = now_ns();
        for (int r = 0; r < GOV_NRES; r++)
            if (lim->r[r].set && is_rate(r))
                gov_bucket_init(&g->b[r], lim->r[r].rate, lim->r[r].burst, now);
        e->groups[id] = g;
    }
    pthread_mutex_unlock(&e->mu);
    return id;
}

int gov_group_set_max_held(struct gov_engine *e, int id, int n)
{
    if (n < 1)
        return -EINVAL;
    pthread_mutex_lock(&e->mu);
    struct group *g = group_of(e, id);
    if (g)
        g->max_held = n;
    pthread_mutex_unlock(&e->mu);
    return g ? 0 : -ENOENT;
}

int gov_group_add_init(struct gov_engine *e, int id, int init_pid)
{
    pthread_mutex_lock(&e->mu);
    int rc = 0;
    struct group *g = group_of(e, id);
    if (!g)
        rc = -ENOENT;
    else if (gov_fault(ENOSPC) < 0 || g->ninits == (int)(sizeof g->inits / sizeof g->inits[0]))
        rc = -ENOSPC;
    else
        g->inits[g->ninits++] = init_pid;
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int gov_group_drop_init(struct gov_engine *e, int id, int init_pid)
{
    pthread_mutex_lock(&e->mu);
    struct group *g = group_of(e, id);
    for (int i = 0; g && i < g->ninits; i++)
        if (g->inits[i] == init_pid)
            g->inits[i] = g->inits[--g->ninits];
    pthread_mutex_unlock(&e->mu);
    return g ? 0 : -ENOENT;
}

int gov_group_add_tracee(struct gov_engine *e, int id, int pid)
{
    pthread_mutex_lock(&e->mu);
    int rc;
    struct group *g = group_of(e, id);
    if (!g)
        rc = -ENOENT;
    else if (g->backend == GOV_BACKEND_SECCOMP && !g->lim.trace_clones)
        rc = -EINVAL;
    else /* seccomp with traced clones: the tracer sees only RET_TRACE stops */
        rc = gov_tracer_attach(e->tracer, pid, id,
                               g->backend == GOV_BACKEND_SECCOMP ? GOV_BACKEND_PTRACE : g->backend);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

/* Adds listener fd to g, the engine's mutex held; fd is the engine's
 * (closed on error too). 0 or -errno; the listener in *out. */
static int listener_add(struct gov_engine *e, struct group *g, int fd, struct listener **out)
{
    int rc = 0;
    struct listener *l = g && gov_fault(ENOMEM) == 0 ? calloc(1, sizeof *l) : NULL;
    if (!l) {
        rc = g ? -ENOMEM : -ENOENT;
        close(fd);
        goto out;
    }
    /* Same-CPU wake-ups of the tenant: ~10x faster round trips (kernel >= 6.6). */
    int sync = e->want_sync_wakeup &&
               ioctl(fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) == 0;
    if (e->sync_wakeup < 0)
        e->sync_wakeup = sync;
    *l = (struct listener){.fd = fd, .g = g, .next = g->listeners};
    if ((rc = watch_add(e, fd, EPOLLIN, TAG_LISTENER, l, &l->key)) < 0) {
        close(fd);
        free(l);
        goto out;
    }
    g->listeners = l;
    *out = l;
out:
    return rc;
}

int gov_group_add_listener(struct gov_engine *e, int id, int fd)
{
    struct listener *l;
    pthread_mutex_lock(&e->mu);
    int rc = listener_add(e, group_of(e, id), fd, &l);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

/* Recounts g's area for a usage read with e->mu unlocked during the walk
 * (called and returns locked): a large area takes long to walk (a second for
 * 200,000 files), and every group of the engine would wait. The count is
 * kept only if no call of the group changed the area meanwhile (its
 * generation); else the counter stays the estimate, dirty. Denials never
 * rely on this: disk_fits recounts under the lock, where the group's calls
 * wait for the walk. Returns g, or NULL if the group went meanwhile. */
static struct group *disk_recount_unlocked(struct gov_engine *e, int id, struct group *g)
{
    struct gov_disk *d = g->disk;
    int n = 0;
    if (d->walking)
        return g; /* another reader walks it */
    if (count_tasks(e, g, &n) < 0 || n >= MAX_PROCS) {
        disk_recount(e, g); /* fails closed */
        return g;
    }
    int *pids = malloc(sizeof *pids * (size_t)(n ? n : 1));
    if (!pids)
        return g;
    memcpy(pids, e->procs, sizeof *pids * (size_t)n);
    uint64_t gen = d->gen;
    d->walking = 1;
    pthread_mutex_unlock(&e->mu);
    struct gov_disk_count c;
    gov_disk_walk(d, pids, n, &c);
    free(pids);
    pthread_mutex_lock(&e->mu);
    d->walking = 0;
    if (d->orphan) {
        free(c.seen.key);
        gov_disk_free(d);
        return NULL;
    }
    if (d->gen != gen) {
        free(c.seen.key); /* stale: the next read walks again */
        return g;
    }
    if (gov_disk_apply(d, &c) == 0) /* a failed walk fails closed, as disk_recount */
        g->disk_pending = 0;
    return g;
}

int gov_group_usage(struct gov_engine *e, int id, struct gov_usage *out)
{
    pthread_mutex_lock(&e->mu);
    struct group *g = group_of(e, id);
    if (g) {
        if (g->lim.r[GOV_PROCESSES].set)
            count_tasks(e, g, NULL); /* the level now, pending clones settled */
        if (g->disk && g->disk->dirty)
            g = disk_recount_unlocked(e, id, g);
    }
    if (g) {
        if (g->disk) {
            g->u.r[GOV_DISK_SPACE].used = (uint64_t)g->disk->used;
            g->u.r[GOV_DISK_INODES].used = (uint64_t)g->disk->inodes;
        }
        gov_iowrite_settle(&g->iowrites, &e->pidfds, -1, settle_write, g, NULL);
        *out = g->u;
        out->held_now = g->nholds;
        for (int r = 0; r < GOV_NRES; r++)
            out->r[r].borrowed = g->share[r].borrowed;
        /* Time held so far by calls still waiting counts too. */
        int64_t now = now_ns();
        for (struct hold *h = g->holds.next; h != &g->holds; h = h->next)
            if (h->res >= 0)
                out->r[h->res].held_ns += (uint64_t)(now - h->since);
    }
    pthread_mutex_unlock(&e->mu);
    return g ? 0 : -ENOENT;
}

int gov_group_disk_area(struct gov_engine *e, int id, const char *const *dirs, int n)
{
    pthread_mutex_lock(&e->mu);
    struct group *g = group_of(e, id);
    int rc = !g ? -ENOENT : g->disk ? -EEXIST : 0;
    pthread_mutex_unlock(&e->mu);
    /* Counted unlocked: a large area takes long, and the engine's other
     * groups would wait (the group has no tasks yet). */
    struct gov_disk *d = NULL;
    if (rc == 0)
        rc = gov_disk_new(dirs, n, &d);
    if (rc == 0)
        rc = gov_disk_recount(d, NULL, 0);
    pthread_mutex_lock(&e->mu);
    if (rc == 0 && (group_of(e, id) != g || g->disk))
        rc = -ENOENT; /* removed, or given an area, meanwhile */
    if (rc == 0)
        g->disk = d;
    else if (d)
        gov_disk_free(d);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int gov_group_remove(struct gov_engine *e, int id)
{
    pthread_mutex_lock(&e->mu);
    struct group *g = group_of(e, id);
    if (g) {
        e->groups[id] = NULL;
        /* Its stopped tracees: no group governs them now. */
        for (struct hold *h = g->holds.next; h != &g->holds; h = h->next)
            if (h->t)
                syscall(SYS_tgkill, h->t->tid, h->t->tid, SIGKILL);
        free_group(e, g);
    }
    pthread_mutex_unlock(&e->mu);
    return g ? 0 : -ENOENT;
}

int gov_group_set_class(struct gov_engine *e, int id, int res, struct gov_class *cls,
                        double guarantee, double burst)
{
    pthread_mutex_lock(&e->mu);
    struct group *g = group_of(e, id);
    int rc = !g ? -ENOENT : res < 0 || res >= GOV_NRES || !is_rate(res) || !cls ? -EINVAL : 0;
    if (rc == 0)
        gov_share_init(&g->share[res], cls, res, guarantee, burst, now_ns());
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int gov_group_set_borrow(struct gov_engine *e, int id, int res, double rate, double burst)
{
    pthread_mutex_lock(&e->mu);
    struct group *g = group_of(e, id);
    int rc = !g ? -ENOENT : res < 0 || res >= GOV_NRES || !g->share[res].cls ? -EINVAL : 0;
    if (rc == 0 && g->share[res].borrow.ns_per_byte != (rate > 0 ? 1e9 / rate : 0)) {
        gov_meter_init(&g->share[res].borrow, rate, burst);
        if (g->nholds)
            wake(e);
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int gov_group_attach_net(struct gov_engine *e, int id)
{
    pthread_mutex_lock(&e->mu);
    struct group *g = group_of(e, id);
    for (int r = GOV_NET_SEND; g && r <= GOV_NET_RECV; r++) {
        g->if_seen[r] = 0;
        g->used_seen[r] = g->u.r[r].used;
    }
    pthread_mutex_unlock(&e->mu);
    return g ? 0 : -ENOENT;
}

int gov_group_settle_net(struct gov_engine *e, int id, uint64_t sent_total,
                         uint64_t recv_total)
{
    const uint64_t total[2] = {[GOV_NET_SEND] = sent_total, [GOV_NET_RECV] = recv_total};
    pthread_mutex_lock(&e->mu);
    int rc = 0;
    struct group *g = group_of(e, id);
    if (!g)
        rc = -ENOENT;
    else if (sent_total < g->if_seen[GOV_NET_SEND] || recv_total < g->if_seen[GOV_NET_RECV])
        rc = -EINVAL;
    int64_t now = now_ns();
    for (int r = GOV_NET_SEND; rc == 0 && r <= GOV_NET_RECV; r++) {
        /* What calls were charged since the last settlement, and what
         * really crossed the interface. */
        int64_t charged = (int64_t)(g->u.r[r].used - g->used_seen[r]);
        uint64_t moved = total[r] - g->if_seen[r];
        g->u.r[r].used = g->used_seen[r] + moved;
        g->used_seen[r] = g->u.r[r].used;
        g->if_seen[r] = total[r];
        if (g->lim.r[r].set)
            gov_bucket_settle(&g->b[r], (double)moved - (double)charged, now);
    }
    if (rc == 0 && g->nholds)
        wake(e);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int gov_engine_event_fd(struct gov_engine *e)
{
    return e->evfd;
}

int gov_engine_share_event_fd(struct gov_engine *e, struct gov_engine *with)
{
    int fd = fcntl(with->evfd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    pthread_mutex_lock(&e->mu);
    close(e->evfd);
    e->evfd = fd;
    pthread_mutex_unlock(&e->mu);
    return 0;
}

int gov_engine_events(struct gov_engine *e, struct gov_event *out, int max)
{
    pthread_mutex_lock(&e->mu);
    int n = 0;
    uint64_t v;
    ssize_t r = read(e->evfd, &v, sizeof v);
    (void)r;
    while (n < max && e->ring_len) {
        out[n++] = e->ring[e->ring_head];
        e->ring_head = (e->ring_head + 1) % EVENT_RING;
        e->ring_len--;
    }
    if (e->ring_len) {
        uint64_t one = 1;
        r = write(e->evfd, &one, sizeof one);
    }
    pthread_mutex_unlock(&e->mu);
    return n;
}

/* ---- a group kept across restarts (keep.h) ---- */

int gov_group_keep(struct gov_engine *e, int id, const char *path, int resume)
{
    pthread_mutex_lock(&e->mu);
    struct group *g = group_of(e, id);
    int rc = !g ? -ENOENT : g->keep ? -EEXIST : 0;
    if (rc == 0)
        rc = gov_keep_open(path, resume, &g->u, &g->keep);
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int gov_group_resume(struct gov_engine *e, int id, int fd)
{
    pthread_mutex_lock(&e->mu);
    struct group *g = group_of(e, id);
    struct listener *l = NULL;
    int rc = !g ? -ENOENT : !g->keep ? -EINVAL : 0;
    if (rc < 0)
        close(fd);
    else
        rc = listener_add(e, g, fd, &l);
    int *slots = rc == 0 ? malloc(GOV_KEEP_SLOTS * sizeof *slots) : NULL;
    if (rc == 0 && !slots)
        rc = -ENOMEM;
    /* Under the mutex, so that no call received from now on overtakes them. */
    int n = slots ? gov_keep_pending(g->keep, slots, GOV_KEEP_SLOTS) : 0;
    for (int i = 0; i < n; i++) {
        const struct gov_keep_rec *r = gov_keep_rec(g->keep, slots[i]);
        uint64_t nid = r->id;
        struct hold *h = NULL;
        if (ioctl(fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &nid) == 0 && !(h = new_hold(g)))
            respond(e, l, nid, 0, -ENOMEM, 0);
        if (!h) { /* answered or gone before the restart */
            gov_keep_clear(g->keep, slots[i], &g->u);
            continue;
        }
        h->l = l;
        h->id = r->id;
        h->pid = r->pid;
        h->nr = r->nr;
        memcpy(h->args, r->args, sizeof h->args);
        h->rec = slots[i];
        rc++;
        if (r->state == GOV_KEEP_CHARGED) {
            answer(e, h, 0, 0, 1); /* its charge is in the usage kept */
            free_hold(e, h);
        } else {
            g->u.notifications--; /* counted when first received */
            on_call(e, h, r->arch);
        }
    }
    /* A call received just before its record could be written. */
    uint64_t last;
    for (int d = 1; rc >= 0 && d <= KEEP_ID_PROBE && gov_keep_last_id(g->keep, &last); d++) {
        uint64_t nid = last + (uint64_t)d;
        int recorded = 0;
        for (int i = 0; i < n && !recorded; i++)
            recorded = gov_keep_rec(g->keep, slots[i])->id == nid;
        if (!recorded && ioctl(fd, SECCOMP_IOCTL_NOTIF_ID_VALID, &nid) == 0 &&
            respond(e, l, nid, 0, 0, 1) == 0)
            rc++;
    }
    free(slots);
    pthread_mutex_unlock(&e->mu);
    return rc;
}
