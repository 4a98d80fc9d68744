/* A tenant started with `>> host.log` goes after the host's file behind its
 * stdout: it truncates it, grows it with fallocate, names it through
 * /proc/self/fd/1 and reopens it there with O_TRUNC. Prints what each call
 * got: with its stdio relayed by governor, none of them reaches the file. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *result(int rc)
{
    return rc == 0 ? "done" : strerrorname_np(errno);
}

int main(void)
{
    char link[256] = "";
    const char *truncated = result(ftruncate(1, 0));
    const char *grown = result(fallocate(1, 0, 0, 64 << 20));
    ssize_t n = readlink("/proc/self/fd/1", link, sizeof link - 1);
    link[n > 0 ? n : 0] = '\0';
    int fd = open("/proc/self/fd/1", O_WRONLY | O_TRUNC);
    const char *reopened = fd >= 0 ? "done" : strerrorname_np(errno);
    printf("ftruncate=%s fallocate=%s reopen=%s link=%.5s\n", truncated, grown, reopened, link);
    return 0;
}
