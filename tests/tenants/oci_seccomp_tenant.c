/* What a container's seccomp profile lets through, from the inside:
 * prints each call's result (ok or the errno's name), and how long 512 KiB
 * of write(2) took (disk_write may hold them). Static: runs in a busybox
 * rootfs. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *result(long rc)
{
    return rc >= 0 ? "ok" : strerrorname_np(errno);
}

int main(void)
{
    char buf[4096] = {0};
    printf("getcwd %s\n", getcwd(buf, sizeof buf) ? "ok" : strerrorname_np(errno));
    int fd = open("/data", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    printf("pwrite64 %s\n", result(pwrite(fd, "x", 1, 0)));
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long total = 0;
    for (int i = 0; i < 128; i++)
        total += write(fd, buf, sizeof buf);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("write %ld bytes in %.3f s\n", total,
           (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
}
