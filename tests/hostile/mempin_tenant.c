/* A hostile tenant that pins memory outside its private mappings, as much as
 * it can up to TOTAL MiB, in steps of STEP MiB:
 *
 *   memfd-write    memfd_create + write
 *   memfd-mmap     memfd_create + ftruncate + mmap, every page touched
 *   devshm         files in /dev/shm (POSIX shm), written and closed (in
 *                  $MEMPIN_DIR instead if set: a container's /tmp)
 *   memfd-inflight memfd + write, the fd sent to itself over a unix socket
 *                  (SCM_RIGHTS) and closed: only the message keeps it
 *   sysv           shmget segments, never attached
 *   memfd-secret   memfd_secret + ftruncate + mmap, every page touched
 *   pipes          pipes filled to the brim (F_SETPIPE_SZ 1 MiB first)
 *   unix-dgram     unix datagram socket pairs whose queues are filled
 *
 * MODE-churn (memfd-write, devshm, sysv): each object is given back (closed,
 * unlinked, removed) before the next is made.
 *
 * Each object is STEP MiB (pipes and sockets: as much as they take). Prints
 * "held=BYTES errno=E objects=N pid=PID" (errno of the first failure, 0 if none),
 * then waits for stdin to close, then gives everything back and exits 0.
 *
 * usage: mempin_tenant MODE TOTAL_MIB STEP_MIB */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MiB (1L << 20)
#define MAX_OBJ 8192

static char chunk[MiB];
static int fds[MAX_OBJ];
static int nfds;

/* Writes `len` bytes of chunk to fd; 0 or the errno. */
static int fill(int fd, long len)
{
    for (long done = 0; done < len;) {
        long n = len - done < MiB ? len - done : MiB;
        ssize_t w = write(fd, chunk, (size_t)n);
        if (w < 0)
            return errno;
        done += w;
    }
    return 0;
}

/* A memfd of `len` bytes by write (or ftruncate + touched mapping); the
 * fd, or -errno. */
static int memfd_of(long len, int by_mmap, int secret)
{
    int fd = secret ? (int)syscall(SYS_memfd_secret, 0) : memfd_create("pin", 0);
    if (fd < 0)
        return -errno;
    int err;
    if (!by_mmap) {
        err = fill(fd, len);
    } else if (ftruncate(fd, len) < 0) {
        err = errno;
    } else {
        char *p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        err = p == MAP_FAILED ? errno : 0;
        for (long i = 0; !err && i < len; i += 4096)
            p[i] = 1;
        if (!err)
            munmap(p, (size_t)len);
    }
    if (err) {
        close(fd);
        return -err;
    }
    return fd;
}

static int send_fd(int sock, int fd)
{
    char data = 'x', ctl[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec iov = {&data, 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                       .msg_controllen = sizeof ctl};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    return sendmsg(sock, &m, 0) < 0 ? errno : 0;
}

/* Fills a non-blocking fd until it takes no more; bytes queued. */
static long fill_queue(int fd, size_t msg)
{
    long queued = 0;
    for (int i = 0; i < 1 << 20; i++) {
        ssize_t w = write(fd, chunk, msg);
        if (w <= 0)
            break;
        queued += w;
    }
    return queued;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    char *mode = argv[1], *churn = strstr(mode, "-churn");
    if (churn)
        *churn = 0;
    long total = atol(argv[2]) * MiB, step = atol(argv[3]) * MiB, held = 0;
    int err = 0, sv[2] = {-1, -1}, shmids[MAX_OBJ], nshm = 0;
    char name[4200];
    const char *dir = getenv("MEMPIN_DIR") ? getenv("MEMPIN_DIR") : "/dev/shm";
    memset(chunk, 'p', sizeof chunk);
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) { /* as many fds as it may have */
        nofile.rlim_cur = nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &nofile);
    }
    if (!strcmp(mode, "memfd-inflight") && socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) < 0)
        return 3;
    while (!err && held < total && nfds < MAX_OBJ && nshm < MAX_OBJ) {
        if (!strcmp(mode, "memfd-write") || !strcmp(mode, "memfd-mmap")) {
            int fd = memfd_of(step, mode[6] == 'm', 0);
            if (fd < 0)
                err = -fd;
            else if (churn)
                close(fd), held += step;
            else
                fds[nfds++] = fd, held += step;
        } else if (!strcmp(mode, "memfd-inflight")) {
            int fd = memfd_of(step, 0, 0);
            if (fd < 0)
                err = -fd;
            else if ((err = send_fd(sv[0], fd)) == 0)
                held += step;
            if (fd >= 0)
                close(fd);
        } else if (!strcmp(mode, "memfd-secret")) {
            int fd = memfd_of(step, 1, 1);
            if (fd < 0)
                err = -fd;
            else
                fds[nfds++] = fd, held += step;
        } else if (!strcmp(mode, "devshm")) {
            snprintf(name, sizeof name, "%s/mempin-%d-%d", dir, getpid(), nfds);
            int fd = open(name, O_CREAT | O_EXCL | O_WRONLY, 0600);
            if (fd < 0) {
                err = errno;
                break;
            }
            err = fill(fd, step);
            close(fd);
            if (churn)
                unlink(name);
            else
                fds[nfds++] = -1; /* counts the files to unlink */
            if (!err)
                held += step;
        } else if (!strcmp(mode, "sysv")) {
            int id = shmget(IPC_PRIVATE, (size_t)step, IPC_CREAT | 0600);
            if (id < 0) {
                err = errno;
                break;
            }
            if (churn)
                shmctl(id, IPC_RMID, NULL);
            else
                shmids[nshm++] = id;
            held += step;
        } else if (!strcmp(mode, "pipes")) {
            int p[2];
            if (pipe2(p, O_NONBLOCK) < 0) {
                err = errno;
                break;
            }
            if (nfds == 0 && fcntl(p[1], F_SETPIPE_SZ, MiB) < 0)
                printf("setpipe_errno=%d\n", errno);
            fds[nfds++] = p[0];
            fds[nfds++] = p[1];
            held += fill_queue(p[1], 4096);
        } else if (!strcmp(mode, "unix-dgram")) {
            int p[2];
            if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, p) < 0) {
                err = errno;
                break;
            }
            if (nfds == 0) {
                int big = 64 << 20;
                if (setsockopt(p[0], SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) < 0)
                    printf("sndbufforce_errno=%d\n", errno);
            }
            fds[nfds++] = p[0];
            fds[nfds++] = p[1];
            held += fill_queue(p[0], 60000);
        } else {
            return 2;
        }
    }
    printf("held=%ld errno=%d objects=%d pid=%d\n", held, err, nfds + nshm, getpid());
    fflush(stdout);
    while (read(0, chunk, sizeof chunk) > 0)
        ;
    for (int i = 0; i < nshm; i++)
        shmctl(shmids[i], IPC_RMID, NULL);
    for (int i = 0; !strcmp(mode, "devshm") && i < nfds; i++) {
        snprintf(name, sizeof name, "%s/mempin-%d-%d", dir, getpid(), i);
        unlink(name);
    }
    return 0;
}
