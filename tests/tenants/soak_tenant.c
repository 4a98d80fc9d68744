/* The soak's tenant: keeps up to N tasks alive for SECS seconds, each child
 * writing to a file, sending on a loopback socket pair, mapping and
 * unmapping memory and (every other one) starting a thread before it exits,
 * so that forks, exits, writes, sends and memory calls never stop. Then,
 * until stdin closes, it keeps exactly N tasks alive and still (the parent
 * and N-1 children), so the engine's count can be compared with /proc.
 *
 *     soak_tenant N SECS FILE
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *spin(void *arg)
{
    volatile long x = 0;
    for (long i = 0; i < 100000; i++)
        x += i;
    return arg;
}

static void child_work(const char *file, int sock)
{
    static char buf[16384];
    /* Truncated, not appended: the writes are what is governed, and a long
     * soak must not fill the disk. */
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    for (int i = 0; fd >= 0 && i < 4; i++)
        if (write(fd, buf, sizeof buf) < 0)
            break;
    if (fd >= 0)
        close(fd);
    for (int i = 0; i < 4; i++)
        if (send(sock, buf, 4096, MSG_DONTWAIT) < 0)
            break;
    void *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m != MAP_FAILED) {
        memset(m, 1, 1 << 20);
        munmap(m, 1 << 20);
    }
    if (getpid() % 2) {
        pthread_t t;
        if (pthread_create(&t, NULL, spin, NULL) == 0)
            pthread_join(t, NULL);
    }
    usleep(20000 + rand() % 50000);
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 64;
    int n = atoi(argv[1]);
    double secs = atof(argv[2]), t0 = now();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        return 2;
    int live = 0;
    long forks = 0;
    /* Churn: children come and go. */
    while (now() - t0 < secs) {
        while (waitpid(-1, NULL, WNOHANG) > 0)
            live--;
        static char drain[65536];
        while (recv(sv[1], drain, sizeof drain, MSG_DONTWAIT) > 0)
            ;
        if (live >= n - 1) {
            usleep(5000);
            continue;
        }
        pid_t p = fork();
        if (p == 0) {
            srand((unsigned)getpid());
            child_work(argv[3], sv[0]);
            _exit(0);
        }
        if (p > 0)
            live++, forks++;
        else
            usleep(5000);
    }
    while (live > 0 && wait(NULL) > 0)
        live--;
    /* Still: n-1 children that wait for stdin to close. */
    for (int i = 0; i < n - 1; i++) {
        pid_t p = fork();
        if (p == 0) {
            char c;
            while (read(0, &c, 1) > 0)
                ;
            _exit(0);
        }
    }
    printf("still %ld\n", forks);   /* children it made while churning */
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0)
        ;
    while (wait(NULL) > 0)
        ;
    return 0;
}
