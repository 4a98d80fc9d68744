/* A tenant that changes its iovecs between the notification and the call:
 * writers call writev (or pwritev2) on one file with an iovec array that a
 * flipper thread keeps switching between 1 byte and 64 KiB, so what the
 * engine reads with process_vm_readv and what the kernel then writes may
 * differ. Prints the bytes the calls reported written.
 *
 *   iovrace FILE SECONDS [writev|pwritev2] */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define BIG (64 * 1024)
#define WRITERS 3

static char buf[BIG];
static struct iovec iov[2];
static volatile int stop;
static int fd, use_pwritev2;
static long long written[WRITERS];

static void *flipper(void *arg)
{
    (void)arg;
    while (!stop) {
        iov[0].iov_len = BIG;
        iov[1].iov_len = BIG;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        iov[0].iov_len = 1;
        iov[1].iov_len = 1;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
    }
    return NULL;
}

static void *writer(void *arg)
{
    long i = (long)arg;
    while (!stop) {
        ssize_t n = use_pwritev2 ? pwritev2(fd, iov, 2, -1, 0) : writev(fd, iov, 2);
        if (n > 0)
            written[i] += n;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 64;
    use_pwritev2 = argc > 3 && strcmp(argv[3], "pwritev2") == 0;
    fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (fd < 0)
        return 2;
    memset(buf, 'x', sizeof buf);
    iov[0] = (struct iovec){buf, 1};
    iov[1] = (struct iovec){buf, 1};
    pthread_t f, w[WRITERS];
    pthread_create(&f, NULL, flipper, NULL);
    for (long i = 0; i < WRITERS; i++)
        pthread_create(&w[i], NULL, writer, (void *)i);
    struct timespec t = {atoi(argv[2]), 0};
    nanosleep(&t, NULL);
    stop = 1;
    long long total = 0;
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(w[i], NULL);
        total += written[i];
    }
    pthread_join(f, NULL);
    printf("%lld\n", total);
    return 0;
}
