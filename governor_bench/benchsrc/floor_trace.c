/* The governed-call floor of ptrace: the least a ptrace + seccomp RET_TRACE
 * supervisor can do per call.
 *
 *   floor_trace CMD [ARGS...]
 *
 * A child becomes a tracee and installs the bench filter (trace_child.h:
 * pwrite64 and write -> SECCOMP_RET_TRACE) before exec. The parent sets
 * PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL and loops waitpid +
 * PTRACE_GET_SYSCALL_INFO + PTRACE_CONT: at every seccomp stop it learns the
 * call (as NOTIF_RECV tells floor_notify) and resumes it at once; other stops
 * get their signal back (the SIGTRAP of exec is swallowed). It exits with the child's status; the
 * number of seccomp stops goes to stderr.
 */
#define _GNU_SOURCE
#include <sys/wait.h>

#include "trace_child.h"

_Noreturn static void die(const char *what)
{
    fprintf(stderr, "floor_trace: %s: %s\n", what, strerror(errno));
    _exit(1);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: floor_trace CMD [ARGS...]\n");
        return 2;
    }
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0)
        trace_child("floor_trace", 0, argv + 1);
    int st;
    if (waitpid(pid, &st, 0) < 0 || !WIFSTOPPED(st))
        die("first stop");
    if (ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL) < 0)
        die("PTRACE_SETOPTIONS");
    unsigned long stops = 0;
    int sig = 0;
    for (;;) {
        if (ptrace(PTRACE_CONT, pid, 0, sig) < 0)
            die("PTRACE_CONT");
        while (waitpid(pid, &st, 0) < 0)
            if (errno != EINTR)
                die("waitpid");
        if (!WIFSTOPPED(st))
            break;
        sig = 0;
        if (st >> 8 == (SIGTRAP | (PTRACE_EVENT_SECCOMP << 8))) {
            struct __ptrace_syscall_info info;
            if (ptrace(PTRACE_GET_SYSCALL_INFO, pid, sizeof info, &info) <= 0)
                die("PTRACE_GET_SYSCALL_INFO");
            stops++;
        }
        else if (WSTOPSIG(st) != SIGTRAP)
            sig = WSTOPSIG(st);
    }
    fprintf(stderr, "floor_trace: %lu seccomp stops\n", stops);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return WEXITSTATUS(st);
}
