/* The governed-call floor: the least a seccomp user-notification supervisor
 * can do per call.
 *
 *   floor_notify CMD [ARGS...]
 *
 * A child installs the bench filter (bench_filter.h: pwrite64 and write ->
 * SECCOMP_RET_USER_NOTIF) with a new listener, hands the listener to the
 * parent over a unix socket (notify_child.h) and execs CMD once the parent is
 * ready. The parent sets SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, like governor's
 * engine, and loops epoll_wait + NOTIF_RECV + NOTIF_SEND(CONTINUE) until the
 * listener hangs up. It exits with the child's status; the number of
 * notifications goes to stderr.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

#include "notify_child.h"

/* Debian 12's headers predate kernel 6.6. */
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif

_Noreturn static void die(const char *what)
{
    fprintf(stderr, "floor_notify: %s: %s\n", what, strerror(errno));
    _exit(1);
}

static int recv_fd(int sock)
{
    char byte;
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } cm;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
                         .msg_controllen = sizeof cm.buf};
    if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1)
        return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (!c || c->cmsg_type != SCM_RIGHTS)
        return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: floor_notify CMD [ARGS...]\n");
        return 2;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        die("socketpair");
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        close(sv[0]);
        notify_child("floor_notify", sv[1], argv + 1);
    }
    close(sv[1]);
    int listener = recv_fd(sv[0]);
    if (listener < 0)
        die("recv listener");
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) < 0)
        fprintf(stderr, "floor_notify: no SYNC_WAKE_UP: %s\n", strerror(errno));

    struct seccomp_notif_sizes sizes;
    if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) < 0)
        die("notif sizes");
    struct seccomp_notif *req = calloc(1, sizes.seccomp_notif);
    struct seccomp_notif_resp *resp = calloc(1, sizes.seccomp_notif_resp);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener};
    if (!req || !resp || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev) < 0)
        die("setup");
    if (write(sv[0], "g", 1) != 1)
        die("go");
    close(sv[0]);

    unsigned long served = 0;
    for (int done = 0; !done;) {
        struct epoll_event evs[8];
        int n = epoll_wait(ep, evs, 8, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].events & EPOLLIN) {
                memset(req, 0, sizes.seccomp_notif);
                if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, req) < 0)
                    continue; /* ENOENT: the task went away */
                memset(resp, 0, sizes.seccomp_notif_resp);
                resp->id = req->id;
                resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
                if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, resp) == 0)
                    served++;
            } else if (evs[i].events & (EPOLLHUP | EPOLLERR)) {
                done = 1; /* every filtered task is gone */
            }
        }
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            die("waitpid");
    fprintf(stderr, "floor_notify: served %lu notifications\n", served);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return WEXITSTATUS(st);
}
