/* Verdicts: whether a call fits its group now, against the rates (token
 * buckets, shared classes) and the caps (tasks, committed memory, disk space
 * and inodes of the group's area), and charging it (or refunding); what a
 * call let go with an estimate really moved is settled here too. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <sys/syscall.h>

#include "engine_int.h"
#include "procfs.h"

#define MEM_RECOUNT_NS 1000000000LL /* memory: a recount at least this often (mem_recount_due) */
#define MEM_NEAR 16                 /* memory: within cap/MEM_NEAR of the cap, callers are read */

/* ---- caps: tasks and committed memory ---- */

int is_rate(int res)
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
void settle_returned(void *group, const struct gov_call *c, double got)
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
void settle_write(void *group, const struct gov_call *c, int what, double wrote,
                  double dirtied)
{
    if (what & GOV_IOW_WROTE)
        settle_returned(group, c, wrote);
    if (what & GOV_IOW_DIRTIED)
        settle_dirtied(group, c, dirtied);
}

int64_t count_tasks(struct gov_engine *e, struct group *g, int *nprocs)
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

struct memproc *mem_proc(struct group *g, int tgid)
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
    g->nmem_tid = 0;
}

/* The process of thread tid as read since the last recount, or 0. */
static int mem_tid(struct group *g, int tid)
{
    for (int i = 0; i < g->nmem_tid; i++)
        if (g->mem_tid[i][0] == tid)
            return g->mem_tid[i][1];
    return 0;
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
    int64_t cap = g->lim.r[GOV_MEMORY].cap;
    mem_recount_due(e, g);
    /* Far below the cap, a thread whose process was read since the last
     * recount is charged on the count kept since, without reading
     * /proc/PID/status again: that read cost a mapping churner's group 10 to
     * 20 us of the engine per call, which every other group of the engine
     * waited for (README, Noisy neighbours). The count only errs high
     * (unmaps are not seen) until the caller is read again near the cap;
     * what grows without a call (stack pages, a new image after exec) is
     * found by the recount, at least once a second, as it was already for
     * every process but the caller. brk needs its process's break: read. */
    h->tgid = h->call.brk ? 0 : mem_tid(g, h->pid);
    if (h->tgid && mem_total(g) + (h->call.nch ? h->call.ch[0].cost : 0) <= cap - cap / MEM_NEAR)
        return 1;
    int tgid;
    int64_t bytes = gov_task_committed(h->pid, &tgid);
    if (bytes == -ENOENT || bytes == -ESRCH)
        return 1; /* gone: the call will not run */
    if (bytes < 0)
        return -1;
    h->tgid = tgid;
    if (!mem_tid(g, h->pid) && g->nmem_tid < MEM_TIDS) {
        g->mem_tid[g->nmem_tid][0] = h->pid;
        g->mem_tid[g->nmem_tid++][1] = tgid;
    }
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

/* disk_fits: wait for the walker's count of the area. */
#define DISK_COUNTING (-2)

/* -1 if h's growth of the area fits disk_space and disk_inodes, else the
 * resource that says no, or DISK_COUNTING; `fresh`: count exactly before
 * saying no, on the walker thread (diskwalk.c), while h waits. A target
 * the count does not find in the area (a file elsewhere on the same
 * filesystem) costs nothing, unless the count may have missed it (a file
 * being created as it began, disk_count_current; such a file was written
 * uncharged, the area went past its quota and every write of the group
 * failed, even to stderr: tests/test_disk_space.py, parallel writers).
 * Fail closed:
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
    int may_dirty = gov_iowrite_may_dirty(h->nr), grows = bytes > 0 || inodes > 0 || may_dirty;
    if (!g->disk)
        return -1;
    if (disk_walk_holds(g, h, grows))
        return DISK_COUNTING;
    if (!grows)
        return -1;
    const struct gov_limit *sp = &g->lim.r[GOV_DISK_SPACE];
    int why = disk_within(g, bytes, inodes, g->disk->failed);
    if (why < 0 && sp->set && (g->disk_over || (may_dirty && g->disk->used + g->disk_pending >
                                                              sp->cap)))
        why = GOV_DISK_SPACE;
    if (why < 0 || !fresh)
        return why;
    if (!disk_count_current(g, h)) {
        if (disk_want_count(e, g) == 0)
            return DISK_COUNTING;
        disk_recount(e, g); /* no walker thread: walk here */
    }
    int inside = gov_disk_inside(g->disk, h->call.disk_dev, h->call.disk_ino);
    if (g->disk->failed)
        return why;
    if (g->disk_over)
        return GOV_DISK_SPACE;
    if (!inside) {
        for (int i = 0; i < h->call.nch; i++)
            if (h->call.ch[i].res == GOV_DISK_SPACE || h->call.ch[i].res == GOV_DISK_INODES)
                h->call.ch[i].cost = 0;
        return -1;
    }
    return disk_within(g, bytes, inodes, 0);
}

/* ---- deciding ---- */


/* Whether h may go now; for WAIT, *wait_ns (0: a cap, recheck later); for
 * WAIT and DENY, *why: the resource that says no. */
int verdict(struct gov_engine *e, struct group *g, struct hold *h, int64_t now,
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
    } else if ((res = disk_fits(e, g, h, fresh)) == DISK_COUNTING) {
        *why = GOV_DISK_SPACE; /* looked at again when the walk ends (wake) */
        return WAIT;
    } else if (res >= 0) {
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

int deny_errno(struct hold *h, int res)
{
    if (res == GOV_DISK_SPACE || res == GOV_DISK_INODES)
        return EDQUOT;
    if (h->call.kind == GOV_CALL_MEMORY || res == GOV_MEMORY)
        return ENOMEM;
    return EAGAIN;
}

/* Applies a TCP receive's settlement (classify.h) at once: debt or refund. */
void settle_now(struct group *g, struct hold *h)
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

void charge(struct group *g, struct hold *h, int sign)
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

