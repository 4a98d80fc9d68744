#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>

#include "procfs.h"
#include "syscalls.h"
#include "tasks.h"

/* ---- reading /proc ---- */

/* A whole /proc file into *buf (grown as needed, NUL-terminated): children
 * lists can be long. Bytes read, or -errno. */
static int read_all(const char *path, char **buf, size_t *cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t n = 0;
    for (;;) {
        if (*cap - n < 2) {
            size_t bigger = *cap ? *cap * 2 : 4096;
            char *p = realloc(*buf, bigger);
            if (!p) {
                close(fd);
                return -ENOMEM;
            }
            *buf = p;
            *cap = bigger;
        }
        ssize_t got = read(fd, *buf + n, *cap - n - 1);
        if (got < 0) {
            int err = errno;
            close(fd);
            return -err;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    close(fd);
    (*buf)[n] = '\0';
    return (int)n;
}

/* The state letter of /proc/PID[/task/TID]/stat (R, S, D, Z, T, t, X...),
 * 0 if gone. */
static char task_state(int pid, int tid)
{
    char path[64], buf[512];
    if (tid)
        snprintf(path, sizeof path, "/proc/%d/task/%d/stat", pid, tid);
    else
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
    if (gov_read_small(path, buf, sizeof buf) < 0)
        return 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and ')' */
    return p && p[1] == ' ' ? p[2] : 0;
}

static int is_dead(char state)
{
    return state == 'Z' || state == 'X';
}

struct ids {
    int *v;
    int n, cap;
};

static int ids_add(struct ids *s, int id)
{
    if (s->n == s->cap) {
        int cap = s->cap ? s->cap * 2 : 64;
        int *p = realloc(s->v, sizeof(int) * (size_t)cap);
        if (!p)
            return -ENOMEM;
        s->v = p;
        s->cap = cap;
    }
    s->v[s->n++] = id;
    return 0;
}

static int ids_has(const int *v, int n, int id)
{
    for (int i = 0; i < n; i++)
        if (v[i] == id)
            return 1;
    return 0;
}

/* Adds the ids of a space-separated list. */
static int ids_parse(struct ids *s, const char *text)
{
    for (const char *p = text;;) {
        char *end;
        long id = strtol(p, &end, 10);
        if (end == p)
            return 0;
        if (ids_add(s, (int)id) < 0)
            return -ENOMEM;
        p = end;
    }
}

/* ---- the walk ---- */

int gov_tasks_walk(const int *roots, int nroots, int *procs, int max, gov_task_fn fn, void *arg,
                   struct gov_census *out)
{
    memset(out, 0, sizeof *out);
    struct ids stack = {0};
    char *buf = NULL;
    size_t cap = 0;
    int rc = 0, stop = 0;
    for (int i = 0; i < nroots && rc == 0; i++)
        rc = ids_add(&stack, roots[i]);
    while (rc == 0 && !stop && stack.n > 0) {
        int pid = stack.v[--stack.n];
        int root = ids_has(roots, nroots, pid);
        char state = root ? 'S' : task_state(pid, 0);
        if (!state)
            continue; /* gone meanwhile */
        if (!root && out->nprocs < max)
            procs[out->nprocs++] = pid;
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/task", pid);
        DIR *d = opendir(path);
        if (!d)
            continue;
        int ntasks = 0;
        struct dirent *de;
        while (rc == 0 && !stop && (de = readdir(d))) {
            if (de->d_name[0] < '0' || de->d_name[0] > '9')
                continue;
            int tid = atoi(de->d_name);
            ntasks++;
            /* An exited leader keeps its id while its other threads run,
             * and lists no children: they went to another thread. */
            if (tid == pid && is_dead(state))
                continue;
            snprintf(path, sizeof path, "/proc/%d/task/%d/children", pid, tid);
            if (read_all(path, &buf, &cap) < 0)
                continue; /* this thread exited meanwhile */
            rc = ids_parse(&stack, buf);
            if (!root && rc == 0) {
                out->live++;
                if (fn)
                    stop = fn(arg, pid, tid, buf);
            }
        }
        closedir(d);
        if (!root && is_dead(state) && ntasks == 1)
            out->zombies++;
    }
    free(stack.v);
    free(buf);
    return rc;
}

/* ---- clones that have not settled ---- */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int is_clone_call(int nr)
{
    return gov_syscall_flags(nr) & GOV_SYS_CLONE;
}

int gov_clones_add(struct gov_clones *c, int tid)
{
    int64_t tgid = gov_task_status(tid, "\nTgid:");
    if (tgid < 0)
        return (int)tgid;
    struct ids known = {0};
    char path[64], *buf = NULL;
    size_t cap = 0;
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)tgid, tid);
    int rc = read_all(path, &buf, &cap);
    if (rc >= 0)
        rc = ids_parse(&known, buf);
    free(buf);
    snprintf(path, sizeof path, "/proc/%d/task", (int)tgid);
    DIR *d = rc >= 0 ? opendir(path) : NULL;
    if (rc >= 0 && !d)
        rc = -errno;
    for (struct dirent *de; d && rc >= 0 && (de = readdir(d));)
        if (de->d_name[0] >= '0' && de->d_name[0] <= '9')
            rc = ids_add(&known, atoi(de->d_name));
    if (d)
        closedir(d);
    if (rc >= 0 && c->n == c->cap) {
        int bigger = c->cap ? c->cap * 2 : 16;
        struct gov_clone *p = realloc(c->v, sizeof *p * (size_t)bigger);
        if (!p)
            rc = -ENOMEM;
        else {
            c->v = p;
            c->cap = bigger;
        }
    }
    if (rc < 0) {
        free(known.v);
        return rc;
    }
    c->v[c->n++] = (struct gov_clone){tid, (int)tgid, known.v, known.n, now_ns()};
    return 0;
}

