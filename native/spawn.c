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
#include <sys/signalfd.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "container_child.h"
#include "fault.h"
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

/* In the init or the command: a set-up step (index: which mount, path...)
 * failed; tell the parent over fd (before any filter), then exit. */
static _Noreturn void setup_fail(int fd, int err, int step, int index)
{
    int msg[3] = {err, step, index};
    ssize_t n = write(fd, msg, sizeof msg);
    (void)n;
    _exit(127);
}

/* In a child: the command itself failed (exec, a dup2...). */
static _Noreturn void child_fail(int fd, int err)
{
    setup_fail(fd, err, GOV_STEP_NONE, -1);
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
 * maps (sync: "u" -> "m"), or the one at ns_fd[GOV_NS_USER]; then root in it. */
static int command_user_ns(const struct gov_container *c, const int *ns_fd, int sync)
{
    char ch;
    if (ns_fd[GOV_NS_USER] >= 0) {
        if (setns(ns_fd[GOV_NS_USER], CLONE_NEWUSER) < 0)
            return -errno;
        return 1;
    }
    if (!(c->new_ns & CLONE_NEWUSER))
        return 0;
    if (unshare(CLONE_NEWUSER) < 0)
        return -errno;
    if (write(sync, "u", 1) != 1 || read(sync, &ch, 1) != 1)
        return -ECHILD; /* the init failed: it reports why */
    return 1;
}

/* The init's side: map the command's ids once it has its user namespace. */
static int init_map_ids(int sync, int cmd, const struct gov_container *c)
{
    char ch;
    if (read(sync, &ch, 1) != 1)
        return -ECHILD;
    int rc = container_map_ids(cmd, c);
    if (rc == 0 && write(sync, "m", 1) != 1)
        rc = -errno;
    return rc;
}

/* A pty whose master goes to the caller over the console socket (as runc
 * does for `--console-socket`); the slave becomes the controlling terminal
 * and the std fds of mask (bit 1 << fd; `governor run` keeps pipes for the
 * ones its caller redirected). */
static int make_console(int sock, int mask)
{
    int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        return -errno;
    int unlock = 0, rc = 0, slave = -1;
    char name[64];
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0 ||
        (slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY)) < 0)
        rc = -errno;
    int pts = -1;
    if (rc == 0 && ioctl(master, TIOCGPTN, &pts) < 0)
        rc = -errno;
    snprintf(name, sizeof name, "/dev/pts/%d", pts);
    if (rc == 0) {
        char cbuf[CMSG_SPACE(sizeof(int))] = {0};
        struct iovec iov = {.iov_base = name, .iov_len = strlen(name)};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                             .msg_controllen = sizeof cbuf};
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &master, sizeof(int));
        if (sendmsg(sock, &msg, 0) < 0)
            rc = -errno;
    }
    if (rc == 0 && (setsid() < 0 || ioctl(slave, TIOCSCTTY, 0) < 0))
        rc = -errno;
    for (int i = 0; rc == 0 && i < 3; i++)
        if ((mask & 1 << i) && dup2(slave, i) < 0)
            rc = -errno;
    close(master);
    if (slave >= 0)
        close(slave);
    close(sock);
    return rc;
}

/* name looked up in the directories of search (a PATH), as execvp(3)
 * does: the first executable regular file. A name with a '/' is taken as it
 * is, if it is one. NULL if there is none. */
