/* fdreuse_tenant MODE PORT FILE: writes to FILE through fd N, then makes N
 * name a TCP connection to 127.0.0.1:PORT and sends 1 MiB through it with
 * write(2). MODE says how N changes: close, dup2, thread (another thread
 * closes and reopens it), exec (N is O_CLOEXEC; the new program connects),
 * tid (a child that wrote FILE through N is killed, and a new task takes its
 * tid, with clone3's set_tid, and N a socket: FILE.peer is a unix socket
 * that answers the child's host pid), race (one thread writes to N in a
 * loop while another closes N and connects a socket that takes N, over and
 * over: PORT accepts one connection per round). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static int port;

static int connect_lo(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("connect");
        exit(2);
    }
    return s;
}

static void send_mib(int fd)
{
    static char buf[65536];
    for (int i = 0; i < 16; i++)
        if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) {
            perror("write");
            exit(3);
        }
}

static int fd;

static void *reopen(void *arg)
{
    int s = connect_lo();
    close(fd);
    if (fcntl(s, F_DUPFD, fd) != fd)
        exit(4);
    close(s);
    return arg;
}

/* The host pid of the caller, as the peer at `path` sees it (SO_PEERCRED). */
static long host_pid(const char *path)
{
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    char buf[32] = {0};
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) < 0 || read(s, buf, sizeof buf - 1) <= 0)
        return -1;
    close(s);
    return atol(buf);
}

static int tid_reuse(const char *file)
{
    char peer[4096];
    int p[2];
    snprintf(peer, sizeof peer, "%s.peer", file);
    int s = connect_lo();  /* fd N, in this process's table */
    if (pipe(p) < 0)
        return 2;
    pid_t c = fork();
    if (c == 0) {
        close(s);  /* N is free in the child's table: the file takes it */
        if (open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644) != s)
            _exit(4);
        for (int i = 0; i < 3; i++)
            if (write(s, "x", 1) != 1)
                _exit(5); /* the engine now knows (child, N) as a file */
        long host = host_pid(peer);
        if (write(p[1], &host, sizeof host) != sizeof host)
            _exit(6);
        pause();
        _exit(0);
    }
    long host;
    if (read(p[0], &host, sizeof host) != sizeof host || host <= 0)
        return 6;
    kill(c, SIGKILL);
    waitpid(c, NULL, 0);
    /* A task with the dead child's tid (innermost namespace first), and N
     * a socket in its copy of this table. */
    pid_t tids[2] = {c, (pid_t)host};
    struct clone_args ca = {.exit_signal = SIGCHLD, .set_tid = (uintptr_t)tids,
                            .set_tid_size = 2};
    pid_t x = (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
    if (x < 0) {
        perror("clone3 set_tid");
        return 7;
    }
    if (x == 0) {
        send_mib(s);
        _exit(0);
    }
    int st;
    waitpid(x, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 8;
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return 1;
    port = atoi(argv[2]);
    if (!strcmp(argv[1], "tid"))
        return tid_reuse(argv[3]);
    if (!strcmp(argv[1], "after-exec")) {
        fd = connect_lo(); /* takes the number the exec closed */
        send_mib(fd);
        return 0;
    }
    fd = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    for (int i = 0; i < 3; i++)
        if (write(fd, "x", 1) != 1)
            return 5; /* the engine now knows fd as a file */
    if (!strcmp(argv[1], "close")) {
        int s = connect_lo();
        close(fd);
        if (fcntl(s, F_DUPFD, fd) != fd)
            return 4;
        close(s);
    } else if (!strcmp(argv[1], "dup2")) {
        int s = connect_lo();
        if (dup2(s, fd) != fd)
            return 4;
        close(s);
    } else if (!strcmp(argv[1], "thread")) {
        pthread_t t;
        pthread_create(&t, NULL, reopen, NULL);
        pthread_join(t, NULL);
    } else if (!strcmp(argv[1], "exec")) {
        execl("/proc/self/exe", argv[0], "after-exec", argv[2], argv[3], (char *)NULL);
        return 6;
    }
    send_mib(fd);
    return 0;
}
