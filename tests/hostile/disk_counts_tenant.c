/* A hostile tenant of a disk_space / disk_inodes group: each mode tries one
 * way to store more than the quota lets it (issue 16, "Counts fail closed").
 * Usage: disk_counts_tenant MODE AREA [N]. It prints key=value lines to
 * stdout; with "hold" modes it then keeps what it made alive until stdin
 * closes, so the host can measure. Exit 0 unless the program itself fails.
 *
 *   deep AREA DEPTH   a directory chain DEPTH deep, then 1 MiB files in the
 *                     deepest one until a write fails (at most 64 MiB)
 *   mapkeep AREA      1 MiB files, each mapped, its fd closed and unlinked,
 *                     until a write fails (at most 64 MiB); then holds
 *   threadkeep AREA   the same, but kept open (not mapped) by a thread
 *                     that unshared its fd table: its process's fd list
 *                     (/proc/PID/fd) does not show them; then holds
 *   scm AREA          a 4 MiB file passed in an SCM_RIGHTS message that is
 *                     never received, closed and unlinked; then 1 MiB files
 *                     until a write fails (at most 64 MiB); then holds
 *   symlinks AREA     symlinks with 4000-byte targets until one fails
 *                     (at most 20000), then a 64 KiB write
 *   xattrs AREA       files with a 4000-byte xattr each until one fails
 *                     (at most 20000), then a 64 KiB write
 *   inodes AREA [OUT] empty files until one fails (at most 100000), then
 *                     one try of each other call that makes an inode
 *                     (mkdir, symlink, mknod, O_TMPFILE, a unix socket's
 *                     bind) and of two that make none (link, open O_CREAT
 *                     of a file that is there), and setxattrat; and open
 *                     O_CREAT of two symlinks made first, one to a file
 *                     that is there, one to none (open creates it), that
 *                     one last; with OUT (a directory outside the area),
 *                     open O_CREAT of a link from OUT to a new file of the
 *                     area and of one from the area to a new file in OUT
 *   sibling AREA      empty files until one fails, one of them deleted; a
 *                     thread creates "a" (to the cap) and then computes,
 *                     making no call, while the main thread creates "b"
 *                     (past the cap), deletes e0 and creates "c" (to the
 *                     cap); then the thread exits, and the main thread
 *                     creates "d" (to the cap)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#define MiB (1 << 20)
#define CHUNK (64 << 10)
#define MAX_FILL (64 * MiB)

static char buf[CHUNK];

/* Writes `size` bytes to fd; 0 or the errno of the write that failed. */
static int put(int fd, long size)
{
    for (long done = 0; done < size;) {
        ssize_t n = write(fd, buf, size - done < CHUNK ? size - done : CHUNK);
        if (n < 0)
            return errno;
        done += n;
    }
    return 0;
}

/* 1 MiB files named prefix<i> at dirfd until a write (or an open) fails,
 * at most MAX_FILL; prints the bytes written and the errno. */
static void fill(int dirfd, const char *prefix)
{
    long written = 0;
    int err = 0;
    char name[64];
    for (int i = 0; written < MAX_FILL; i++) {
        snprintf(name, sizeof name, "%s%d", prefix, i);
        int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) {
            err = errno;
            break;
        }
        err = put(fd, MiB);
        close(fd);
        if (err)
            break;
        written += MiB;
    }
    printf("written=%ld\nerrno=%d\n", written, err);
}

/* Keeps everything alive until stdin reaches EOF. */
static void hold(void)
{
    printf("holding=1\n");
    fflush(stdout);
    while (read(0, buf, sizeof buf) > 0)
        ;
}

static int deep(int area, int depth)
{
    int dir = dup(area);
    for (int i = 0; i < depth; i++) {
        if (mkdirat(dir, "d", 0755) < 0 && errno != EEXIST)
            return printf("mkdir_errno=%d\nmade=%d\n", errno, i), 0;
        int sub = openat(dir, "d", O_RDONLY | O_DIRECTORY);
        if (sub < 0)
            return perror("openat"), 1;
        close(dir);
        dir = sub;
    }
    printf("made=%d\n", depth);
    fill(dir, "f");
    return 0;
}

/* 1 MiB files named prefix<i>, each unlinked and kept alive by a mapping
 * (its fd closed) or, without `map`, by its fd left open, until a write
 * fails (at most MAX_FILL); prints what is kept, then holds. */