static void clones_remove(struct gov_clones *c, int i)
{
    free(c->v[i].known);
    c->v[i] = c->v[--c->n];
}

void gov_clones_drop(struct gov_clones *c, int tid)
{
    for (int i = 0; i < c->n;)
        if (c->v[i].tid == tid)
            clones_remove(c, i);
        else
            i++;
}

void gov_clones_free(struct gov_clones *c)
{
    while (c->n)
        clones_remove(c, 0);
    free(c->v);
    *c = (struct gov_clones){0};
}

struct settle {
    struct gov_clones *c;
    unsigned char *settled;
    struct ids taken;         /* new tasks already matched to a clone */
};

/* Matches each new task to one clone: a new child of the clone's thread, or
 * a new thread of its process. */
static int settle_task(void *arg, int pid, int tid, const char *children)
{
    struct settle *s = arg;
    for (int i = 0; i < s->c->n; i++) {
        struct gov_clone *k = &s->c->v[i];
        if (s->settled[i])
            continue;
        if (k->tgid == pid && !ids_has(k->known, k->nknown, tid) &&
            !ids_has(s->taken.v, s->taken.n, tid)) {
            s->settled[i] = 1;
            ids_add(&s->taken, tid);
            continue;
        }
        if (k->tid != tid)
            continue;
        for (const char *p = children;;) {
            char *end;
            int child = (int)strtol(p, &end, 10);
            if (end == p)
                break;
            p = end;
            if (!ids_has(k->known, k->nknown, child) && !ids_has(s->taken.v, s->taken.n, child)) {
                s->settled[i] = 1;
                ids_add(&s->taken, child);
                break;
            }
        }
    }
    return 0;
}

int gov_tasks_count(const int *roots, int nroots, struct gov_clones *pending, int *procs, int max,
                    struct gov_census *out)
{
    struct settle s = {.c = pending, .settled = calloc((size_t)pending->n + 1, 1)};
    if (!s.settled)
        return -ENOMEM;
    /* A thread that left its clone (or is gone) has a child by now, or none. */
    int64_t now = now_ns();
    for (int i = 0; i < pending->n; i++) {
        int nr = gov_task_syscall(pending->v[i].tid);
        if (nr == GOV_SC_RUNNING)
            s.settled[i] = now - pending->v[i].since >= GOV_CLONE_RUN_NS;
        else
            s.settled[i] = !is_clone_call(nr);
    }
    int rc = gov_tasks_walk(roots, nroots, procs, max, pending->n ? settle_task : NULL, &s, out);
    for (int i = pending->n - 1; i >= 0; i--)
        if (s.settled[i])
            clones_remove(pending, i);
    free(s.settled);
    free(s.taken.v);
    return rc;
}

