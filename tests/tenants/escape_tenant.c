/* What container root tries against the host. Prints the errno of each
 * attempt (0: it worked).
 *
 *   escape              type into its terminal (stdin) with TIOCSTI, plainly
 *                       and with bits above the 32 the kernel reads, and open
 *                       a raw socket
 *   escape bind HOST OWN  bind a host address, its own address and loopback,
 *                       and set the options that would bind a foreign address
 *                       anyway (IP_FREEBIND, IP_TRANSPARENT, IPV6_FREEBIND) */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef IPV6_FREEBIND
#define IPV6_FREEBIND 78 /* linux/in6.h; glibc 2.36 lacks it */
#endif

static int err_of(long rc)
{
    return rc < 0 ? errno : 0;
}

static int try_bind(const char *address)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, address, &sa.sin_addr) != 1)
        return EINVAL;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int rc = err_of(bind(s, (struct sockaddr *)&sa, sizeof sa));
    close(s);
    return rc;
}

static int try_option(int family, int level, int option)
{
    int s = socket(family, SOCK_STREAM, 0), one = 1;
    int rc = err_of(setsockopt(s, level, option, &one, sizeof one));
    close(s);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "bind") == 0) {
        printf("host=%d own=%d loopback=%d freebind=%d transparent=%d freebind6=%d\n",
               try_bind(argv[2]), try_bind(argv[3]), try_bind("127.0.0.1"),
               try_option(AF_INET, IPPROTO_IP, IP_FREEBIND),
               try_option(AF_INET, IPPROTO_IP, IP_TRANSPARENT),
               try_option(AF_INET6, IPPROTO_IPV6, IPV6_FREEBIND));
        return 0;
    }
    char c = 'X';
    int plain = err_of(syscall(SYS_ioctl, 0, (unsigned long)TIOCSTI, &c));
    int high = err_of(syscall(SYS_ioctl, 0, (1UL << 32) | TIOCSTI, &c));
    int raw = err_of(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    printf("tiocsti=%d high=%d raw=%d\n", plain, high, raw);
    return 0;
}