static void keep_deleted(int area, const char *prefix, int map)
{
    long kept = 0;
    int err = 0;
    for (int i = 0; !err && kept < MAX_FILL; i++) {
        char name[32];
        snprintf(name, sizeof name, "%s%d", prefix, i);
        int fd = openat(area, name, O_RDWR | O_CREAT | O_TRUNC, 0644);
        if (fd < 0) {
            err = errno;
            break;
        }
        err = put(fd, MiB);
        if (!err && map && mmap(NULL, MiB, PROT_READ, MAP_SHARED, fd, 0) == MAP_FAILED)
            err = errno;
        unlinkat(area, name, 0);
        if (err || map)
            close(fd);
        if (!err)
            kept += MiB;
    }
    printf("kept=%ld\nerrno=%d\n", kept, err);
    hold();
}

/* The same with its fds in the fd table of a thread of its own. */
static void *keep_in_own_table(void *arg)
{
    if (unshare(CLONE_FILES) < 0)
        printf("unshare_errno=%d\n", errno);
    else
        keep_deleted(*(int *)arg, "t", 0);
    return NULL;
}

static int threadkeep(int area)
{
    pthread_t t;
    if (pthread_create(&t, NULL, keep_in_own_table, &area))
        return 1;
    pthread_join(t, NULL);
    return 0;
}

static int scm(int area)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) < 0)
        return perror("socketpair"), 1;
    int fd = openat(area, "passed", O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return perror("open"), 1;
    printf("put_errno=%d\n", put(fd, 4 * MiB));
    char cbuf[CMSG_SPACE(sizeof(int))] = {0};
    struct iovec iov = {"x", 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                       .msg_controllen = sizeof cbuf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    printf("sendmsg_errno=%d\n", sendmsg(sv[0], &m, 0) < 0 ? errno : 0);
    /* The same without fds still works. */
    m.msg_control = NULL;
    m.msg_controllen = 0;
    printf("plain_sendmsg_errno=%d\n", sendmsg(sv[0], &m, 0) < 0 ? errno : 0);
    close(fd);
    unlinkat(area, "passed", 0);
    fill(area, "f");
    hold();
    return 0;
}

static void long_target(char *target, size_t size, int i)
{
    memset(target, 'a', size - 1);
    target[size - 1] = 0;
    snprintf(target, 16, "%d/", i); /* distinct targets */
    target[strlen(target)] = 'a';
}

/* A symlink with a long target, number i. 0 or -1 with errno. */
static int make_symlink(int area, int i)
{
    static char target[4001];
    char name[32];
    long_target(target, sizeof target, i);
    snprintf(name, sizeof name, "s%d", i);
    return symlinkat(target, area, name);
}

/* An empty file with a long xattr value, number i. */
static int make_xattr(int area, int i)
{
    static char value[4000];
    char name[32];
    long_target(value, sizeof value, i);
    snprintf(name, sizeof name, "x%d", i);
    int fd = openat(area, name, O_WRONLY | O_CREAT, 0644);
    if (fd < 0)
        return -1;
    int rc = fsetxattr(fd, "user.big", value, sizeof value, 0);
    int err = errno;
    close(fd);
    errno = err;
    return rc;
}

/* make(area, i) for i = 0, 1, ... until it fails (*err: its errno) or
 * max were made: how many were. */
static int make_until(int area, int (*make)(int, int), int max, int *err)
{
    int made = 0;
    while (made < max && !(*err = make(area, made) < 0 ? errno : 0))
        made++;
    return made;
}

/* make(area, i) until it fails (at most 20000), then a 64 KiB write. */
static int until_refused(int area, int (*make)(int, int))
{
    int err = 0, made = make_until(area, make, 20000, &err);
    int fd = openat(area, "after", O_WRONLY | O_CREAT, 0644);
    printf("made=%d\nerrno=%d\nwrite_errno=%d\n", made, err, fd < 0 ? errno : put(fd, CHUNK));
    return 0;
}

/* An empty file `name` at dirfd: 0 or the errno. */
static int create(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0)
        return errno;
    close(fd);
    return 0;
}

/* An empty file e<i>. 0 or -1 with errno. */
static int make_empty(int area, int i)
{
    char name[32];
    snprintf(name, sizeof name, "e%d", i);
    return (errno = create(area, name)) ? -1 : 0;
}

/* With `out` (a directory outside the area), open O_CREAT of a link from
 * there to a new file of the area, and of one from the area to a new file
 * there, both made first. */
