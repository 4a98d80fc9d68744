/* Tenant for tests/test_rates.py: moves bytes in one of several ways and
 * reports on stdout what it measured itself ("bytes seconds"). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    perror(what);
    exit(99);
}

static int fd_g;
static size_t chunk_g;
static double t0_g, secs_g;

static void *writer(void *arg)
{
    char *buf = malloc(chunk_g);
    memset(buf, 'w', chunk_g);
    long long *total = arg;
    for (int i = 0; i < 10000000 && now() - t0_g < secs_g; i++) {
        ssize_t n = write(fd_g, buf, chunk_g);
        if (n < 0)
            die("write");
        *total += n;
    }
    free(buf);
    return NULL;
}

/* write PATH CHUNK SECS THREADS PROCS: appends for SECS seconds. */
static int do_write(char **a)
{
    fd_g = open(a[0], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd_g < 0)
        die("open");
    chunk_g = strtoul(a[1], 0, 0);
    secs_g = atof(a[2]);
    int threads = atoi(a[3]), procs = atoi(a[4]);
    t0_g = now();
    for (int p = 0; p < procs; p++) {
        pid_t pid = fork();
        if (pid < 0)
            die("fork");
        if (pid > 0)
            continue;
        pthread_t th[16];
        long long totals[16] = {0};
        for (int i = 0; i < threads; i++)
            pthread_create(&th[i], NULL, writer, &totals[i]);
        for (int i = 0; i < threads; i++)
            pthread_join(th[i], NULL);
        _exit(0);
    }
    int st, bad = 0;
    for (int p = 0; p < procs; p++)
        if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
            bad = 1;
    printf("0 %.6f\n", now() - t0_g);
    return bad;
}

/* read PATH CHUNK SECS: reads for SECS seconds, rewinding at EOF. */
static int do_read(char **a)
{
    int fd = open(a[0], O_RDONLY);
    size_t chunk = strtoul(a[1], 0, 0);
    double secs = atof(a[2]), t0 = now();
    char *buf = malloc(chunk);
    long long total = 0;
    if (fd < 0)
        die("open");
    for (int i = 0; i < 1000000 && now() - t0 < secs; i++) {
        ssize_t n = read(fd, buf, chunk);
        if (n < 0)
            die("read");
        if (n == 0)
            lseek(fd, 0, SEEK_SET);
        total += n;
    }
    printf("%lld %.6f\n", total, now() - t0);
    return 0;
}

/* readonce PATH COUNT: one read. */
static int do_readonce(char **a)
{
    int fd = open(a[0], O_RDONLY);
    size_t count = strtoul(a[1], 0, 0);
    char *buf = malloc(count);
    if (fd < 0)
        die("open");
    ssize_t n = read(fd, buf, count);
    if (n < 0)
        die("read");
    printf("%zd 0\n", n);
    return 0;
}

static int tcp_connect(const char *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(port))};
    struct timeval tv = {5, 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("connect");
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return s;
}

/* send PORT CHUNK SECS: sends to 127.0.0.1:PORT for SECS seconds. */
static int do_send(char **a)
{
    int s = tcp_connect(a[0]);
    size_t chunk = strtoul(a[1], 0, 0);
    double secs = atof(a[2]), t0 = now();
    char *buf = calloc(1, chunk);
    long long total = 0;
    for (int i = 0; i < 10000000 && now() - t0 < secs; i++) {
        ssize_t n = send(s, buf, chunk, 0);
        if (n < 0)
            die("send");
        total += n;
    }
    printf("%lld %.6f\n", total, now() - t0);
    return 0;
}

/* recv PORT BUFSIZE SECS RCVBUF: receives from 127.0.0.1:PORT (TCP). */
static int do_recv(char **a)
{
    int rcvbuf = atoi(a[3]);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(a[0]))};
    struct timeval tv = {5, 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0)
        die("socket");
    if (rcvbuf)
        setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("connect");
    size_t size = strtoul(a[1], 0, 0);
    double secs = atof(a[2]), t0 = now();
    char *buf = malloc(size);
    long long total = 0;
    for (int i = 0; i < 10000000 && now() - t0 < secs; i++) {
        ssize_t n = recv(s, buf, size, 0);
        if (n <= 0)
            die("recv");
        total += n;
    }
    printf("%lld %.6f\n", total, now() - t0);
    return 0;
}

