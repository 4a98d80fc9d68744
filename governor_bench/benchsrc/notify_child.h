/* The tenant side of a seccomp user-notification supervisor, shared by
 * floor_notify (a C supervisor) and notify_exec (for a Python one): install
 * the bench filter with a new listener, send the listener over the unix
 * socket `sock` (SCM_RIGHTS), wait for one byte (the supervisor listens),
 * exec argv. sendmsg and read are not notified, so nothing deadlocks before
 * the supervisor listens. */
#ifndef NOTIFY_CHILD_H
#define NOTIFY_CHILD_H

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_filter.h"

_Noreturn static void notify_child(const char *prog, int sock, char **argv)
{
    const char *what = "seccomp";
    int listener = bench_filter(SECCOMP_RET_USER_NOTIF, SECCOMP_FILTER_FLAG_NEW_LISTENER);
    if (listener < 0)
        goto fail;
    char byte = 'l';
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } cm = {0};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
                         .msg_controllen = sizeof cm.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &listener, sizeof(int));
    what = "sendmsg";
    if (sendmsg(sock, &msg, 0) != 1)
        goto fail;
    close(listener);
    what = "wait for the supervisor";
    if (read(sock, &byte, 1) != 1)
        goto fail;
    close(sock);
    execv(argv[0], argv);
    what = argv[0];
fail:
    fprintf(stderr, "%s: %s: %s\n", prog, what, strerror(errno));
    _exit(127);
}

#endif
