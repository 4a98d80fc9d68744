/* Walks of a group's disk area (diskspace.h), which take long for a large
 * area: 0.36 s for 200,000 files. Done by the engine thread, no group of
 * the engine got an answer meanwhile (README, Noisy neighbours: full area).
 * So walks drop the engine's lock and run elsewhere:
 * - before a refusal (verdict.c disk_fits): on the engine's walker thread,
 *   while the refused call waits, and every call of its group that could
 *   change the area waits too (disk_walk_holds): the walk sees the area as
 *   the kernel leaves it, and they are decided on the count, as they were
 *   when the engine walked;
 * - for a usage read (gov_group_usage): on the reader's thread, while the
 *   group goes on; the count is kept only if it changed nothing the engine
 *   sees meanwhile (its generation).
 * A count kept serves refusals while nothing changed, for DISK_REUSE times
 * its walk's length (disk_count_current); usage reads walk an area at most
 * once in such a time (the sampler reads usage every second). */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <unistd.h>

#include "engine_int.h"

#define WALKER_NICE 10

/* A count of g's area was made from start to end (d->failed: it could not
 * finish). Kept, the estimate since the last count goes, and if growth the
 * count may lack had taken it past its quota (disk_over), it says whether
 * the area is still over. */
static void disk_counted(struct group *g, int64_t start, int64_t end)
{
    const struct gov_limit *sp = &g->lim.r[GOV_DISK_SPACE];
    g->disk_count_start = start;
    g->disk_exact_gen = g->disk->gen;
    g->disk_exact_grown = g->disk->grown;
    g->disk_exact_until = end + DISK_REUSE * (end - start);
    if (g->disk->failed)
        return;
    if (sp->set && (g->disk_over || g->disk_pending > 0))
        g->disk_over = g->disk->used > sp->cap;
    g->disk_pending = 0;
}

void disk_recount(struct gov_engine *e, struct group *g)
{
    int n = 0;
    int64_t start = now_ns();
    if (count_tasks(e, g, &n) < 0 || n >= MAX_PROCS) {
        g->disk->failed = -ESRCH; /* the holders of deleted files are unknown */
        g->disk->dirty = 1;
    } else {
        gov_disk_recount(g->disk, e->procs, n);
    }
    disk_counted(g, start, now_ns());
}

int disk_count_current(const struct group *g, const struct hold *h)
{
    const struct gov_disk *d = g->disk;
    int64_t now = now_ns();
    /* Begun after h came (h->since: held), a count is as exact for h as one
     * made at its arrival, and space freed since only makes it err high (a
     * tenant deleting without pause would otherwise make each count stale
     * before h is looked at again). A recent one serves too, unless it was
     * left dirty: it found deleted files held open (a close may have freed
     * them since), or growths in flight (they have landed or failed since,
     * and it may have counted a file twice, or missed one that h targets:
     * a target it did not find was there when h came, and h's own count
     * finds it). */
    int for_h = h->since && g->disk_count_start >= h->since;
    if (d->failed)
        return for_h || now < g->disk_exact_until;
    if (for_h)
        return g->disk_pending == 0 && d->grown == g->disk_exact_grown;
    return !d->dirty && g->disk_pending == 0 && d->gen == g->disk_exact_gen &&
           now < g->disk_exact_until;
}

enum { WALK_KEPT, WALK_STALE, WALK_GONE };

/* Growths allowed before a count was asked for may still be on their way
 * into the area: a walk that passes their file first, and finds their call
 * returned at its end, misses them (the area then went past its quota).
 * While the group's growing calls wait for the count (disk_walk_holds),
 * those drain: the walker gives them up to LAND_NS, with e->mu unlocked
 * (called and returns locked, d->walking set). 0, or -1 if the group went. */
#define LAND_NS 20000000LL
static int let_land(struct gov_engine *e, struct gov_disk *d)
{
    for (int64_t end = now_ns() + LAND_NS; gov_disk_inflight(d) && now_ns() < end;) {
        pthread_mutex_unlock(&e->mu);
        nanosleep(&(struct timespec){0, 1000000}, NULL);
        pthread_mutex_lock(&e->mu);
        if (d->orphan)
            return -1;
    }
    return 0;
}

/* Walks g's area with e->mu unlocked (called and returns locked); with
 * `land`, once the growths in flight landed. The group may go meanwhile
 * (WALK_GONE: g is freed, its area too). */
