/* A macro-benchmark workload: a loopback TCP transfer in small messages.
 *
 *   tcp_pair COUNT SIZE
 *
 * Listens on 127.0.0.1 (an ephemeral port), forks a sender that connects and
 * writes COUNT messages of SIZE bytes (TCP_NODELAY: one segment each), and
 * reads until the sender closes. Exits 0 when every byte arrived.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int die(const char *what)
{
    fprintf(stderr, "tcp_pair: %s: %s\n", what, strerror(errno));
    return 1;
}

static int send_all(struct sockaddr_in *addr, long count, size_t size)
{
    char buf[65536];
    memset(buf, 'x', size);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (s < 0 || setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
        connect(s, (struct sockaddr *)addr, sizeof *addr) < 0)
        return die("connect");
    for (long i = 0; i < count; i++)
        for (size_t off = 0; off < size;) {
            ssize_t n = send(s, buf + off, size - off, 0);
            if (n < 0 && errno != EINTR)
                return die("send");
            off += n > 0 ? (size_t)n : 0;
        }
    return close(s) < 0 ? die("close") : 0;
}

int main(int argc, char **argv)
{
    long count = argc == 3 ? atol(argv[1]) : 0;
    long size = argc == 3 ? atol(argv[2]) : 0;
    if (count <= 0 || size <= 0 || size > 65536) {
        fprintf(stderr, "usage: tcp_pair COUNT SIZE (1..65536)\n");
        return 2;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (struct sockaddr *)&addr, &len) < 0)
        return die("listen");
    pid_t pid = fork();
    if (pid < 0)
        return die("fork");
    if (pid == 0)
        _exit(send_all(&addr, count, (size_t)size));
    int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0)
        return die("accept");
    char buf[65536];
    long long got = 0;
    for (;;) {
        ssize_t n = recv(c, buf, (size_t)size, 0);
        if (n == 0)
            break;
        if (n < 0 && errno != EINTR)
            return die("recv");
        got += n > 0 ? n : 0;
    }
    int st;
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return 1;
    if (got != count * size) {
        fprintf(stderr, "tcp_pair: received %lld of %lld bytes\n", got, (long long)count * size);
        return 1;
    }
    return 0;
}
