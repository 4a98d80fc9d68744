/* Tenant programs for governor's tests. Results go to a file (argv[2]). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
static char *self;
static int release_r = -1, release_w = -1;

static void logf_(const char *path, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, buf, n);
        (void)w;
        close(fd);
    }
}

static void block_until_released(void)
{
    char c;
    if (release_w >= 0)
        close(release_w);
    while (read(release_r, &c, 1) != 0 && errno == EINTR)
        ;
}

static void *thread_main(void *arg)
{
    char c;
    while (read(release_r, &c, 1) < 0 && errno == EINTR)
        ;
    return NULL;
}

/* spawn KIND MAX OUT: create up to MAX tasks that all stay alive. */
static int do_spawn(const char *kind, int max, const char *out)
{
    int p[2];
    if (pipe(p) < 0)
        return 2;
    release_r = p[0];
    release_w = p[1];
    fcntl(release_w, F_SETFD, FD_CLOEXEC);
    pthread_t th[256];
    int ok = 0, err = 0;
    char fdarg[16];
    snprintf(fdarg, sizeof fdarg, "%d", release_r);
    char *wargv[] = {self, "wait", fdarg, NULL};
    for (int i = 0; i < max && i < 256; i++) {
        int rc = 0;
        if (!strcmp(kind, "fork")) {
            pid_t pid = fork();
            if (pid == 0) {
                block_until_released();
                _exit(0);
            }
            rc = pid < 0 ? errno : 0;
        } else if (!strcmp(kind, "vfork")) {
            pid_t pid = vfork();
            if (pid == 0) {
                execve(self, wargv, environ);
                _exit(127);
            }
            rc = pid < 0 ? errno : 0;
        } else if (!strcmp(kind, "clone3")) {
            struct clone_args ca;
            memset(&ca, 0, sizeof ca);
            ca.exit_signal = SIGCHLD;
            long pid = syscall(SYS_clone3, &ca, sizeof ca);
            if (pid == 0) {
                block_until_released();
                syscall(SYS_exit, 0);
            }
            rc = pid < 0 ? errno : 0;
        } else if (!strcmp(kind, "thread")) {
            rc = pthread_create(&th[ok], NULL, thread_main, NULL);
        } else if (!strcmp(kind, "posix_spawn")) {
            pid_t pid;
            rc = posix_spawn(&pid, self, NULL, NULL, wargv, environ);
        } else {
            return 3;
        }
        if (rc) {
            err = rc;
            break;
        }
        ok++;
    }
    logf_(out, "ok=%d errno=%d\n", ok, err);
    close(release_w);
    if (!strcmp(kind, "thread"))
        for (int i = 0; i < ok; i++)
            pthread_join(th[i], NULL);
    else
        while (wait(NULL) > 0 || errno == EINTR)
            ;
    return 0;
}

/* bomb: every process forks forever; non-root ones exit after 3 forks. */
static int do_bomb(void)
{
    signal(SIGCHLD, SIG_IGN);
    int root = 1, forks = 0;
    for (;;) {
        pid_t pid = fork();
        if (pid == 0) {
            root = 0;
            forks = 0;
            continue;
        }
        if (pid > 0 && !root && ++forks >= 3)
            _exit(0);
    }
}

static const char *sig_log;

static void on_usr1(int sig)
{
    logf_(sig_log, "handled\n");
}

/* hold FIFO LOG [sig]: children A and A2 fill the cap; B waits for A to
 * exit. With "sig", a SIGUSR1 handler (no SA_RESTART) logs "handled". */
static int do_hold(const char *fifo, const char *log, int sig)
{
    signal(SIGCHLD, SIG_IGN);
    if (sig) {
        struct sigaction sa = {.sa_handler = on_usr1};
        sig_log = log;
        sigaction(SIGUSR1, &sa, NULL);
    }
    int p[2];
    if (pipe(p) < 0)
        return 2;
    release_r = p[0];
    release_w = p[1];
    pid_t a = fork();
    if (a == 0) {
        logf_(log, "A ready\n");
        int fd = open(fifo, O_RDONLY);
        char c;
        while (fd >= 0 && read(fd, &c, 1) > 0)
            ;
        logf_(log, "A exit\n");
        _exit(0);
    }
    if (a < 0)
        return 4;
    pid_t a2 = fork();
    if (a2 == 0) {
        block_until_released();
        _exit(0);
    }
    if (a2 < 0)
        return 5;
    logf_(log, "forking B\n");
    pid_t b = fork();
    if (b == 0) {
        logf_(log, "B start\n");
        _exit(0);
    }
    if (b < 0) {
        logf_(log, "B failed errno=%d\n", errno);
        return 6;
    }
    logf_(log, "B forked\n");
    close(release_w);
    while (wait(NULL) > 0 || errno == EINTR)
        ;
    return 0;
}

#define MiB (1024L * 1024L)