static int walk_unlocked(struct gov_engine *e, struct group *g, int land)
{
    struct gov_disk *d = g->disk;
    int n = 0;
    int64_t start = now_ns();
    int *pids = NULL;
    d->walking = 1;
    int gone = land && let_land(e, d) < 0;
    if (!gone && (count_tasks(e, g, &n) < 0 || n >= MAX_PROCS ||
                  !(pids = malloc(sizeof *pids * (size_t)(n ? n : 1))))) {
        d->walking = 0;
        disk_recount(e, g); /* fails closed, at once */
        return WALK_KEPT;
    }
    struct gov_disk_count c = {0};
    uint64_t gen = d->gen;
    if (!gone) {
        memcpy(pids, e->procs, sizeof *pids * (size_t)n);
        gov_disk_begin(d, &c);
        pthread_mutex_unlock(&e->mu);
        gov_disk_walk(d, pids, n, &c);
        free(pids);
        pthread_mutex_lock(&e->mu);
    }
    d->walking = 0;
    int64_t end = now_ns();
    if (e->walker_on)
        pthread_cond_signal(&e->walk_cv); /* it may wait for this area */
    if (d->orphan) {
        free(c.seen.key);
        gov_disk_free(d);
        return WALK_GONE;
    }
    /* Changed meanwhile. Before a refusal, only by calls that free space
     * (a count that missed them errs high: kept, or a tenant that frees
     * without pause would keep its refused call waiting) and by settling
     * writes that landed before the walk: its group's other calls wait. */
    if (d->gen != gen && !land) {
        free(c.seen.key);
        return WALK_STALE;
    }
    gov_disk_apply(d, &c); /* a failed walk fails closed, as disk_recount */
    disk_counted(g, start, end);
    return WALK_KEPT;
}

struct group *disk_usage_walk(struct gov_engine *e, struct group *g)
{
    int64_t start = now_ns();
    if (g->disk->walking || start < g->disk_walk_after)
        return g; /* walked now, or a moment ago: the estimate */
    if (walk_unlocked(e, g, 0) == WALK_GONE)
        return NULL;
    int64_t end = now_ns();
    g->disk_walk_after = end + DISK_REUSE * (end - start);
    return g;
}

int disk_walk_holds(const struct group *g, const struct hold *h, int grows)
{
    return g->disk_counting && (grows || h->call.disk_entry);
}

/* The next group whose area the walker should walk, or NULL: in turn from
 * the one after the last walked, so that a group that keeps asking cannot
 * keep the others' counts waiting. */
static struct group *next_walk(struct gov_engine *e)
{
    for (int n = 0; n < MAX_GROUPS; n++) {
        int i = (e->walked + 1 + n) % MAX_GROUPS;
        struct group *g = e->groups[i];
        if (g && g->disk_counting == COUNT_WANTED && !g->disk->walking) {
            e->walked = i;
            return g; /* (a usage read's walk signals the walker when done) */
        }
    }
    return NULL;
}

/* Walks are not paced here: the group's calls that need the count wait
 * for it. The walker runs at a low priority instead (nice 10: about a
 * tenth of a CPU next to a busy task, all of an idle one), so a tenant that
 * keeps its area full and changing takes little CPU from the others. */
static void *walker_main(void *arg)
{
    struct gov_engine *e = arg;
    setpriority(PRIO_PROCESS, (id_t)gettid(), WALKER_NICE);
    pthread_mutex_lock(&e->mu);
    while (!e->stop) {
        struct group *g = next_walk(e);
        if (!g) {
            pthread_cond_wait(&e->walk_cv, &e->mu);
            continue;
        }
        g->disk_counting = COUNT_WALKING;
        if (walk_unlocked(e, g, 1) != WALK_GONE)
            g->disk_counting = 0; /* the held calls are decided on the count */
        wake(e); /* the held calls are looked at again */
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

int disk_want_count(struct gov_engine *e, struct group *g)
{
    if (!e->walker_on) {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old); /* signals are the host program's */
        int rc = pthread_create(&e->walker, NULL, walker_main, e);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc)
            return -rc;
        e->walker_on = 1;
    }
    if (!g->disk_counting) {
        g->disk_counting = COUNT_WANTED;
        pthread_cond_signal(&e->walk_cv);
    }
    return 0;
}

void disk_walker_stop(struct gov_engine *e)
{
    if (!e->walker_on)
        return;
    pthread_mutex_lock(&e->mu);
    pthread_cond_signal(&e->walk_cv); /* e->stop is set */
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->walker, NULL);
    e->walker_on = 0;
}
