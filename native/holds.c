/* Holds: a governed call's way from its first look (decide) to its answer.
 * It goes at once, is refused, or waits in its group's FIFO under the
 * resource that holds it, until release_ready lets it go, a signal takes
 * its task out of the call (still_waits), or the group is found stuck on a
 * cap (check_stalled). answer() is the one place where the seccomp and
 * ptrace backends differ. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "engine_int.h"
#include "procfs.h"
#include "syscalls.h"

#define CAP_RECHECK_NS 20000000LL   /* caps free up without a syscall: poll */
#define SWEEP_NS 100000000LL        /* drop holds whose task went away */
#define SIGNAL_SWEEP_NS 20000000LL  /* held calls that a signal may interrupt: looked at */
/* The kernel's restart codes: a call that returns one of them is restarted
 * once the signal is handled (ERESTARTSYS: only with SA_RESTART, else it
 * fails with EINTR). */
#define ERESTARTSYS 512
#define ERESTARTNOINTR 513
#define STALL_NS 200000000LL      /* cap holds this old: is the group stuck? */

/* ---- answering the kernel ---- */

/* 0, or -errno (-ENOENT: the task was interrupted or died meanwhile). */
int respond(struct gov_engine *e, struct listener *l, uint64_t id, int64_t val,
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
    return gov_syscall_flags(nr) & GOV_SYS_AT_EXIT;
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
int answer(struct gov_engine *e, struct hold *h, int64_t val, int error, int cont)
{
    if (cont)
        note_write(e, h);
    if (h->l) {
        wake_answered(h->g, h->pid);
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

void unlink_hold(struct group *g, struct hold *h)
{
    h->prev->next = h->next;
    h->next->prev = h->prev;
    g->nholds--;
    if (h->res >= 0)
        g->held_res[h->res]--;
}

void free_hold(struct gov_engine *e, struct hold *h)
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

struct gov_shmem *shmem_of(struct group *g)
{
    return g->lim.r[GOV_MEMORY].set ? &g->shmem : NULL;
}

/* Reclassifies a receive at release: more may be queued by now. */
void reclassify(struct gov_engine *e, struct hold *h)
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
    return gov_syscall_flags(nr) & GOV_SYS_RECEIVE;
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
void decide(struct gov_engine *e, struct group *g, struct hold *h, int64_t now)
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

void run_holds(struct gov_engine *e)
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