static int inodes(int area, const char *area_path, const char *out)
{
    char from_out[PATH_MAX], into_area[PATH_MAX], to_out[PATH_MAX];
    int err = 0;
    if (symlinkat("e1", area, "to_e1") < 0 || symlinkat("new", area, "to_new") < 0)
        return perror("symlinkat"), 1;
    if (out) {
        snprintf(from_out, sizeof from_out, "%s/to_area", out);
        snprintf(into_area, sizeof into_area, "%s/via_out", area_path);
        snprintf(to_out, sizeof to_out, "%s/made", out);
        if (symlink(into_area, from_out) < 0 || symlinkat(to_out, area, "to_out") < 0)
            return perror("symlink"), 1;
    }
    int made = make_until(area, make_empty, 100000, &err);
    printf("made=%d\nerrno=%d\n", made, err);
    int fd = openat(area, "to_e1", O_WRONLY | O_CREAT, 0644);
    printf("reopen_symlink_errno=%d\n", fd < 0 ? errno : 0);
    if (out) {
        fd = open(from_out, O_WRONLY | O_CREAT, 0644);
        printf("create_from_out_errno=%d\n", fd < 0 ? errno : 0);
        fd = openat(area, "to_out", O_WRONLY | O_CREAT, 0644);
        printf("create_to_out_errno=%d\n", fd < 0 ? errno : 0);
    }
    printf("mkdir_errno=%d\n", mkdirat(area, "dir", 0755) < 0 ? errno : 0);
    printf("symlink_errno=%d\n", symlinkat("e0", area, "sym") < 0 ? errno : 0);
    printf("mknod_errno=%d\n", mknodat(area, "fifo", S_IFIFO | 0644, 0) < 0 ? errno : 0);
    int t = openat(area, ".", O_TMPFILE | O_WRONLY, 0644);
    printf("tmpfile_errno=%d\n", t < 0 ? errno : 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s/sock", area_path);
    printf("bind_errno=%d\n", bind(s, (struct sockaddr *)&sun, sizeof sun) < 0 ? errno : 0);
    /* A link adds no inode; opening a file that is there creates none. */
    printf("link_errno=%d\n", linkat(area, "e0", area, "e0.link", 0) < 0 ? errno : 0);
    fd = openat(area, "e1", O_WRONLY | O_CREAT, 0644);
    printf("reopen_errno=%d\n", fd < 0 ? errno : 0);
    /* setxattrat (Linux 6.13, number 463), which the filter may not know. */
    struct {
        unsigned long value;
        unsigned int size, flags;
    } xa = {(unsigned long)"v", 1, 0};
    printf("setxattrat_errno=%d\n",
           syscall(463, area, "e1", 0, "user.x", &xa, sizeof xa) < 0 ? errno : 0);
    /* Last, after the other refused calls: nothing changes the area after
     * its count. */
    fd = openat(area, "to_new", O_WRONLY | O_CREAT, 0644);
    printf("create_symlink_errno=%d\n", fd < 0 ? errno : 0);
    return 0;
}

static atomic_int sibling_made, sibling_stop;

/* Creates "a", then computes without a call until told to stop: to the
 * engine it may still be in its create. Its errno is its return value. */
static void *sibling_thread(void *arg)
{
    intptr_t err = create(*(int *)arg, "a");
    atomic_store(&sibling_made, 1);
    while (!atomic_load(&sibling_stop))
        ;
    return (void *)err;
}

static int sibling(int area)
{
    char name[32];
    int err, made = make_until(area, make_empty, 100000, &err);
    printf("made=%d\nerrno=%d\n", made, err);
    snprintf(name, sizeof name, "e%d", made - 1);
    unlinkat(area, name, 0);
    pthread_t t;
    void *a_errno;
    if (pthread_create(&t, NULL, sibling_thread, &area))
        return 1;
    while (!atomic_load(&sibling_made))
        ;
    int b = create(area, "b");
    unlinkat(area, "e0", 0);
    int c = create(area, "c");
    atomic_store(&sibling_stop, 1);
    pthread_join(t, &a_errno);
    int d = create(area, "d");
    printf("a_errno=%d\nb_errno=%d\nc_errno=%d\nd_errno=%d\n", (int)(intptr_t)a_errno, b, c, d);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 64;
    setvbuf(stdout, NULL, _IOLBF, 0);
    memset(buf, 'x', sizeof buf);
    int area = open(argv[2], O_RDONLY | O_DIRECTORY);
    if (area < 0)
        return perror(argv[2]), 1;
    const char *mode = argv[1];
    if (!strcmp(mode, "deep") && argc > 3)
        return deep(area, atoi(argv[3]));
    if (!strcmp(mode, "mapkeep"))
        return keep_deleted(area, "m", 1), 0;
    if (!strcmp(mode, "threadkeep"))
        return threadkeep(area);
    if (!strcmp(mode, "scm"))
        return scm(area);
    if (!strcmp(mode, "symlinks"))
        return until_refused(area, make_symlink);
    if (!strcmp(mode, "xattrs"))
        return until_refused(area, make_xattr);
    if (!strcmp(mode, "inodes"))
        return inodes(area, argv[2], argc > 3 ? argv[3] : NULL);
    if (!strcmp(mode, "sibling"))
        return sibling(area);
    return 64;
}
