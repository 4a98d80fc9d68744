/* cpu_tenant MODE SECONDS: busy loops for SECONDS, then prints "cpu=S wall=W"
 * (its own CPU time and children's, from getrusage).
 *   threads N: N busy threads;  procs N: N busy processes (forked);
 *   relay N: busy threads one after another, each for N ms;
 *   watch: forks one busy child and counts stop/continue reports of it
 *   (waitpid WUNTRACED|WCONTINUED), printing "reports=K". */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double secs;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void *spin(void *arg)
{
    volatile unsigned long x = 0;
    for (double start = now(); now() - start < secs;)
        for (int i = 0; i < 100000; i++)
            x++;
    return arg;
}

static double cpu_of(int who)
{
    struct rusage r;
    getrusage(who, &r);
    return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec +
           r.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    int n = atoi(argv[3]);
    secs = atof(argv[2]);
    double start = now();
    if (!strcmp(argv[1], "threads")) {
        pthread_t t[64];
        for (int i = 0; i < n && i < 64; i++)
            pthread_create(&t[i], NULL, spin, NULL);
        for (int i = 0; i < n && i < 64; i++)
            pthread_join(t[i], NULL);
    } else if (!strcmp(argv[1], "procs")) {
        for (int i = 0; i < n; i++)
            if (fork() == 0) {
                spin(NULL);
                _exit(0);
            }
        while (wait(NULL) > 0)
            ;
    } else if (!strcmp(argv[1], "relay")) {
        double total = secs;
        secs = n / 1000.0;
        while (now() - start < total) {
            pthread_t t;
            pthread_create(&t, NULL, spin, NULL);
            pthread_join(t, NULL);
        }
    } else if (!strcmp(argv[1], "watch")) {
        pid_t child = fork();
        if (child == 0) {
            spin(NULL);
            _exit(0);
        }
        int reports = 0, st;
        for (;;) {
            pid_t p = waitpid(child, &st, WUNTRACED | WCONTINUED);
            if (p < 0 || WIFEXITED(st) || WIFSIGNALED(st))
                break;
            reports++; /* stopped or continued */
        }
        printf("reports=%d\n", reports);
        return 0;
    }
    printf("cpu=%.3f wall=%.3f\n", cpu_of(RUSAGE_SELF) + cpu_of(RUSAGE_CHILDREN), now() - start);
    return 0;
}
