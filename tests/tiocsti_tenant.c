/* Tries to type into its terminal (stdin) with TIOCSTI: plainly, and with
 * bits above the 32 that the kernel reads. Prints the errno of each. */
#include <errno.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
    char c = 'X';
    long plain = syscall(SYS_ioctl, 0, (unsigned long)TIOCSTI, &c);
    int plain_err = plain < 0 ? errno : 0;
    long high = syscall(SYS_ioctl, 0, (1UL << 32) | TIOCSTI, &c);
    printf("plain=%d high=%d\n", plain_err, high < 0 ? errno : 0);
    return 0;
}
