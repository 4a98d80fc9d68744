/* The governed-call floor of the ptrace backend: the least a seccomp
 * RET_TRACE supervisor can do per call.
 *
 *   floor_trace CMD [ARGS...]
 *
 * A child asks to be traced, stops, installs a raw BPF filter (arch ==
 * x86_64 and nr in {pwrite64, write} -> SECCOMP_RET_TRACE, anything else
 * ALLOW) and execs CMD. The parent loops waitpid + PTRACE_GET_SYSCALL_INFO +
 * PTRACE_CONT until the child exits, and exits with its status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

_Noreturn static void die(const char *what)
{
    fprintf(stderr, "floor_trace: %s: %s\n", what, strerror(errno));
    _exit(1);
}

_Noreturn static void child(char **argv)
{
    struct sock_filter insns[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 4),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pwrite64, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_write, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof insns / sizeof insns[0], .filter = insns};
    if (ptrace(PTRACE_TRACEME, 0, 0, 0) < 0)
        die("traceme");
    raise(SIGSTOP); /* the parent sets its options */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        die("no_new_privs");
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
        die("seccomp");
    execvp(argv[0], argv);
    die("exec");
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
        child(argv + 1);
    int st;
    if (waitpid(pid, &st, 0) < 0)
        die("waitpid");
    long opts = PTRACE_O_TRACESECCOMP | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL;
    if (ptrace(PTRACE_SETOPTIONS, pid, 0, opts) < 0 || ptrace(PTRACE_CONT, pid, 0, 0) < 0)
        die("setoptions");
    long stops = 0;
    for (;;) {
        if (waitpid(pid, &st, 0) < 0)
            die("waitpid");
        if (WIFEXITED(st) || WIFSIGNALED(st))
            break;
        int sig = 0;
        if (st >> 16 == PTRACE_EVENT_SECCOMP) {
            struct __ptrace_syscall_info info;
            if (ptrace(PTRACE_GET_SYSCALL_INFO, pid, sizeof info, &info) <= 0)
                die("get_syscall_info");
            stops++;
        } else if (st >> 16 == 0) {
            sig = WSTOPSIG(st); /* a signal for the tracee */
        }
        ptrace(PTRACE_CONT, pid, 0, (long)sig);
    }
    fprintf(stderr, "floor_trace: %ld stops\n", stops);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
