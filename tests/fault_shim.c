/* LD_PRELOAD fault injection for test_engine_safety.py: with
 * GOV_FAULT_SYSCALL=N in the environment, syscall(N, ...) fails with EPERM
 * in this process (the engine calls pidfd_open, pidfd_getfd... through
 * libc's syscall()); every other call goes on to libc. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>

long syscall(long nr, ...)
{
    static long (*real)(long, ...);
    static long fail = -2;
    if (fail == -2) {
        const char *s = getenv("GOV_FAULT_SYSCALL");
        fail = s ? atol(s) : -1;
    }
    if (!real)
        real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
    va_list ap;
    va_start(ap, nr);
    long a[6];
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (nr == fail) {
        errno = EPERM;
        return -1;
    }
    return real(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
