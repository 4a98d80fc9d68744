/* The engine's loop: one thread that waits in epoll for the groups'
 * listeners (seccomp notifications), data a held receive waits for, its
 * timer and wake-ups, and hands each call to holds.c; the ptrace backends'
 * entries (trace.h); the groups and the library's gov_engine_* and
 * gov_group_* calls (engine.h). */
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

#include "engine_int.h"
#include "fault.h"
#include "filter.h"
#include "procfs.h"
#include "syscalls.h"

#define PIDFD_SWEEP_NS 1000000000LL /* pidfds of exited tasks closed this often */

/* ---- epoll's view: watches ---- */

/* Adds fd to epoll as a watch of obj; its key in *key. 0 or -errno. */
int watch_add(struct gov_engine *e, int fd, uint32_t events, int tag, void *obj,
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
void watch_del(struct gov_engine *e, int fd, uint64_t key)
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

struct hold *new_hold(struct group *g)
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
void on_call(struct gov_engine *e, struct hold *h, uint32_t arch)
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
    /* A thread that makes another call, or exits, has returned from its
     * last growth of the disk area. */
    if (g->disk)
        gov_disk_returned(g->disk, h->pid);
    if (gov_syscall_flags(h->nr) & GOV_SYS_EXIT) {
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
    /* A thread that makes another call has returned from its last clone. */
    gov_clones_drop(&g->clones, h->pid);
    if (h->call.kind == GOV_CALL_DISK_FREE && g->disk)
        gov_disk_freed(g->disk); /* recounted when usage is read, or before a denial */
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
    wake_notified(l->g, h->pid);
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
        !(nr & __X32_SYSCALL_BIT) && (nr < 0 || nr >= GOV_NR_SYSCALLS || !g->governed[nr]))
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
        wake_review(e, now);
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
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->walk_cv, &ca);
    pthread_condattr_destroy(&ca);
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
        g->disk->orphan = 1; /* its walk frees it (diskwalk.c) */
    else if (g->disk)
        gov_disk_free(g->disk);
    gov_keep_close(g->keep);
    free(g);
}

void wake(struct gov_engine *e)
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
    disk_walker_stop(e); /* before the groups whose areas it walks go */
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

struct group *group_of(struct gov_engine *e, int id)
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
        gov_filter_governed(lim, g->governed, GOV_NR_SYSCALLS);
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
int listener_add(struct gov_engine *e, struct group *g, int fd, struct listener **out)
{
    int rc = 0;
    struct listener *l = g && gov_fault(ENOMEM) == 0 ? calloc(1, sizeof *l) : NULL;
    if (!l) {
        rc = g ? -ENOMEM : -ENOENT;
        close(fd);
        goto out;
    }
    /* Same-CPU wake-ups of the tenant: ~4x faster round trips (kernel >= 6.6),
     * unless its group lost them to a busy neighbour (wakeups.c). */
    int sync = e->want_sync_wakeup && wake_set_sync(fd, !g->wake.off) == 0;
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

int gov_group_usage(struct gov_engine *e, int id, struct gov_usage *out)
{
    pthread_mutex_lock(&e->mu);
    struct group *g = group_of(e, id);
    if (g) {
        if (g->lim.r[GOV_PROCESSES].set)
            count_tasks(e, g, NULL); /* the level now, pending clones settled */
        if (g->disk && g->disk->dirty)
            g = disk_usage_walk(e, g);
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

