/* A tenant that would have the kernel write cores for it: it prints its
 * RLIMIT_CORE (soft, hard), tries to raise the soft limit to the hard one
 * and prints the errno (0: raised), then aborts N times in children,
 * each with a 60 MiB heap a core would carry.
 *
 *   core_tenant N */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct rlimit r;
    if (argc < 2 || getrlimit(RLIMIT_CORE, &r) < 0)
        return 64;
    printf("limit %lld %lld\n", (long long)r.rlim_cur, (long long)r.rlim_max);
    r.rlim_cur = r.rlim_max = RLIM_INFINITY;
    printf("raise %d\n", setrlimit(RLIMIT_CORE, &r) < 0 ? errno : 0);
    fflush(stdout);
    int killed = 0;
    for (int i = 0; i < atoi(argv[1]); i++) {
        pid_t c = fork();
        if (c == 0) {
            size_t n = 60u << 20;
            char *p = malloc(n);
            if (p)
                memset(p, 'c', n);
            abort();
        }
        int st;
        if (c > 0 && waitpid(c, &st, 0) == c && WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT)
            killed++;
    }
    printf("aborted %d\n", killed);
    return 0;
}
