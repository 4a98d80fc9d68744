/* A tiny tenant for the overhead benchmarks.
 *
 *   tenant_loop pwrite|write|getpid|dupclose N [OUT]
 *   tenant_loop idle
 *   tenant_loop serve pwrite|write|getpid N OUT FIFO
 *
 * Does N calls (a 1-byte pwrite64 at offset 0 or a 1-byte write to a temp
 * file it opens itself, or getpid through syscall(2)) and prints the elapsed
 * nanoseconds per call, measured with clock_gettime around the loop only, so
 * process start-up, the filter install and exec are excluded. A short untimed
 * warm-up runs first. With OUT the same line is also written to that file
 * (for supervisors that do not hand us a pipe on stdout).
 *
 * `idle` blocks forever on a read of a pipe nobody writes to: an idle group
 * member for the many-groups benchmark.
 *
 * `serve` stays alive and runs one timed loop each time a byte other than
 * 'q' is read from FIFO (opened anew per round), writing the line to OUT.tmp
 * and renaming it to OUT. One long-lived tenant can so be measured before and
 * after other groups are created, without a spawn per round.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define WARMUP 2000L

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int temp_file(void)
{
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    char path[4096];
    snprintf(path, sizeof path, "%s/tenant_loop.XXXXXX", dir);
    fd = mkstemp(path);
    if (fd >= 0)
        unlink(path);
    return fd;
}

static void die(const char *what)
{
    fprintf(stderr, "tenant_loop: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* One call of the mode; 0 on success. */
static inline int one_call(int mode, int fd)
{
    switch (mode) {
    case 0:
        return pwrite(fd, "x", 1, 0) == 1 ? 0 : -1;
    case 1:
        return write(fd, "x", 1) == 1 ? 0 : -1;
    case 3: { /* the engine's fd cache makes close a governed call */
        int d = dup(fd);
        return d >= 0 && close(d) == 0 ? 0 : -1;
    }
    default:
        return syscall(SYS_getpid) > 0 ? 0 : -1;
    }
}

static int parse_mode(const char *s)
{
    if (strcmp(s, "pwrite") == 0)
        return 0;
    if (strcmp(s, "write") == 0)
        return 1;
    if (strcmp(s, "getpid") == 0)
        return 2;
    if (strcmp(s, "dupclose") == 0)
        return 3;
    fprintf(stderr, "tenant_loop: unknown mode %s\n", s);
    exit(2);
}

/* Warm-up, then N timed calls; the result line goes to `line`. */
static int timed_loop(int mode, const char *name, long n, int fd, char *line, size_t size)
{
    for (long i = 0; i < WARMUP; i++)
        if (one_call(mode, fd))
            die(name);
    if (mode == 1 && lseek(fd, 0, SEEK_SET) < 0)
        die("lseek");
    long long t0 = now_ns();
    for (long i = 0; i < n; i++)
        if (one_call(mode, fd))
            die(name);
    long long t1 = now_ns();
    if (mode == 1 && ftruncate(fd, 0) < 0)
        die("ftruncate");
    return snprintf(line, size, "mode=%s calls=%ld total_ns=%lld ns_per_call=%.2f\n", name, n,
                    t1 - t0, (double)(t1 - t0) / (double)n);
}

static void write_file(const char *path, const char *line, int len)
{
    int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0 || write(out, line, (size_t)len) != len || close(out) < 0)
        die(path);
}

static int serve(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: tenant_loop serve MODE N OUT FIFO\n");
        return 2;
    }
    int mode = parse_mode(argv[2]);
    long n = atol(argv[3]);
    const char *out = argv[4], *fifo = argv[5];
    char tmp[4096], line[256];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    int fd = mode == 2 ? -1 : temp_file();
    if (n <= 0 || (mode != 2 && fd < 0))
        die("setup");
    for (;;) {
        int f = open(fifo, O_RDONLY | O_CLOEXEC);
        if (f < 0)
            die(fifo);
        char c = 'q';
        ssize_t got;
        while ((got = read(f, &c, 1)) < 0 && errno == EINTR)
            ;
        close(f);
        if (got != 1 || c == 'q')
            return 0;
        int len = timed_loop(mode, argv[2], n, fd, line, sizeof line);
        write_file(tmp, line, len);
        if (rename(tmp, out) < 0)
            die("rename");
    }
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "serve") == 0)
        return serve(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "idle") == 0) {
        int p[2];
        char c;
        if (pipe(p) < 0)
            die("pipe");
        for (;;) /* never written: blocks until killed */
            if (read(p[0], &c, 1) < 0 && errno != EINTR)
                die("read");
    }
    if (argc < 3) {
        fprintf(stderr, "usage: tenant_loop pwrite|write|getpid N [OUT] | idle | serve MODE N OUT FIFO\n");
        return 2;
    }
    int mode = parse_mode(argv[1]);
    long n = atol(argv[2]);
    if (n <= 0) {
        fprintf(stderr, "tenant_loop: N must be > 0\n");
        return 2;
    }
    int fd = -1;
    if (mode != 2 && (fd = temp_file()) < 0)
        die("temp file");

    char line[256];
    int len = timed_loop(mode, argv[1], n, fd, line, sizeof line);
    fputs(line, stdout);
    fflush(stdout);
    if (argc >= 4)
        write_file(argv[3], line, len);
    return 0;
}
