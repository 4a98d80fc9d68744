/* Runs a command as a tracee for a ptrace supervisor written in Python
 * (python-ptrace): PTRACE_TRACEME, SIGSTOP, then the bench filter (pwrite64,
 * write -> SECCOMP_RET_TRACE) and exec. With --all no filter is installed:
 * the tracer stops at every call with PTRACE_SYSCALL.
 *
 *   trace_exec [--all] CMD [ARGS...]
 */
#include <string.h>

#include "trace_child.h"

int main(int argc, char **argv)
{
    int all = argc > 1 && strcmp(argv[1], "--all") == 0;
    if (argc < 2 + all) {
        fprintf(stderr, "usage: trace_exec [--all] CMD [ARGS...]\n");
        return 2;
    }
    trace_child("trace_exec", all, argv + 1 + all);
}
