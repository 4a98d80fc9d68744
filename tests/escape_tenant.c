/* What container root tries against the host: type into its terminal
 * (stdin) with TIOCSTI, plainly and with bits above the 32 the kernel
 * reads, and open a raw socket. Prints the errno of each (0: it worked). */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static int err_of(long rc)
{
    return rc < 0 ? errno : 0;
}

int main(void)
{
    char c = 'X';
    int plain = err_of(syscall(SYS_ioctl, 0, (unsigned long)TIOCSTI, &c));
    int high = err_of(syscall(SYS_ioctl, 0, (1UL << 32) | TIOCSTI, &c));
    int raw = err_of(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    printf("tiocsti=%d high=%d raw=%d\n", plain, high, raw);
    return 0;
}
