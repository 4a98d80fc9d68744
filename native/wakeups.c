/* Which groups' tenants are woken on the engine's CPU (SYNC_WAKE_UP).
 *
 * A listener with SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP wakes the engine on
 * the notifying tenant's CPU, and the tenant, when answered, on the
 * engine's: a tenant and its engine take turns on one CPU, and a round trip
 * costs a tenant alone 10 us instead of 45 (this VM). With two busy groups
 * on one engine, all three tasks gather on one CPU that way; a tenant that
 * computes long between its calls (a mapping churner: 20 us of its own per
 * call) then holds that CPU while the other group's answer waits behind it,
 * and the other CPU idles (README, Noisy neighbours: half the polite
 * tenant's run-queue delay fell while the other CPU was idle).
 *
 * So the engine measures, per group, the shortest gap between answering a
 * thread and that thread's next call (the tenant's own time per call, plus
 * the hand-overs; the shortest of a window leaves out the queueing), and,
 * while two or more groups are busy, takes same-CPU wake-ups from a group
 * whose gap is more than WAKE_SLOWER times the shortest busy group's: its
 * tenant is woken where the scheduler finds room, the other CPU. Windows
 * are counted up and down (two alike tenants differ that much in one
 * window now and then, a polite tenant pauses): a group loses them after
 * WAKE_SLOW_WINDOWS more slow windows than not, and gets them back when
 * as many say otherwise. */
#define _GNU_SOURCE
#include <sys/ioctl.h>

#include "engine_int.h"

#define WAKE_WINDOW_NS 20000000LL /* the groups' gaps are reviewed this often */
#define WAKE_BUSY 50              /* calls in a window that make a group busy */
#define WAKE_SLOWER 2             /* a gap this many times the shortest, */
#define WAKE_SLOW_WINDOWS 3       /* in this many windows more than not, loses sync */

/* Debian 12's headers predate kernel 6.6. */
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif

int wake_set_sync(int fd, int on)
{
    return ioctl(fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, on ? SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP : 0);
}

/* A call of thread pid is answered now (before the answer wakes it). */
void wake_answered(struct group *g, int pid)
{
    struct gov_wake *w = &g->wake;
    int i = 0;
    while (i < WAKE_TIDS - 1 && w->tid[i].pid && w->tid[i].pid != pid)
        i++;
    /* Most recent first: a thread making calls in a loop stays in front. */
    for (; i > 0; i--)
        w->tid[i] = w->tid[i - 1];
    w->tid[0].pid = pid;
    w->tid[0].answered = now_ns();
}

/* Thread pid of g made a call. */
void wake_notified(struct group *g, int pid)
{
    struct gov_wake *w = &g->wake;
    w->calls++;
    for (int i = 0; i < WAKE_TIDS && w->tid[i].pid; i++)
        if (w->tid[i].pid == pid) {
            int64_t gap = w->tid[i].answered ? now_ns() - w->tid[i].answered : 0;
            if (gap > 0 && (!w->min_gap || gap < w->min_gap))
                w->min_gap = gap;
            w->tid[i].answered = 0;
            return;
        }
}

static void wake_apply(struct gov_engine *e, struct group *g, int off)
{
    if (g->wake.off == off)
        return;
    g->wake.off = off;
    for (struct listener *l = g->listeners; l; l = l->next)
        wake_set_sync(l->fd, !off);
    emit(e, GOV_EV_SYNC_WAKEUP, g->id, -1, 0, -1, !off);
}

/* Once a window: which groups keep same-CPU wake-ups for the next. */
void wake_review(struct gov_engine *e, int64_t now)
{
    if (now < e->wake_review_at)
        return;
    e->wake_review_at = now + WAKE_WINDOW_NS;
    if (e->sync_wakeup != 1 || !e->want_sync_wakeup)
        return;
    int busy = 0;
    int64_t shortest = 0;
    for (int i = 0; i < MAX_GROUPS; i++) {
        struct group *g = e->groups[i];
        if (!g || !g->listeners || g->wake.calls < WAKE_BUSY)
            continue;
        busy++;
        if (g->wake.min_gap && (!shortest || g->wake.min_gap < shortest))
            shortest = g->wake.min_gap;
    }
    for (int i = 0; i < MAX_GROUPS; i++) {
        struct group *g = e->groups[i];
        if (!g || !g->listeners)
            continue;
        struct gov_wake *w = &g->wake;
        int slow = busy >= 2 && w->calls >= WAKE_BUSY && shortest &&
                   w->min_gap > WAKE_SLOWER * shortest;
        if (slow && w->slow < WAKE_SLOW_WINDOWS)
            w->slow++;
        else if (!slow && w->slow > 0)
            w->slow--;
        wake_apply(e, g, w->off ? w->slow > 0 : w->slow == WAKE_SLOW_WINDOWS);
        w->calls = 0;
        w->min_gap = 0;
    }
}