/* ---- is the group stuck? ---- */

enum { STUCK, FREE };

/* The ends of the pipes that the group's processes hold: a pipe is a wait
 * inside the group when its other end is held by the group. */
struct pipes {
    struct ids readers, writers;   /* inodes (low 32 bits suffice to compare) */
};

static int scan_pipes(int pid, struct pipes *p)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        char link[64], flags[256];
        struct stat st;
        int fd = atoi(de->d_name);
        snprintf(link, sizeof link, "/proc/%d/fd/%d", pid, fd);
        if (stat(link, &st) < 0 || !S_ISFIFO(st.st_mode))
            continue;
        snprintf(link, sizeof link, "/proc/%d/fdinfo/%d", pid, fd);
        if (gov_read_small(link, flags, sizeof flags) < 0)
            continue;
        char *f = strstr(flags, "flags:");
        int acc = f ? (int)(strtol(f + 6, NULL, 8) & O_ACCMODE) : O_RDWR;
        if (acc != O_WRONLY)
            ids_add(&p->readers, (int)st.st_ino);
        if (acc != O_RDONLY)
            ids_add(&p->writers, (int)st.st_ino);
    }
    closedir(d);
    return 0;
}

/* Whether a wait on fd of pid for `in` (readable) or not (writable) is a
 * wait on the group: a pipe whose other end the group holds. */
static int fd_wait(int pid, int fd, int in, const struct pipes *p)
{
    char link[64];
    struct stat st;
    snprintf(link, sizeof link, "/proc/%d/fd/%d", pid, fd);
    if (stat(link, &st) < 0 || !S_ISFIFO(st.st_mode))
        return FREE;
    const struct ids *other = in ? &p->writers : &p->readers;
    return ids_has(other->v, other->n, (int)st.st_ino) ? STUCK : FREE;
}

static int read_tenant(int pid, uint64_t addr, void *out, size_t len)
{
    struct iovec local = {out, len}, remote = {(void *)(uintptr_t)addr, len};
    return syscall(SYS_process_vm_readv, pid, &local, 1, &remote, 1, 0) == (ssize_t)len ? 0 : -1;
}

static int poll_wait(int pid, uint64_t fds, uint64_t nfds, const struct pipes *p)
{
    struct pollfd v[64];
    if (nfds == 0 || nfds > 64 || read_tenant(pid, fds, v, sizeof v[0] * nfds) < 0)
        return FREE;
    for (uint64_t i = 0; i < nfds; i++) {
        if (v[i].fd < 0)
            continue;
        if ((v[i].events & POLLIN) && fd_wait(pid, v[i].fd, 1, p) == FREE)
            return FREE;
        if ((v[i].events & POLLOUT) && fd_wait(pid, v[i].fd, 0, p) == FREE)
            return FREE;
    }
    return STUCK;
}

static int select_wait(int pid, uint64_t nfds, uint64_t rd, uint64_t wr, uint64_t ex,
                       const struct pipes *p)
{
    fd_set sets[2];
    uint64_t addr[2] = {rd, wr};
    if (ex || nfds > FD_SETSIZE)
        return FREE;
    for (int k = 0; k < 2; k++) {
        FD_ZERO(&sets[k]);
        if (addr[k] && read_tenant(pid, addr[k], &sets[k], (nfds + 7) / 8) < 0)
            return FREE;
        for (int fd = 0; addr[k] && fd < (int)nfds; fd++)
            if (FD_ISSET(fd, &sets[k]) && fd_wait(pid, fd, k == 0, p) == FREE)
                return FREE;
    }
    return STUCK;
}

static int epoll_wait_on(int pid, int epfd, const struct pipes *p)
{
    char path[64], buf[8192];
    snprintf(path, sizeof path, "/proc/%d/fdinfo/%d", pid, epfd);
    if (gov_read_small(path, buf, sizeof buf) < 0)
        return FREE;
    for (char *t = strstr(buf, "tfd:"); t; t = strstr(t + 1, "tfd:")) {
        int fd = (int)strtol(t + 4, NULL, 10);
        char *ev = strstr(t, "events:");
        unsigned events = ev ? (unsigned)strtoul(ev + 7, NULL, 16) : 0;
        if ((events & EPOLLIN) && fd_wait(pid, fd, 1, p) == FREE)
            return FREE;
        if ((events & EPOLLOUT) && fd_wait(pid, fd, 0, p) == FREE)
            return FREE;
    }
    return STUCK;
}

