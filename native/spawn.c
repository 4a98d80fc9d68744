#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "container_child.h"
#include "procfs.h"
#include "spawn.h"

/* Debian 12's headers predate kernel 5.19. */
#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)
#endif

static void close_pair(int p[2])
{
    if (p[0] >= 0)
        close(p[0]);
    if (p[1] >= 0)
        close(p[1]);
    p[0] = p[1] = -1;
}

/* In a child: tell the parent errno over fd (before any filter), then exit. */
static _Noreturn void child_fail(int fd, int err)
{
    ssize_t n = write(fd, &err, sizeof err);
    (void)n;
    _exit(127);
}

/* In the init or the command: a container set-up step failed. */
static _Noreturn void setup_fail(int fd, int err, int step)
{
    int msg[2] = {err, step};
    ssize_t n = write(fd, msg, sizeof msg);
    (void)n;
    _exit(127);
}

/* Async-signal-safe: handlers back to default so nothing of the Python
 * process runs in the child; ignored signals stay ignored as exec would keep
 * them, except SIGPIPE and SIGXFSZ that Python ignores for itself. */
static void reset_signals(void)
{
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (int s = 1; s < NSIG; s++) {
        struct sigaction cur;
        if (s == SIGKILL || s == SIGSTOP || sigaction(s, NULL, &cur) < 0)
            continue;
        if (cur.sa_handler != SIG_IGN || s == SIGPIPE || s == SIGXFSZ)
            sigaction(s, &dfl, NULL);
    }
}

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* Closes every fd from 3 up but the n in keep (sorted here). */
static void close_all_but(int *keep, int n)
{
    qsort(keep, (size_t)n, sizeof keep[0], cmp_int);
    unsigned lo = 3;
    for (int i = 0; i < n; i++) {
        if ((unsigned)keep[i] > lo)
            syscall(SYS_close_range, lo, (unsigned)keep[i] - 1, 0);
        if ((unsigned)keep[i] + 1 > lo)
            lo = (unsigned)keep[i] + 1;
    }
    syscall(SYS_close_range, lo, ~0U, 0);
}

/* The container's command: a user namespace of its own, which the init
 * maps onto the container's uid range, then container root in it. */
static int command_user_ns(int sync)
{
    char c;
    if (unshare(CLONE_NEWUSER) < 0)
        return -errno;
    if (write(sync, "u", 1) != 1 || read(sync, &c, 1) != 1)
        return -ECHILD; /* the init failed: it reports why */
    close(sync);
    return container_become_root();
}

/* The init's side: map the command's ids once it has its user namespace. */
static int init_map_ids(int sync, int cmd, unsigned int uid_base)
{
    char c;
    if (read(sync, &c, 1) != 1)
        return -ECHILD;
    int rc = container_map_ids(cmd, uid_base);
    if (rc == 0 && write(sync, "m", 1) != 1)
        rc = -errno;
    close(sync);
    return rc;
}

static _Noreturn void run_command(const struct gov_spawn_req *req, const sigset_t *mask,
                                  uint32_t *ready, int go_r, int exec_w, int sync)
{
    if (sync >= 0) {
        int rc = command_user_ns(sync);
        if (rc < 0)
            setup_fail(exec_w, -rc, GOV_STEP_SETUID);
    }
    reset_signals();
    sigprocmask(SIG_SETMASK, mask, NULL);
    for (int i = 0; i < 3; i++)
        if (req->stdio[i] >= 0 && dup2(req->stdio[i], i) < 0)
            child_fail(exec_w, errno);
    if (req->cwd && chdir(req->cwd) < 0)
        child_fail(exec_w, errno);
    /* Nothing of the supervisor's reaches the group, and the only seccomp
     * listener in this fd table must be our own: the supervisor finds it
     * by scanning. */
    int keep[] = {go_r, exec_w};
    close_all_but(keep, 2);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        child_fail(exec_w, errno);
    struct sock_fprog prog = {
        .len = (unsigned short)(req->filter_len / sizeof(struct sock_filter)),
        .filter = (struct sock_filter *)req->filter,
    };
    /* Once the engine has a call, only a fatal signal wakes its task: the
     * engine decides which signals end a held call, as they would end it
     * natively (engine.c). Kernels before 5.19 lack the flag. */
    unsigned flags = SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
    int listener = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, req->trace ? 0 : flags,
                                &prog);
    if (listener < 0 && errno == EINVAL && !req->trace)
        listener = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                                SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    if (listener < 0)
        child_fail(exec_w, errno);
    __atomic_store_n(ready, 1, __ATOMIC_RELEASE);
    syscall(SYS_futex, ready, FUTEX_WAKE, 1, NULL, NULL, 0);
    struct pollfd p = {.fd = go_r, .events = POLLIN};
    while (poll(&p, 1, -1) < 0 && errno == EINTR)
        ;
    if (!(p.revents & POLLIN))
        _exit(127); /* the supervisor went away before it took the listener */
    if (!req->trace)
        close(listener);
    execve(req->path, req->argv, req->envp);
    child_fail(exec_w, errno); /* governed from here on: the engine answers */
}