/* recvudp BUFSIZE SECS RCVBUF: binds 127.0.0.1:0, prints the port, receives. */
static int do_recvudp(char **a)
{
    int rcvbuf = atoi(a[2]);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;
    struct timeval tv = {5, 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0)
        die("socket");
    setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (bind(s, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(s, (struct sockaddr *)&sa, &len) < 0)
        die("bind");
    printf("%d\n", ntohs(sa.sin_port));
    fflush(stdout);
    size_t size = strtoul(a[0], 0, 0);
    double secs = atof(a[1]), t0 = now();
    char *buf = malloc(size);
    long long total = 0;
    for (int i = 0; i < 10000000 && now() - t0 < secs; i++) {
        ssize_t n = recv(s, buf, size, 0);
        if (n < 0)
            die("recv");
        total += n;
    }
    printf("%lld %.6f\n", total, now() - t0);
    return 0;
}

static const char *marker_g;
static volatile sig_atomic_t signals_g;

static void on_usr1(int sig)
{
    (void)sig;
    signals_g++;
    if (marker_g)
        close(open(marker_g, O_WRONLY | O_CREAT, 0644)); /* never governed */
}

/* sigwrite PATH|tcp:PORT CHUNK COUNT MARKER RESTART: COUNT writes of CHUNK
 * to a file, or to a TCP socket (no timeouts) connected to 127.0.0.1:PORT,
 * with a SIGUSR1 handler; exits 4 if a write fails with EINTR. Prints the
 * number of signals handled. */
static int do_sigwrite(char **a)
{
    struct sigaction sa = {.sa_handler = on_usr1};
    sa.sa_flags = atoi(a[4]) ? SA_RESTART : 0;
    sigaction(SIGUSR1, &sa, NULL);
    marker_g = strcmp(a[3], "-") ? a[3] : NULL;
    int fd;
    if (!strncmp(a[0], "tcp:", 4)) {
        struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(atoi(a[0] + 4))};
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0)
            die("connect");
    } else {
        fd = open(a[0], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    }
    size_t chunk = strtoul(a[1], 0, 0);
    int count = atoi(a[2]);
    char *buf = calloc(1, chunk);
    if (fd < 0)
        die("open");
    for (int i = 0; i < count; i++) {
        ssize_t n = write(fd, buf, chunk);
        if (n < 0 && errno == EINTR)
            return 4;
        if (n != (ssize_t)chunk)
            die("write");
    }
    printf("%d 0\n", (int)signals_g);
    return 0;
}

/* xfer KIND SRC DST SECS CHUNK: moves bytes with sendfile (DST: a port),
 * splice (file -> pipe -> DST file) or copy_file_range (DST file). */