static const char *find_program(const char *name, const char *search, char *buf, size_t size)
{
    struct stat st;
    if (strchr(name, '/'))
        return stat(name, &st) == 0 && S_ISREG(st.st_mode) && access(name, X_OK) == 0 ? name
                                                                                      : NULL;
    while (*search) {
        size_t n = strcspn(search, ":");
        if ((size_t)snprintf(buf, size, "%.*s/%s", (int)n, n ? search : ".", name) < size &&
            stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
            return buf;
        search += n + (search[n] == ':');
    }
    return NULL;
}

static int asks_rlimit(const struct gov_process *p, int resource)
{
    for (int i = 0; p && i < p->nrlimits; i++)
        if (p->rlimits[i].resource == resource)
            return 1;
    return 0;
}

static _Noreturn void run_command(const struct gov_spawn_req *req, const int *ns_fd,
                                  const sigset_t *mask, uint32_t *ready, int go_r, int exec_w,
                                  int sync)
{
    const struct gov_process *p = req->process;
    int step, rc, in_user_ns = 0;
    if (req->container) {
        in_user_ns = command_user_ns(req->container, ns_fd, sync);
        if (in_user_ns < 0)
            setup_fail(exec_w, -in_user_ns, GOV_STEP_UID_MAP, -1);
    }
    if ((rc = container_become(p, in_user_ns, &step)) < 0)
        setup_fail(exec_w, -rc, step, -1);
    /* The kernel writes a core where no limit of the group reaches it: a
     * hard limit of 0 unless the process asks for cores (an OCI config's
     * rlimits). Lowering a hard limit needs no privilege. */
    if (!asks_rlimit(p, RLIMIT_CORE) && setrlimit(RLIMIT_CORE, &(struct rlimit){0, 0}) < 0)
        child_fail(exec_w, errno);
    reset_signals();
    sigprocmask(SIG_SETMASK, mask, NULL);
    for (int i = 0; i < 3; i++)
        if (req->stdio[i] >= 0 && dup2(req->stdio[i], i) < 0)
            child_fail(exec_w, errno);
    if (p && p->console_fd >= 0 && (rc = make_console(p->console_fd, p->console_stdio)) < 0)
        setup_fail(exec_w, -rc, GOV_STEP_CONSOLE, -1);
    /* Nothing of the supervisor's reaches the group, and the only seccomp
     * listener in this fd table must be our own: the supervisor finds it
     * by scanning. */
    int keep[] = {go_r, exec_w};
    close_all_but(keep, 2);
    if ((!p || p->no_new_privs) && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        child_fail(exec_w, errno);
    /* Installed while we still have CAP_SYS_ADMIN, so that it needs no
     * no_new_privs when the process asks for none. */
    struct sock_fprog prog = {
        .len = (unsigned short)(req->filter_len / sizeof(struct sock_filter)),
        .filter = (struct sock_filter *)req->filter,
    };
    /* Once the engine has a call, only a fatal signal wakes its task: the
     * engine decides which signals end a held call, as they would end it
     * natively (holds.c, still_waits). Kernels before 5.19 lack the flag. */
    unsigned flags = SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
    int listener = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, req->trace ? 0 : flags,
                                &prog);
    if (listener < 0 && errno == EINVAL && !req->trace)
        listener = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                                SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    if (listener < 0)
        child_fail(exec_w, errno);
    if ((rc = container_drop_privileges(p, &step)) < 0)
        setup_fail(exec_w, -rc, step, -1);
    if (req->cwd && chdir(req->cwd) < 0)
        setup_fail(exec_w, errno, GOV_STEP_CWD, -1);
    char found[4096];
    const char *path = req->search_path ? find_program(req->path, req->search_path, found,
                                                       sizeof found)
                                        : req->path;
    if (!path)
        setup_fail(exec_w, ENOENT, GOV_STEP_FIND_PROGRAM, -1);
    __atomic_store_n(ready, 1, __ATOMIC_RELEASE);
    syscall(SYS_futex, ready, FUTEX_WAKE, 1, NULL, NULL, 0);
    struct pollfd pfd = {.fd = go_r, .events = POLLIN};
    while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
        ;
    if (!(pfd.revents & POLLIN))
        _exit(127); /* the supervisor went away before it took the listener */
    if (!req->trace)
        close(listener);
    execve(path, req->argv, req->envp);
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

/* The command's exit as a parent sees it: code, or 128+N for signal N. */
static int exit_code(int st)
{
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A detached init: signals (all blocked here) are read from a signalfd
 * and passed on to the command; when the lifeline's write end closes, the
 * command is killed; the init exits with the command's status. */
static _Noreturn void init_wait_detached(pid_t cmd, int status_w, int lifeline)
{
    sigset_t all;
    sigfillset(&all);
    int sfd = signalfd(-1, &all, SFD_CLOEXEC | SFD_NONBLOCK);
    struct pollfd p[2] = {{.fd = sfd, .events = POLLIN}, {.fd = lifeline, .events = POLLIN}};
    for (;;) {
        int st;
        pid_t pid;
        while ((pid = waitpid(-1, &st, __WALL | WNOHANG)) > 0)
            if (pid == cmd) {
                ssize_t n = write(status_w, &st, sizeof st);
                (void)n;
                _exit(exit_code(st));
            }
        if (pid < 0 && errno == ECHILD)
            _exit(127);
        if (poll(p, p[1].fd >= 0 ? 2 : 1, sfd < 0 ? 50 : -1) < 0)
            continue;
        if (p[1].fd >= 0 && p[1].revents) {
            kill(cmd, SIGKILL);
            p[1].fd = -1;
        }
        struct signalfd_siginfo si;
        while (sfd >= 0 && read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
            if (si.ssi_signo != SIGCHLD)
                kill(cmd, (int)si.ssi_signo);
    }
}

static _Noreturn void run_init(const struct gov_spawn_req *req, const int *ns_fd,
                               const sigset_t *mask, uint32_t *ready, int go[2], int status[2],
                               int exec_[2])
{
    /* Die with the supervisor: the kernel then kills the whole namespace.
     * A detached init watches its lifeline instead. */
    if (!req->detached)
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    /* Keep no fd of the supervisor's (other groups' listeners, sockets):
     * stdio, the pipe ends the command needs, the namespaces to join, the
     * lifeline and the console socket; that is all. */
    int keep[6 + GOV_NS_N + 2], nkeep = 0;
    keep[nkeep++] = go[0];
    keep[nkeep++] = status[1];
    keep[nkeep++] = exec_[1];
    for (int i = 0; i < 3; i++)
        if (req->stdio[i] >= 3)
            keep[nkeep++] = req->stdio[i];
    for (int i = 0; i < GOV_NS_N; i++)
        if (ns_fd[i] >= 0)
            keep[nkeep++] = ns_fd[i];
    int lifeline = req->detached ? req->lifeline : -1;
    if (lifeline >= 0)
        keep[nkeep++] = lifeline;
    if (req->process && req->process->console_fd >= 0)
        keep[nkeep++] = req->process->console_fd;
    close_all_but(keep, nkeep);
    int sync[2] = {-1, -1};
    const struct gov_container *c = req->container;
    if (c) {
        int step, index, rc = container_enter(c, ns_fd, &step, &index);
        if (rc < 0)
            setup_fail(exec_[1], -rc, step, index);
        container_name_init(); /* nothing of the caller's shows inside */
        if ((c->new_ns & CLONE_NEWUSER) &&
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sync) < 0)
            setup_fail(exec_[1], errno, GOV_STEP_UID_MAP, -1);
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
        run_command(req, ns_fd, mask, ready, go[0], exec_[1], sync[1]);
    }
    close(go[0]);
    for (int i = 0; i < GOV_NS_N; i++)
        if (ns_fd[i] >= 0)
            close(ns_fd[i]);
    if (req->process && req->process->console_fd >= 0) {
        close(req->process->console_fd);
        /* The command's stdio is its pty: the caller's stdio (a pipe that
         * containerd's shim reads to its end) must not stay open here. */
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        for (int i = 0; i < 3; i++) {
            if (null >= 0)
                dup2(null, i);
            else
                close(i);
        }
        if (null > 2)
            close(null);
    }
    if (sync[0] >= 0) {
        close(sync[1]);
        int rc = init_map_ids(sync[0], cmd, c);
        close(sync[0]);
        if (rc == 0 && c->init_joins_user_ns) {
            char path[64];
            snprintf(path, sizeof path, "/proc/%d/ns/user", cmd);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            rc = fd < 0 || setns(fd, CLONE_NEWUSER) < 0 ? -errno : 0;
            if (fd >= 0)
                close(fd);
        }
        if (rc < 0)
            setup_fail(exec_[1], -rc, GOV_STEP_UID_MAP, -1);
    }
    close(exec_[1]);
    if (req->detached)
        init_wait_detached(cmd, status[1], lifeline);
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
            rc = gov_fault(EMFILE) < 0 ? -1
                 : (int)syscall(SYS_pidfd_getfd, pidfd, atoi(de->d_name), 0);
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
 * container's set-up failed (GOV_STEP_NONE for the command itself), *index
 * which of its mounts, paths... (-1: none). */
static int child_errno(int exec_r, int *step, int *index)
{
    int msg[3] = {0, GOV_STEP_NONE, -1};
    ssize_t n = read(exec_r, msg, sizeof msg);
    *step = n == (ssize_t)sizeof msg ? msg[1] : GOV_STEP_NONE;
    *index = n == (ssize_t)sizeof msg ? msg[2] : -1;
    return n >= (ssize_t)sizeof msg[0] ? msg[0] : 0;
}

/* A plain group gets a pid namespace of its own, and a mount namespace for
 * its own /proc; a container the namespaces it asks for (its user namespace
 * is the command's). */
static int clone_flags(const struct gov_spawn_req *req)
{
    if (!req->container)
        return CLONE_NEWPID | CLONE_NEWNS | SIGCHLD;
    return (req->container->new_ns & ~CLONE_NEWUSER) | SIGCHLD;
}

static void close_ns(int *ns_fd)
{
    for (int i = 0; i < GOV_NS_N; i++)
        if (ns_fd[i] >= 0)
            close(ns_fd[i]);
}

/* Opens the namespaces a container joins (its ns_path); -errno. */
static int open_ns(const struct gov_container *c, int *ns_fd)
{
    for (int i = 0; i < GOV_NS_N; i++)
        ns_fd[i] = -1;
    for (int i = 0; c && i < GOV_NS_N; i++)
        if (c->ns_path[i] && (ns_fd[i] = open(c->ns_path[i], O_RDONLY | O_CLOEXEC)) < 0) {
            int err = errno;
            close_ns(ns_fd);
            return -err;
        }
    return 0;
}

/* clone(2) of the init, in the pid namespace at pid_ns if it is open: this
 * thread's children go there for the clone only. */
static pid_t clone_init(int flags, int pid_ns)
{
    int own = -1;
    if (pid_ns >= 0) {
        own = open("/proc/thread-self/ns/pid", O_RDONLY | O_CLOEXEC);
        if (own < 0 || setns(pid_ns, CLONE_NEWPID) < 0) {
            int err = errno;
            if (own >= 0)
                close(own);
            errno = err;
            return -1;
        }
    }
    pid_t init = (pid_t)syscall(SYS_clone, flags, 0, 0, 0, 0);
    if (own >= 0 && init != 0) {
        int err = errno;
        setns(own, CLONE_NEWPID);
        close(own);
        errno = err;
    }
    return init;
}

int gov_spawn(const struct gov_spawn_req *req, struct gov_spawn_res *res)
{
    int go[2] = {-1, -1}, status[2] = {-1, -1}, exec_[2] = {-1, -1};
    int rc = 0, listener = -1, ns_fd[GOV_NS_N];
    res->fail_step = GOV_STEP_NONE;
    res->fail_index = -1;
    res->go_fd = -1;
    if ((rc = open_ns(req->container, ns_fd)) < 0) {
        res->fail_step = GOV_STEP_JOIN_NS;
        return rc;
    }
    uint32_t *ready = gov_fault(ENOMEM) < 0 ? MAP_FAILED
                      : mmap(NULL, sizeof *ready, PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ready == MAP_FAILED) {
        close_ns(ns_fd);
        return -errno;
    }
    *ready = 0;
    if (gov_fault(EMFILE) < 0 || pipe2(go, O_CLOEXEC) < 0 ||
        pipe2(status, O_CLOEXEC) < 0 || pipe2(exec_, O_CLOEXEC) < 0) {
        rc = -errno;
        goto fail;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t init = gov_fault(EAGAIN) < 0 ? -1 : clone_init(clone_flags(req), ns_fd[GOV_NS_PID]);
    if (init == 0)
        run_init(req, ns_fd, &old, ready, go, status, exec_);
    int clone_err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close_ns(ns_fd);
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
    else if (n < 0) /* it wrote its errno or exited: the read does not block */
        rc = -(child_errno(exec_[0], &res->fail_step, &res->fail_index) ?: ECHILD);
    else if (cmd < 0)
        rc = cmd;
    else if (!req->trace && (listener = take_listener(cmd)) < 0)
        rc = listener;
    if (rc < 0) {
        /* A command that waits for "go" sees it never come, and exits. */
        close(go[1]);
        go[1] = -1;
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
    if (go && (gov_fault(EPIPE) < 0 || write(res->go_fd, "g", 1) != 1))
        rc = -errno;
    close(res->go_fd);
    res->go_fd = -1;
    return rc;
}