/* A plain group's own /proc, so that /proc/<getpid()> is the caller (the
 * group has a pid namespace of its own): a new proc on /proc in a mount
 * namespace that differs from the host's only there. The old /proc is made
 * private first, or the new one would propagate to the host's; every other
 * mount stays shared both ways as before. */
static int own_proc(void)
{
    if (mount(NULL, "/proc", NULL, MS_PRIVATE, NULL) < 0 ||
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return -errno;
    return 0;
}

static _Noreturn void run_init(const struct gov_spawn_req *req, const sigset_t *mask,
                               uint32_t *ready, int go[2], int status[2], int exec_[2])
{
    /* Die with the supervisor: the kernel then kills the whole namespace. */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    /* Keep no fd of the supervisor's (other groups' listeners, sockets):
     * stdio and the four pipe ends the command needs, that is all. */
    int keep[] = {go[0], status[1], exec_[1], -1, -1, -1};
    int nkeep = 3;
    for (int i = 0; i < 3; i++)
        if (req->stdio[i] >= 3)
            keep[nkeep++] = req->stdio[i];
    close_all_but(keep, nkeep);
    int sync[2] = {-1, -1};
    if (req->container) {
        int step, rc = container_enter(req->container, &step);
        if (rc < 0)
            setup_fail(exec_[1], -rc, step);
        container_name_init();
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sync) < 0)
            setup_fail(exec_[1], errno, GOV_STEP_UID_MAP);
    } else {
        int rc = own_proc();
        if (rc < 0)
            child_fail(exec_[1], -rc);
    }
    pid_t cmd = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (cmd < 0)
        child_fail(exec_[1], errno);
    if (cmd == 0) {
        close(status[1]);
        if (sync[0] >= 0)
            close(sync[0]);
        run_command(req, mask, ready, go[0], exec_[1], sync[1]);
    }
    close(go[0]);
    if (req->container) {
        close(sync[1]);
        int rc = init_map_ids(sync[0], cmd, req->container->uid_base);
        if (rc < 0)
            setup_fail(exec_[1], -rc, GOV_STEP_UID_MAP);
    }
    close(exec_[1]);
    /* All signals stay blocked here: the shim is not the tenant, and a
     * terminal's SIGINT must reach the command, not end its namespace. */
    for (;;) {
        int st;
        pid_t pid = waitpid(-1, &st, __WALL);
        if (pid == cmd) {
            ssize_t n = write(status[1], &st, sizeof st);
            (void)n;
            _exit(0);
        }
        if (pid < 0 && errno == ECHILD)
            _exit(0);
    }
}

