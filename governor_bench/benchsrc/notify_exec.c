/* Runs a command under the bench filter (pwrite64, write ->
 * SECCOMP_RET_USER_NOTIF) and hands the listener to whoever holds the other
 * end of the unix socket SOCK_FD: the pure-Python notification handler.
 *
 *   notify_exec SOCK_FD CMD [ARGS...]
 */
#include <stdlib.h>

#include "notify_child.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: notify_exec SOCK_FD CMD [ARGS...]\n");
        return 2;
    }
    notify_child("notify_exec", atoi(argv[1]), argv + 2);
}
