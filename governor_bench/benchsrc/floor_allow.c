/* The ungoverned-call floor: runs a command under a seccomp filter that
 * allows everything (a single SECCOMP_RET_ALLOW), so the tenant pays the
 * seccomp entry path but no supervisor.
 *
 *   floor_allow CMD [ARGS...]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: floor_allow CMD [ARGS...]\n");
        return 2;
    }
    struct sock_filter insns[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
    struct sock_fprog prog = {.len = 1, .filter = insns};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) {
        fprintf(stderr, "floor_allow: seccomp: %s\n", strerror(errno));
        return 1;
    }
    execv(argv[1], argv + 1);
    fprintf(stderr, "floor_allow: exec %s: %s\n", argv[1], strerror(errno));
    return 127;
}
