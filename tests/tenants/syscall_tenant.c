#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
/* NR [ARG...]: makes the call, reports "ret=R errno=E" on stderr. An
 * argument "s:TEXT" is a pointer to TEXT, any other a number. */
int main(int argc, char **argv)
{
    long a[6] = {0};
    for (int i = 2; i < argc && i < 8; i++)
        a[i - 2] = argv[i][0] == 's' && argv[i][1] == ':' ? (long)(argv[i] + 2)
                                                          : strtol(argv[i], NULL, 0);
    errno = 0;
    long r = syscall(strtol(argv[1], NULL, 0), a[0], a[1], a[2], a[3], a[4], a[5]);
    fprintf(stderr, "ret=%ld errno=%d\n", r, r < 0 ? errno : 0);
    return 0;
}
