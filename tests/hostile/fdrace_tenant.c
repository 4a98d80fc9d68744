/* A tenant that races the engine's look at a write's arguments:
 *
 *   fdrace dup2 FILE SECONDS   fd 5 flips between /dev/null and FILE (dup2,
 *                              from a thread) while 3 threads write 1 MiB
 *                              to fd 5 in a loop
 *   fdrace swap FILE SECONDS   the same between FILE, 1 MiB rewritten in
 *                              place (pwrite at 0), and FILE.b, opened
 *                              O_APPEND (where pwrite appends)
 *   fdrace iov FILE SECONDS    3 threads writev FILE from iovecs that a
 *                              thread flips between 1 byte and 1 MiB (what
 *                              the engine read and what the kernel reads at
 *                              release may differ, held or not)
 *   fdrace close - SECONDS     a thread sends SIGUSR1 (a handler without
 *                              SA_RESTART) to the main thread, which opens
 *                              and closes fds in a loop, 10,000 times or
 *                              for SECONDS, whichever comes first
 *
 * After SECONDS it prints what the writes reported written (for close: the
 * closes made and those that failed with EINTR) and exits at once: a writer
 * may be held for a long time. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MiB (1 << 20)
#define WRITERS 3
#define FD 5

static char buf[MiB];
static struct iovec iov[WRITERS];
static atomic_int stop;
static atomic_llong written;
static int file, other; /* dup2 flips FD between them */

static void *flip_fd(void *arg)
{
    while (!stop) {
        dup2(other, FD);
        dup2(file, FD);
    }
    return arg;
}

static void *flip_iov(void *arg)
{
    while (!stop) {
        for (int i = 0; i < WRITERS; i++)
            iov[i].iov_len = MiB;
        atomic_thread_fence(memory_order_seq_cst);
        for (int i = 0; i < WRITERS; i++)
            iov[i].iov_len = 1;
        atomic_thread_fence(memory_order_seq_cst);
    }
    return arg;
}

static void *write_fd(void *arg)
{
    while (!stop) {
        ssize_t n = write(FD, buf, MiB);
        if (n > 0)
            written += n;
    }
    return arg;
}

static void *pwrite_fd(void *arg)
{
    while (!stop) {
        ssize_t n = pwrite(FD, buf, MiB, 0);
        if (n > 0)
            written += n;
    }
    return arg;
}

static void *write_iov(void *arg)
{
    long i = (long)arg;
    while (!stop) {
        ssize_t n = writev(file, &iov[i], 1);
        if (n > 0)
            written += n;
    }
    return arg;
}

static atomic_long handled;

static void on_signal(int sig)
{
    (void)sig;
    handled++;
}

static pthread_t main_thread;

/* The next signal only once the last was handled: a signal sent without
 * pause is pending again at every return to user space, so the main thread
 * may make no progress at all (under ptrace each delivery is a stop, and a
 * run in CI made 17 closes in 2 s). */
static void *signaller(void *arg)
{
    while (!stop) {
        long seen = handled;
        pthread_kill(main_thread, SIGUSR1);
        while (!stop && handled == seen)
            sched_yield();
    }
    return arg;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int close_loop(double seconds)
{
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART */
    sigaction(SIGUSR1, &sa, NULL);
    main_thread = pthread_self();
    pthread_t t;
    pthread_create(&t, NULL, signaller, NULL);
    long closes = 0, eintr = 0;
    for (double end = now() + seconds; closes < 10000 && now() < end;) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd < 0)
            continue; /* EINTR: open may be interrupted, close may not */
        if (close(fd) < 0 && errno == EINTR)
            eintr++;
        closes++;
    }
    stop = 1;
    pthread_join(t, NULL);
    printf("%ld %ld\n", closes, eintr);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return 64;
    double seconds = atof(argv[3]);
    if (strcmp(argv[1], "close") == 0)
        return close_loop(seconds);
    int iov_mode = strcmp(argv[1], "iov") == 0, swap = strcmp(argv[1], "swap") == 0;
    memset(buf, 'r', sizeof buf);
    char b[4096];
    snprintf(b, sizeof b, "%s.b", argv[2]);
    file = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | (swap ? 0 : O_APPEND), 0644);
    other = swap ? open(b, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644)
                 : open("/dev/null", O_WRONLY);
    if (file < 0 || other < 0 || dup2(other, FD) != FD ||
        (swap && pwrite(file, buf, MiB, 0) != MiB))
        return 2;
    for (int i = 0; i < WRITERS; i++)
        iov[i] = (struct iovec){buf, 1};
    void *(*writer)(void *) = iov_mode ? write_iov : swap ? pwrite_fd : write_fd;
    pthread_t t;
    pthread_create(&t, NULL, iov_mode ? flip_iov : flip_fd, NULL);
    for (long i = 0; i < WRITERS; i++)
        pthread_create(&t, NULL, writer, (void *)i);
    struct timespec d = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
    nanosleep(&d, NULL);
    stop = 1;
    printf("%lld\n", (long long)written);
    fflush(stdout);
    _exit(0);
}
