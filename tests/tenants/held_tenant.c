/* Tenant for the daemon's tests and benchmarks: writes that the governor
 * holds (a disk_write rate that binds).
 *
 *   held_tenant writers FILE THREADS CHUNKS SIZE
 *       THREADS threads each append CHUNKS writes of SIZE bytes to FILE;
 *       prints the bytes the writes returned, in all.
 *   held_tenant fifo FILE N [GATE]
 *       N threads, each appending one 4096-byte record that holds its index;
 *       thread i+1 starts once thread i waits in its write (or is done), so
 *       the records' order in FILE is the order the writes were released.
 *       GATE: first write GATE bytes to FILE.gate, which leaves the group's
 *       bucket in debt, so that every record waits. Prints the number of
 *       records written.
 *   held_tenant pair FILE SIZE
 *       Two tasks (this thread and another); the other waits for one byte
 *       on stdin, then appends two writes of SIZE bytes to FILE (the first
 *       empties the group's bucket, the second is held) and prints what
 *       they returned, and the times (CLOCK_MONOTONIC, seconds) the second
 *       began and ended. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int fd_g;
static long chunks_g, size_g;

static long write_all(const char *buf, long n)
{
    long done = 0;
    while (done < n) {
        ssize_t w = write(fd_g, buf + done, (size_t)(n - done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            perror("write");
            exit(3);
        }
        done += w;
    }
    return done;
}

static void *writer(void *arg)
{
    char *buf = malloc((size_t)size_g);
    memset(buf, 'w', (size_t)size_g);
    long total = 0;
    for (long i = 0; i < chunks_g; i++)
        total += write_all(buf, size_g);
    free(buf);
    *(long *)arg = total;
    return NULL;
}

static pthread_t start(void *(*fn)(void *), void *arg)
{
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 64 * 1024);
    pthread_t t;
    if (pthread_create(&t, &a, fn, arg) != 0) {
        perror("pthread_create");
        exit(2);
    }
    pthread_attr_destroy(&a);
    return t;
}

static int writers(int threads)
{
    pthread_t *t = calloc((size_t)threads, sizeof *t);
    long *got = calloc((size_t)threads, sizeof *got), total = 0;
    for (int i = 0; i < threads; i++)
        t[i] = start(writer, &got[i]);
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        total += got[i];
    }
    printf("%ld\n", total);
    return 0;
}

struct rec {
    int index;
    pid_t tid;
};

static void *record(void *arg)
{
    struct rec *r = arg;
    __atomic_store_n(&r->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
    char buf[4096];
    memset(buf, 0, sizeof buf);
    snprintf(buf, sizeof buf, "%d\n", r->index);
    write_all(buf, sizeof buf);
    return NULL;
}

/* Thread tid waits in write(2) (its syscall number is 1), or is gone. */
static int waits_in_write(pid_t tid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 1;
    int in_write = fgets(line, sizeof line, f) && strncmp(line, "1 ", 2) == 0;
    fclose(f);
    return in_write;
}

static int fifo(int n)
{
    struct rec *r = calloc((size_t)n, sizeof *r);
    pthread_t *t = calloc((size_t)n, sizeof *t);
    for (int i = 0; i < n; i++) {
        r[i].index = i;
        t[i] = start(record, &r[i]);
        struct timespec pause = {0, 200000};
        for (long k = 0; k < 500000 && (!__atomic_load_n(&r[i].tid, __ATOMIC_ACQUIRE) ||
                                        !waits_in_write(r[i].tid)); k++)
            nanosleep(&pause, NULL);
    }
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    printf("%d\n", n);
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *pair_writer(void *arg)
{
    char c;
    while (read(0, &c, 1) < 0 && errno == EINTR)
        ;
    char *buf = calloc(1, (size_t)size_g);
    long got = write_all(buf, size_g);
    double t0 = now();
    got += write_all(buf, size_g);
    printf("%ld %.6f %.6f\n", got, t0, now());
    free(buf);
    return arg;
}

static void gate(const char *file, long bytes)
{
    char path[4096];
    snprintf(path, sizeof path, "%s.gate", file);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    char *buf = calloc(1, (size_t)bytes);
    if (fd < 0 || !buf || write(fd, buf, (size_t)bytes) != bytes) {
        perror(path);
        exit(1);
    }
    close(fd);
    free(buf);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 64;
    fd_g = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_g < 0) {
        perror(argv[2]);
        return 1;
    }
    if (!strcmp(argv[1], "writers") && argc == 6) {
        chunks_g = atol(argv[4]);
        size_g = atol(argv[5]);
        return writers(atoi(argv[3]));
    }
    if (!strcmp(argv[1], "fifo") && (argc == 4 || argc == 5)) {
        if (argc == 5)
            gate(argv[2], atol(argv[4]));
        return fifo(atoi(argv[3]));
    }
    if (!strcmp(argv[1], "pair") && argc == 4) {
        size_g = atol(argv[3]);
        pthread_join(start(pair_writer, NULL), NULL);
        return 0;
    }
    return 64;
}