static int find_child(int parent)
{
    char path[64], buf[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", parent, parent);
    int n = gov_read_small(path, buf, sizeof buf);
    return n < 0 ? n : n == 0 ? -ESRCH : atoi(buf);
}

/* The command's listener: the fd whose link reads "anon_inode:seccomp notify". */
static int take_listener(int pid)
{
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0)
        return -errno;
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", pid);
    DIR *d = opendir(dir);
    int rc = -ENOENT;
    if (!d) {
        rc = -errno;
        goto out;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        char link[320], target[64];
        snprintf(link, sizeof link, "%s/%s", dir, de->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        if (strcmp(target, "anon_inode:seccomp notify") == 0) {
            rc = (int)syscall(SYS_pidfd_getfd, pidfd, atoi(de->d_name), 0);
            if (rc < 0)
                rc = -errno;
            break;
        }
    }
    closedir(d);
out:
    close(pidfd);
    return rc;
}

/* Waits until the command says its filter is in place (1), it died or
 * failed (a write or EOF on exec_r: -1), or timeout_ms passed (0). The
 * futex wakes us at once; the 20 ms steps only look for a dead command. */
static int wait_ready(uint32_t *ready, int exec_r, int timeout_ms)
{
    const int step_ms = 20;
    for (int waited = 0; waited <= timeout_ms; waited += step_ms) {
        struct timespec ts = {0, step_ms * 1000000L};
        if (__atomic_load_n(ready, __ATOMIC_ACQUIRE))
            return 1;
        syscall(SYS_futex, ready, FUTEX_WAIT, 0, &ts, NULL, 0);
        if (__atomic_load_n(ready, __ATOMIC_ACQUIRE))
            return 1;
        struct pollfd p = {.fd = exec_r, .events = POLLIN};
        if (poll(&p, 1, 0) > 0)
            return -1;
    }
    return 0;
}

/* The errno a child reported on exec_r, or 0 at EOF; *step: where a
 * container's set-up failed (GOV_STEP_NONE for the command itself). */
static int child_errno(int exec_r, int *step)
{
    int msg[2] = {0, GOV_STEP_NONE};
    ssize_t n = read(exec_r, msg, sizeof msg);
    *step = n == (ssize_t)sizeof msg ? msg[1] : GOV_STEP_NONE;
    return n >= (ssize_t)sizeof msg[0] ? msg[0] : 0;
}

static int clone_flags(const struct gov_spawn_req *req)
{
    int flags = CLONE_NEWPID | CLONE_NEWNS | SIGCHLD;
    if (req->container)
        flags |= CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET;
    return flags;
}

int gov_spawn(const struct gov_spawn_req *req, struct gov_spawn_res *res)
{
    int go[2] = {-1, -1}, status[2] = {-1, -1}, exec_[2] = {-1, -1};
    int rc = 0, listener = -1;
    uint32_t *ready = mmap(NULL, sizeof *ready, PROT_READ | PROT_WRITE,
                           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ready == MAP_FAILED)
        return -errno;
    *ready = 0;
    if (pipe2(go, O_CLOEXEC) < 0 ||
        pipe2(status, O_CLOEXEC) < 0 || pipe2(exec_, O_CLOEXEC) < 0) {
        rc = -errno;
        goto fail;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    res->fail_step = GOV_STEP_NONE;
    res->go_fd = -1;
    pid_t init = (pid_t)syscall(SYS_clone, clone_flags(req), 0, 0, 0, 0);
    if (init == 0)
        run_init(req, &old, ready, go, status, exec_);
    int clone_err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (init < 0) {
        rc = -clone_err;
        goto fail;
    }
    close(status[1]);
    status[1] = -1;
    close(exec_[1]);
    exec_[1] = -1;
    close(go[0]);
    go[0] = -1;

    int n = wait_ready(ready, exec_[0], req->timeout_ms);
    int cmd = find_child(init);
    if (n == 0)
        rc = -ETIMEDOUT;
    else if (n < 0 || cmd < 0 || (!req->trace && (listener = take_listener(cmd)) < 0))
        rc = -(child_errno(exec_[0], &res->fail_step) ?: ECHILD);
    if (rc < 0) {
        kill(init, SIGKILL);
        waitpid(init, NULL, __WALL);
        goto fail;
    }
    munmap(ready, sizeof *ready);
    res->init_pid = init;
    res->cmd_pid = cmd;
    res->listener = listener;
    res->status_fd = status[0];
    res->exec_fd = exec_[0];
    res->go_fd = go[1];
    if (req->paused || req->trace)
        return 0;
    if ((rc = gov_spawn_go(res, 1)) < 0) {
        kill(init, SIGKILL);
        waitpid(init, NULL, __WALL);
        close(listener);
        close(status[0]);
        close(exec_[0]);
        return rc;
    }
    return 0;
fail:
    if (listener >= 0)
        close(listener);
    munmap(ready, sizeof *ready);
    close_pair(go);
    close_pair(status);
    close_pair(exec_);
    return rc;
}

int gov_spawn_go(struct gov_spawn_res *res, int go)
{
    int rc = 0;
    if (go && write(res->go_fd, "g", 1) != 1)
        rc = -errno;
    close(res->go_fd);
    res->go_fd = -1;
    return rc;
}