/* What the sleeping task pid/tid waits for, from /proc/PID/task/TID/syscall. */
static int sleeper(int pid, int tid, const struct pipes *p)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/task/%d/syscall", pid, tid);
    if (gov_read_small(path, buf, sizeof buf) < 0 || buf[0] < '0' || buf[0] > '9')
        return FREE; /* running, or not in a call */
    uint64_t a[6] = {0};
    char *q;
    long nr = strtol(buf, &q, 10);
    for (int i = 0; i < 6; i++)
        a[i] = strtoull(q, &q, 16);
    switch (nr) {
    case SYS_wait4:
    case SYS_waitid:
        return STUCK;
    case SYS_futex: {
        int op = (int)(a[1] & FUTEX_CMD_MASK);
        int waits = op == FUTEX_WAIT || op == FUTEX_WAIT_BITSET || op == FUTEX_LOCK_PI ||
                    op == FUTEX_WAIT_REQUEUE_PI;
        return waits && !a[3] ? STUCK : FREE;
    }
    case SYS_read:
    case SYS_readv:
    case SYS_pread64:
    case SYS_preadv:
    case SYS_preadv2:
        return fd_wait(pid, (int)a[0], 1, p);
    case SYS_write:
    case SYS_writev:
    case SYS_pwrite64:
    case SYS_pwritev:
    case SYS_pwritev2:
        return fd_wait(pid, (int)a[0], 0, p);
    case SYS_poll:
        return (int)a[2] >= 0 ? FREE : poll_wait(pid, a[0], a[1], p);
    case SYS_ppoll:
        return a[2] ? FREE : poll_wait(pid, a[0], a[1], p);
    case SYS_select:
    case SYS_pselect6:
        return a[4] ? FREE : select_wait(pid, a[0], a[1], a[2], a[3], p);
    case SYS_epoll_wait:
    case SYS_epoll_pwait:
        return (int)a[3] >= 0 ? FREE : epoll_wait_on(pid, (int)a[0], p);
    default:
        return FREE; /* sockets, terminals, timers, locks, ...: not ours to judge */
    }
}

static int collect(void *arg, int pid, int tid, const char *children)
{
    struct ids *v = arg;
    return ids_add(v, pid) < 0 || ids_add(v, tid) < 0;
}

static uint64_t cpu_time(int pid, int tid)
{
    char path[64], buf[128];
    snprintf(path, sizeof path, "/proc/%d/task/%d/schedstat", pid, tid);
    return gov_read_small(path, buf, sizeof buf) < 0 ? 0 : strtoull(buf, NULL, 10);
}

int gov_tasks_stuck(const int *roots, int nroots, const int *held, int nheld,
                    const int *free_held, int nfree, uint64_t *cpu_ns)
{
    struct ids tasks = {0};
    struct pipes p = {{0}, {0}};
    struct gov_census census;
    int procs[4096];
    int rc = gov_tasks_walk(roots, nroots, procs, 4096, collect, &tasks, &census);
    if (rc == 0 && (census.nprocs == 4096 || tasks.n != 2 * census.live))
        rc = -ENOMEM;
    for (int i = 0; rc == 0 && i < census.nprocs; i++)
        scan_pipes(procs[i], &p);
    *cpu_ns = 0;
    int stuck = rc == 0 && census.live > 0;
    for (int i = 0; rc == 0 && i + 1 < tasks.n; i += 2) {
        int pid = tasks.v[i], tid = tasks.v[i + 1];
        *cpu_ns += cpu_time(pid, tid);
        if (!stuck)
            continue;
        if (ids_has(held, nheld, tid))
            continue;
        if (ids_has(free_held, nfree, tid)) {
            stuck = 0;
            continue;
        }
        char state = task_state(pid, tid);
        if (state == 'S' || state == 'I')
            stuck = sleeper(pid, tid, &p) == STUCK;
        else if (!is_dead(state) && state != 0)
            stuck = 0; /* running, stopped, or in uninterruptible I/O */
    }
    free(tasks.v);
    free(p.readers.v);
    free(p.writers.v);
    return rc < 0 ? rc : stuck;
}
