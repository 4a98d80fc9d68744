/* A tenant that moves bytes with native AIO (io_setup, io_submit), which no
 * governed call sees: it prints the errno of each AIO call, then, if
 * io_setup gave it a context, submits MIB MiB of 1 MiB writes to FILE and
 * prints what completed. Last it writes 1 MiB with glibc's POSIX aio, which
 * runs on threads making ordinary calls, and prints what that returned.
 *
 *   aio_tenant FILE MIB */
#define _GNU_SOURCE
#include <aio.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MiB (1 << 20)

static int err(long rc)
{
    return rc < 0 ? errno : 0;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 64;
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return 2;
    static char buf[MiB];
    memset(buf, 'a', sizeof buf);
    aio_context_t ctx = 0;
    int setup = err(syscall(SYS_io_setup, 64, &ctx));
    /* The others on a context that does not exist: EINVAL from a kernel
     * that has them. */
    printf("io_setup %d io_submit %d io_getevents %d io_pgetevents %d io_cancel %d "
           "io_destroy %d\n",
           setup, err(syscall(SYS_io_submit, (aio_context_t)1, 0L, NULL)),
           err(syscall(SYS_io_getevents, (aio_context_t)1, 0L, 0L, NULL, NULL)),
           err(syscall(SYS_io_pgetevents, (aio_context_t)1, 0L, 0L, NULL, NULL, NULL)),
           err(syscall(SYS_io_cancel, (aio_context_t)1, NULL, NULL)),
           err(syscall(SYS_io_destroy, (aio_context_t)1)));
    long long done = 0;
    for (int i = 0; setup == 0 && i < atoi(argv[2]); i++) {
        struct iocb cb = {.aio_lio_opcode = IOCB_CMD_PWRITE, .aio_fildes = (uint32_t)fd,
                          .aio_buf = (uintptr_t)buf, .aio_nbytes = MiB,
                          .aio_offset = (int64_t)i * MiB};
        struct iocb *list[1] = {&cb};
        struct io_event ev;
        if (syscall(SYS_io_submit, ctx, 1L, list) != 1 ||
            syscall(SYS_io_getevents, ctx, 1L, 1L, &ev, NULL) != 1)
            break;
        done += ev.res > 0 ? ev.res : 0;
    }
    printf("native %lld\n", done);
    struct aiocb a = {.aio_fildes = fd, .aio_buf = buf, .aio_nbytes = MiB,
                      .aio_offset = (off_t)done};
    const struct aiocb *wait[1] = {&a};
    if (aio_write(&a) < 0)
        return 3;
    while (aio_error(&a) == EINPROGRESS)
        aio_suspend(wait, 1, NULL);
    printf("posix %zd\n", aio_return(&a));
    return 0;
}