static int do_mem(const char *mode, const char *out)
{
    if (!strcmp(mode, "malloc200")) {
        char *p = malloc(200 * MiB);
        if (!p) {
            logf_(out, "fail errno=%d\n", errno);
            return 10;
        }
        memset(p, 1, 200 * MiB);
        logf_(out, "ok\n");
        return 0;
    }
    if (!strcmp(mode, "mmap200")) {
        char *p = mmap(NULL, 200 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            logf_(out, "fail errno=%d\n", errno);
            return 10;
        }
        memset(p, 1, 200 * MiB);
        logf_(out, "ok\n");
        return 0;
    }
    if (!strcmp(mode, "sbrk200")) {
        void *p = sbrk(200 * MiB);
        if (p == (void *)-1) {
            logf_(out, "fail errno=%d\n", errno);
            return 10;
        }
        memset(p, 1, 200 * MiB);
        logf_(out, "ok\n");
        return 0;
    }
    if (!strcmp(mode, "chunks")) {
        /* 1 MiB touched chunks until one fails, at most 200. */
        int n = 0;
        for (; n < 200; n++) {
            char *p = malloc(MiB);
            if (!p)
                break;
            memset(p, 1, MiB);
        }
        logf_(out, "chunks=%d errno=%d\n", n, n < 200 ? errno : 0);
        return n < 200 ? 10 : 0;
    }
    if (!strcmp(mode, "reserve")) {
        char *p = mmap(NULL, 1024 * MiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            logf_(out, "reserve errno=%d\n", errno);
            return 11;
        }
        if (mprotect(p, 16 * MiB, PROT_READ | PROT_WRITE) < 0) {
            logf_(out, "commit16 errno=%d\n", errno);
            return 12;
        }
        memset(p, 1, 16 * MiB);
        int rc = mprotect(p + 16 * MiB, 200 * MiB, PROT_READ | PROT_WRITE);
        logf_(out, "reserve=ok commit16=ok commit200=%d errno=%d\n", rc, rc ? errno : 0);
        return 0;
    }
    return 3;
}

/* compat OUT FILE: the same write through int $0x80, the x32 entry, and natively. */
static int do_compat(const char *out, const char *file)
{
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return 2;
    char *buf = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (buf == MAP_FAILED)
        return 3;
    memcpy(buf, "hello", 5);
    long ret;
    __asm__ volatile("int $0x80"
                     : "=a"(ret)
                     : "a"(4L), "b"((long)fd), "c"((long)(uintptr_t)buf), "d"(5L)
                     : "memory", "r8", "r9", "r10", "r11");
    struct stat st;
    fstat(fd, &st);
    long after_i386 = st.st_size;
    errno = 0;
    long x = syscall(0x40000000L | 1, fd, buf, 5L);
    int xerr = errno;
    fstat(fd, &st);
    long after_x32 = st.st_size;
    long n = write(fd, buf, 5);
    fstat(fd, &st);
    logf_(out, "i386=%ld size1=%ld x32=%ld x32errno=%d size2=%ld native=%ld size3=%ld\n",
          ret, after_i386, x, xerr, after_x32, n, (long)st.st_size);
    return 0;
}

static int do_iouring(const char *out)
{
    char params[120];
    memset(params, 0, sizeof params);
    errno = 0;
    long r = syscall(SYS_io_uring_setup, 8, params);
    logf_(out, "ret=%ld errno=%d\n", r, r < 0 ? errno : 0);
    return 0;
}

static void wait_usr1(void)
{
    sigset_t set;
    int sig;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigwait(&set, &sig);
}

/* pend LOG: R, A, P, Q (with their pids in the group's namespace); each
 * step waits for SIGUSR1 from the test. */
static int do_pend(const char *log)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGCHLD, SIG_IGN);
    logf_(log, "R %d\n", getpid());
    if (fork() == 0) {
        logf_(log, "A %d\n", getpid());
        wait_usr1();
        _exit(0);
    }
    if (fork() == 0) {
        logf_(log, "P %d\n", getpid());
        wait_usr1();
        if (fork() == 0) {
            logf_(log, "P1 %d\n", getpid());
            wait_usr1();
            _exit(0);
        }
        logf_(log, "P forked\n");
        if (fork() == 0) {
            logf_(log, "P2 %d\n", getpid());
            _exit(0);
        }
        for (;;)
            wait_usr1();
    }
    if (fork() == 0) {
        logf_(log, "Q %d\n", getpid());
        wait_usr1();
        if (fork() == 0) {
            logf_(log, "Q1 %d\n", getpid());
            _exit(0);
        }
        for (;;)
            wait_usr1();
    }
    for (;;)
        wait_usr1();
}

int main(int argc, char **argv)
{
    self = argv[0];
    if (argc < 2)
        return 64;
    if (!strcmp(argv[1], "wait") && argc == 3) {
        release_r = atoi(argv[2]);
        block_until_released();
        return 0;
    }
    if (!strcmp(argv[1], "spawn") && argc == 5)
        return do_spawn(argv[2], atoi(argv[3]), argv[4]);
    if (!strcmp(argv[1], "pend") && argc == 3)
        return do_pend(argv[2]);
    if (!strcmp(argv[1], "bomb"))
        return do_bomb();
    if (!strcmp(argv[1], "hold") && (argc == 4 || argc == 5))
        return do_hold(argv[2], argv[3], argc == 5);
    if (!strcmp(argv[1], "mem") && argc == 4)
        return do_mem(argv[2], argv[3]);
    if (!strcmp(argv[1], "compat") && argc == 4)
        return do_compat(argv[2], argv[3]);
    if (!strcmp(argv[1], "iouring") && argc == 3)
        return do_iouring(argv[2]);
    return 64;
}
