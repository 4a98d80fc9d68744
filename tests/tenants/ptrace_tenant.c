/* Tenant for test_ptrace.py: what a traced program may try. Results go to
 * stdout (a pipe: never charged), one line each. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void wait_stdin_eof(void)
{
    char c;
    while (read(0, &c, 1) > 0 || errno == EINTR)
        ;
}

static void *nothing(void *arg)
{
    return arg;
}

/* untraced: clone(CLONE_UNTRACED) must fail; a plain fork is traced. Both
 * stay alive until stdin closes. */
static int do_untraced(void)
{
    errno = 0;
    long pid = syscall(SYS_clone, CLONE_UNTRACED | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) {
        wait_stdin_eof();
        _exit(0);
    }
    int err = pid < 0 ? errno : 0;
    pid_t child = fork();
    if (child == 0) {
        wait_stdin_eof();
        _exit(0);
    }
    printf("untraced=%d forked=%d\n", err, child > 0);
    fflush(stdout);
    wait_stdin_eof();
    while (wait(NULL) > 0 || errno == EINTR)
        ;
    return 0;
}

/* clone3: ENOSYS; threads and fork still work. */
static int do_clone3(void)
{
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.exit_signal = SIGCHLD;
    errno = 0;
    long pid = syscall(SYS_clone3, &ca, sizeof ca);
    if (pid == 0)
        _exit(0);
    int err = pid < 0 ? errno : 0;
    pthread_t th;
    int trc = pthread_create(&th, NULL, nothing, NULL);
    if (trc == 0)
        pthread_join(th, NULL);
    int st = -1;
    pid_t child = fork();
    if (child == 0)
        _exit(7);
    if (child > 0)
        waitpid(child, &st, 0);
    printf("clone3=%d thread=%d fork=%d\n", err, trc, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}

/* ptrace FILE BYTES: tracing is refused; then BYTES go to FILE in 64 KiB writes. */
static int do_ptrace(const char *file, long bytes)
{
    errno = 0;
    long me = ptrace(PTRACE_TRACEME, 0, 0, 0);
    int err_me = me < 0 ? errno : 0;
    int p[2];
    if (pipe(p) < 0)
        return 2;
    pid_t sib = fork();
    if (sib == 0) {
        char c;
        close(p[1]);
        while (read(p[0], &c, 1) < 0 && errno == EINTR)
            ;
        _exit(0);
    }
    errno = 0;
    long at = ptrace(PTRACE_ATTACH, sib, 0, 0);
    int err_at = at < 0 ? errno : 0;
    close(p[1]);
    waitpid(sib, NULL, 0);
    static char buf[65536];
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    long done = 0;
    while (fd >= 0 && done < bytes) {
        ssize_t n = write(fd, buf, bytes - done < (long)sizeof buf ? (size_t)(bytes - done) : sizeof buf);
        if (n <= 0)
            break;
        done += n;
    }
    printf("traceme=%d attach=%d written=%ld\n", err_me, err_at, done);
    return 0;
}

/* stopwatch FILE: a child that writes a byte every 10 ms (for at most 30 s),
 * watched by its real parent with WUNTRACED | WCONTINUED. */
static int do_stopwatch(const char *file)
{
    pid_t child = fork();
    if (child == 0) {
        int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        printf("child %d\n", getpid());
        fflush(stdout);
        struct timespec ts = {0, 10000000};
        for (int i = 0; i < 3000; i++) {
            if (write(fd, "x", 1) < 0)
                return 2;
            nanosleep(&ts, NULL);
        }
        _exit(0);
    }
    for (int i = 0; i < 100; i++) {
        int st;
        if (waitpid(child, &st, WUNTRACED | WCONTINUED) < 0)
            return errno == EINTR ? 0 : 3;
        if (WIFSTOPPED(st))
            printf("stopped %d\n", WSTOPSIG(st));
        else if (WIFCONTINUED(st))
            printf("continued\n");
        else if (WIFSIGNALED(st))
            printf("signaled %d\n", WTERMSIG(st));
        else
            printf("exited %d\n", WEXITSTATUS(st));
        fflush(stdout);
        if (WIFSIGNALED(st) || WIFEXITED(st))
            return 0;
    }
    return 4;
}

/* busy FILE: prints its pid (in the group), then writes a byte every 10 ms, at most 60 s. */
static int do_busy(const char *file)
{
    printf("%d\n", getpid());
    fflush(stdout);
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    struct timespec ts = {0, 10000000};
    for (int i = 0; i < 6000; i++) {
        if (write(fd, "x", 1) < 0)
            return 2;
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* read FILE: reads it whole with 1 MiB reads, and 3 more at its end. */
static int do_read(const char *file)
{
    static char buf[1 << 20];
    int fd = open(file, O_RDONLY);
    if (fd < 0)
        return 2;
    long total = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        total += n;
    for (int i = 0; i < 3; i++)
        total += read(fd, buf, sizeof buf);
    printf("%ld\n", total);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "untraced"))
        return do_untraced();
    if (argc == 2 && !strcmp(argv[1], "clone3"))
        return do_clone3();
    if (argc == 4 && !strcmp(argv[1], "ptrace"))
        return do_ptrace(argv[2], atol(argv[3]));
    if (argc == 3 && !strcmp(argv[1], "stopwatch"))
        return do_stopwatch(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "busy"))
        return do_busy(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "read"))
        return do_read(argv[2]);
    return 64;
}
