/* Forks N children that exit at once, reaping each, then keeps two children
 * asleep and says "full": a group under processes=3 is then at its cap.
 * The children exit before the tracer may have taken their parent's fork
 * event (test_processes.py, a reused pid).
 *
 *     churn_tenant N */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 400;
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0)
            _exit(0);
        if (p < 0)
            return 1;
        waitpid(p, NULL, 0);
    }
    for (int i = 0; i < 2; i++)
        if (fork() == 0) {
            sleep(600);
            _exit(0);
        }
    printf("full\n");
    fflush(stdout);
    pause();
    return 0;
}
