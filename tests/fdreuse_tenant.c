/* fdreuse_tenant MODE PORT FILE: writes to FILE through fd N, then makes N
 * name a TCP connection to 127.0.0.1:PORT and sends 1 MiB through it with
 * write(2). MODE says how N changes: close, dup2, thread (another thread
 * closes and reopens it), exec (N is O_CLOEXEC; the new program connects). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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

int main(int argc, char **argv)
{
    if (argc < 4)
        return 1;
    port = atoi(argv[2]);
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