static int do_xfer(char **a)
{
    const char *kind = a[0];
    int src = open(a[1], O_RDONLY), dst;
    if (src < 0)
        die("open src");
    if (!strcmp(kind, "sendfile"))
        dst = tcp_connect(a[2]);
    else
        dst = open(a[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (dst < 0)
        die("open dst");
    double secs = atof(a[3]), t0 = now();
    size_t chunk = strtoul(a[4], 0, 0);
    int p[2];
    if (pipe(p) < 0)
        die("pipe");
    long long total = 0;
    for (int i = 0; i < 1000000 && now() - t0 < secs; i++) {
        ssize_t n;
        if (!strcmp(kind, "sendfile")) {
            n = sendfile(dst, src, NULL, chunk);
        } else if (!strcmp(kind, "splice")) {
            n = splice(src, NULL, p[1], NULL, chunk, 0);
            for (ssize_t left = n, m; left > 0; left -= m)
                if ((m = splice(p[0], NULL, dst, NULL, left, 0)) <= 0)
                    die("splice out");
        } else {
            n = copy_file_range(src, NULL, dst, NULL, chunk, 0);
        }
        if (n < 0)
            die(kind);
        if (n == 0)
            lseek(src, 0, SEEK_SET);
        total += n;
    }
    printf("%lld %.6f\n", total, now() - t0);
    return 0;
}

/* recvmmsg N: queues N 1 KiB datagrams to itself, takes them with one
 * recvmmsg of N messages. */
static int do_recvmmsg(char **a)
{
    int n = atoi(a[0]);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int s = socket(AF_INET, SOCK_DGRAM, 0), c = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0 || c < 0 || n < 1 || n > 64 || bind(s, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(s, (struct sockaddr *)&sa, &len) < 0)
        die("socket");
    static char bufs[64][2048], msg[1024];
    struct iovec iov[64];
    struct mmsghdr m[64];
    memset(m, 0, sizeof m);
    for (int i = 0; i < n; i++) {
        if (sendto(c, msg, sizeof msg, 0, (struct sockaddr *)&sa, sizeof sa) < 0)
            die("sendto");
        iov[i] = (struct iovec){bufs[i], sizeof bufs[i]};
        m[i].msg_hdr.msg_iov = &iov[i];
        m[i].msg_hdr.msg_iovlen = 1;
    }
    int got = recvmmsg(s, m, n, 0, NULL);
    if (got < 0)
        die("recvmmsg");
    long long total = 0;
    for (int i = 0; i < got; i++)
        total += m[i].msg_len;
    printf("%lld 0\n", total);
    return 0;
}

/* waitall PORT SIZE: one recv(SIZE, MSG_WAITALL) from 127.0.0.1:PORT. */
static int do_waitall(char **a)
{
    int s = tcp_connect(a[0]);
    size_t size = strtoul(a[1], 0, 0);
    char *buf = malloc(size);
    ssize_t n = recv(s, buf, size, MSG_WAITALL);
    if (n < 0)
        die("recv");
    printf("%zd 0\n", n);
    return 0;
}

/* nbsend PORT CHUNK TRIES: non-blocking sends to a peer that does not
 * read; prints the bytes the kernel took and the number of EAGAINs. */
static int do_nbsend(char **a)
{
    int s = tcp_connect(a[0]), tries = atoi(a[2]), eagain = 0;
    size_t chunk = strtoul(a[1], 0, 0);
    char *buf = calloc(1, chunk);
    long long total = 0;
    fcntl(s, F_SETFL, O_NONBLOCK);
    for (int i = 0; i < tries; i++) {
        ssize_t n = send(s, buf, chunk, 0);
        if (n < 0 && errno != EAGAIN)
            die("send");
        if (n < 0)
            eagain++;
        else
            total += n;
    }
    printf("%d %lld 0\n", eagain, total);
    return 0;
}

/* rcvtimeo MS: recv on an idle UDP socket with SO_RCVTIMEO of MS ms;
 * prints errno and the seconds the call took. */
static int do_rcvtimeo(char **a)
{
    int ms = atoi(a[0]);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    char buf[64];
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("socket");
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    double t0 = now();
    ssize_t n = recv(s, buf, sizeof buf, 0);
    printf("%d %.6f\n", n < 0 ? errno : 0, now() - t0);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int nargs;
        int (*fn)(char **);
    } modes[] = {{"write", 5, do_write},     {"read", 3, do_read},
                 {"readonce", 2, do_readonce}, {"send", 3, do_send},
                 {"recv", 4, do_recv},       {"recvudp", 3, do_recvudp},
                 {"sigwrite", 5, do_sigwrite}, {"xfer", 5, do_xfer},
                 {"recvmmsg", 1, do_recvmmsg}, {"waitall", 2, do_waitall},
                 {"nbsend", 3, do_nbsend},   {"rcvtimeo", 1, do_rcvtimeo}};
    for (size_t i = 0; argc > 1 && i < sizeof modes / sizeof modes[0]; i++)
        if (!strcmp(argv[1], modes[i].name) && argc == modes[i].nargs + 2)
            return modes[i].fn(argv + 2);
    fprintf(stderr, "usage: tenant MODE ARGS (bad mode or argument count)\n");
    return 2;
}
