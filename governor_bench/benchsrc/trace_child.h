/* The tenant side of a ptrace supervisor, shared by floor_trace (a C
 * tracer) and trace_exec (for python-ptrace): PTRACE_TRACEME, stop with
 * SIGSTOP so the tracer can set its options, then install the bench filter
 * (pwrite64, write -> SECCOMP_RET_TRACE; none with `all`, for tracers that
 * stop at every call with PTRACE_SYSCALL) and exec argv. */
#ifndef TRACE_CHILD_H
#define TRACE_CHILD_H

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>

#include "bench_filter.h"

_Noreturn static void trace_child(const char *prog, int all, char **argv)
{
    const char *what = "PTRACE_TRACEME";
    if (ptrace(PTRACE_TRACEME, 0, 0, 0) < 0)
        goto fail;
    raise(SIGSTOP);
    what = "seccomp";
    if (!all && bench_filter(SECCOMP_RET_TRACE, 0) < 0)
        goto fail;
    execv(argv[0], argv);
    what = argv[0];
fail:
    fprintf(stderr, "%s: %s: %s\n", prog, what, strerror(errno));
    _exit(127);
}

#endif
