/* create DIR N: N creating opens, closes and unlinks in DIR; sendmsg - N: N
 * one-byte sendmsg and reads on a socketpair (benchmarks/test_disk_calls.py). */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    int n = atoi(argv[3]), sv[2];
    if (!strcmp(argv[1], "create")) {
        int dir = open(argv[2], O_RDONLY | O_DIRECTORY);
        for (int i = 0; i < n; i++) {
            int fd = openat(dir, "f", O_WRONLY | O_CREAT | O_EXCL, 0644);
            if (fd < 0 || close(fd) < 0 || unlinkat(dir, "f", 0) < 0)
                return 1;
        }
        return 0;
    }
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) < 0)
        return 1;
    char c = 'x';
    struct iovec iov = {&c, 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    for (int i = 0; i < n; i++)
        if (sendmsg(sv[0], &m, 0) != 1 || read(sv[1], &c, 1) != 1)
            return 1;
    return 0;
}
