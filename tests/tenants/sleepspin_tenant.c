/* Spins, sleeps, spins again, then prints the CPU share it got while spinning
 * for 2 s (test_cpu.py: a task that slept gets its share back). */
#include <stdio.h>
#include <time.h>
#include <unistd.h>
static double now(clockid_t c) { struct timespec t; clock_gettime(c, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static void spin(double s) { volatile unsigned long x = 0; double w = now(CLOCK_MONOTONIC);
    while (now(CLOCK_MONOTONIC) - w < s) for (int i = 0; i < 100000; i++) x++; }
int main(void) {
    spin(0.5); sleep(1); spin(0.5);   /* back to busy: the share comes back */
    double c = now(CLOCK_THREAD_CPUTIME_ID), w = now(CLOCK_MONOTONIC);
    spin(2);
    printf("%.3f\n", (now(CLOCK_THREAD_CPUTIME_ID) - c) / (now(CLOCK_MONOTONIC) - w));
    return 0; }
