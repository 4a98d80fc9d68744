#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/openat2.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "classify.h"
#include "diskspace.h"
#include "procfs.h"
#include "shmem.h"
#include "gov.h"
#include "syscalls.h"

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif
#define MAX_IOV 1024
#define PAGE 4096ULL

void gov_pidfds_init(struct gov_pidfds *c)
{
    for (int i = 0; i < GOV_PIDFD_SLOTS; i++) {
        c->tid[i] = 0;
        c->fd[i] = c->iofd[i] = -1;
        c->used[i] = 0;
    }
    struct rlimit rl;
    rlim_t n = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur / 8 : 16;
    c->max = n < 4 ? 4 : n > GOV_PIDFD_SLOTS ? GOV_PIDFD_SLOTS : (int)n;
    c->open = 0;
    c->clock = 0;
}

/* Slot s is free again: its task exited, or another tid takes it; its io
 * file goes with it. */
static void slot_close(struct gov_pidfds *c, int s)
{
    if (c->fd[s] >= 0) {
        close(c->fd[s]);
        c->open--;
    }
    if (c->iofd[s] >= 0) {
        close(c->iofd[s]);
        c->open--;
    }
    c->fd[s] = c->iofd[s] = -1;
    c->tid[s] = 0;
}

void gov_pidfds_clear(struct gov_pidfds *c)
{
    for (int i = 0; i < GOV_PIDFD_SLOTS; i++)
        slot_close(c, i);
    gov_pidfds_init(c);
}

/* Closes the least recently used pidfd but `keep`'s; 0, or -1 if none is open. */
static int evict(struct gov_pidfds *c, int keep)
{
    int lru = -1;
    for (int i = 0; i < GOV_PIDFD_SLOTS; i++)
        if (c->fd[i] >= 0 && i != keep && (lru < 0 || c->used[i] < c->used[lru]))
            lru = i;
    if (lru < 0)
        return -1;
    slot_close(c, lru);
    return 0;
}

static int out_of_fds(void)
{
    return errno == EMFILE || errno == ENFILE;
}

void gov_pidfds_sweep(struct gov_pidfds *c)
{
    /* Each engine thread sweeps its own groups: a buffer of its own. */
    static __thread struct pollfd pfd[GOV_PIDFD_SLOTS];
    static __thread int slot[GOV_PIDFD_SLOTS];
    nfds_t n = 0;
    for (int i = 0; i < GOV_PIDFD_SLOTS; i++)
        if (c->fd[i] >= 0) {
            pfd[n] = (struct pollfd){.fd = c->fd[i], .events = POLLIN};
            slot[n++] = i;
        }
    if (n == 0 || poll(pfd, n, 0) <= 0)
        return;
    for (nfds_t k = 0; k < n; k++)
        if (pfd[k].revents) /* readable: its task has exited */
            slot_close(c, slot[k]);
}

static int pidfd_of(int tid)
{
    int fd = (int)syscall(SYS_pidfd_open, tid, PIDFD_THREAD);
    if (fd < 0 && errno == EINVAL) {
        /* Before 6.9 only thread group leaders have pidfds: use the
         * leader's fd table, which pthreads share. */
        int tgid;
        if (gov_task_committed(tid, &tgid) >= 0)
            fd = (int)syscall(SYS_pidfd_open, tgid, 0);
    }
    return fd;
}

/* open_fd(tid) for slot s, with room made: past `max`, or at EMFILE, the
 * least recently used slot but s is closed. An fd, or < 0 (errno set). */
static int open_for(struct gov_pidfds *c, int s, int (*open_fd)(int), int tid)
{
    if (c->open >= c->max)
        evict(c, s);
    int fd = open_fd(tid);
    if (fd < 0 && out_of_fds() && evict(c, s) == 0)
        fd = open_fd(tid);
    return fd;
}

static int slot_open(struct gov_pidfds *c, int tid)
{
    int s = tid % GOV_PIDFD_SLOTS;
    slot_close(c, s);
    int fd = open_for(c, s, pidfd_of, tid);
    if (fd < 0)
        return -1;
    c->tid[s] = tid;
    c->fd[s] = fd;
    c->used[s] = ++c->clock;
    c->open++;
    return fd;
}

/* pidfd_getfd, with one pidfd fewer if the supervisor is out of fds. */
static int getfd(struct gov_pidfds *c, int s, int fd)
{
    int dup = (int)syscall(SYS_pidfd_getfd, c->fd[s], fd, 0);
    if (dup < 0 && out_of_fds() && evict(c, s) == 0)
        dup = (int)syscall(SYS_pidfd_getfd, c->fd[s], fd, 0);
    return dup;
}

int gov_pidfds_writes(struct gov_pidfds *c, int tid, int64_t *wchar, int64_t *dirtied)
{
    int s = tid % GOV_PIDFD_SLOTS;
    if (c->tid[s] != tid || c->fd[s] < 0) {
        if (slot_open(c, tid) < 0)
            return -ESRCH;
    } else if (c->iofd[s] >= 0 && gov_io_writes(c->iofd[s], wchar, dirtied) == 0) {
        c->used[s] = ++c->clock;
        return 0;
    } else if (c->iofd[s] >= 0 && slot_open(c, tid) < 0) {
        return -ESRCH; /* its task is gone, and no task has its tid now */
    }
    if (c->iofd[s] < 0) {
        int fd = open_for(c, s, gov_task_io_open, tid);
        if (fd < 0)
            return fd;
        c->iofd[s] = fd;
        c->open++;
    }
    return gov_io_writes(c->iofd[s], wchar, dirtied);
}

/* A duplicate of the tenant's fd (close it), or -1. */
static int tenant_fd(struct gov_pidfds *c, int tid, int fd)
{
    int s = tid % GOV_PIDFD_SLOTS;
    if (c->tid[s] == tid && c->fd[s] >= 0)
        c->used[s] = ++c->clock;
    else if (slot_open(c, tid) < 0)
        return -1;
    int dup = getfd(c, s, fd);
    if (dup < 0 && (errno == ESRCH || errno == EBADF)) {
        /* Maybe a stale slot: the tid now names another task. */
        if (slot_open(c, tid) < 0)
            return -1;
        dup = getfd(c, s, fd);
    }
    return dup;
}

/* FD_UNKNOWN: the supervisor could not look (not EBADF): charge every
 * resource the call could move bytes of, failing closed. */
enum { FD_OTHER, FD_FILE, FD_SOCKET, FD_PIPE, FD_UNKNOWN };

/* The kind of a duplicate from tenant_fd (dup < 0: errno says why). */
static int fd_kind(int dup, struct stat *st)
{
    if (dup < 0)
        return errno == EBADF ? FD_OTHER : FD_UNKNOWN;
    if (fstat(dup, st) < 0)
        return FD_OTHER;
    if (S_ISREG(st->st_mode))
        return FD_FILE;
    if (S_ISSOCK(st->st_mode))
        return FD_SOCKET;
    if (S_ISFIFO(st->st_mode))
        return FD_PIPE;
    return FD_OTHER;
}

static int read_mem(int pid, uint64_t addr, void *buf, size_t len)
{
    struct iovec local = {buf, len}, remote = {(void *)addr, len};
    return process_vm_readv(pid, &local, 1, &remote, 1, 0) == (ssize_t)len ? 0 : -1;
}

/* Sum of iov_len over an iovec array in the tenant; 0 if unreadable. */
static double iov_sum(int pid, uint64_t addr, uint64_t count)
{
    struct iovec iov[64];
    double sum = 0;
    if (count > MAX_IOV)
        count = MAX_IOV;
    for (uint64_t done = 0; done < count;) {
        size_t n = count - done < 64 ? count - done : 64;
        if (read_mem(pid, addr + done * sizeof(struct iovec), iov, n * sizeof(struct iovec)))
            break;
        for (size_t i = 0; i < n; i++)
            sum += (double)iov[i].iov_len;
        done += n;
    }
    return sum;
}

static double msghdr_sum(int pid, uint64_t addr)
{
    struct msghdr m;
    if (read_mem(pid, addr, &m, sizeof m))
        return 0;
    return iov_sum(pid, (uint64_t)m.msg_iov, m.msg_iovlen);
}

static double mmsg_sum(int pid, uint64_t addr, uint64_t vlen)
{
    double sum = 0;
    if (vlen > MAX_IOV)
        vlen = MAX_IOV;
    for (uint64_t i = 0; i < vlen; i++)
        sum += msghdr_sum(pid, addr + i * sizeof(struct mmsghdr));
    return sum;
}

/* Bytes a read of `want` from a regular file at `pos` returns. */
static double file_read_cost(const struct stat *st, int64_t pos, double want)
{
    double left = pos < st->st_size ? (double)(st->st_size - pos) : 0;
    return want < left ? want : left;
}

static int64_t position(int dup, int pid, uint64_t offptr)
{
    int64_t off;
    if (offptr && read_mem(pid, offptr, &off, sizeof off) == 0)
        return off;
    return lseek(dup, 0, SEEK_CUR);
}

static int sock_type(int dup)
{
    int type = 0;
    socklen_t len = sizeof type;
    return getsockopt(dup, SOL_SOCKET, SO_TYPE, &type, &len) == 0 ? type : 0;
}

/* Receive cost: bytes queued, up to want. -1: blocking and nothing queued.
 * `msgs`: how many datagrams the call may take (recvmmsg); SIOCINQ tells
 * the size of the first one only, so the others are taken to be as large:
 * an overcharge at worst, never a way around the limit. */
static double recv_cost(int dup, double want, int flags, int msgs)
{
    int queued = 0;
    if (ioctl(dup, SIOCINQ, &queued) < 0)
        return want;
    if (flags & MSG_WAITALL)
        return want; /* the call returns only when it has all of it */
    if (queued > 0 && msgs > 1 && sock_type(dup) != SOCK_STREAM)
        queued = queued * msgs;
    if (queued > 0)
        return want < queued ? want : queued;
    if ((flags & MSG_DONTWAIT) || (fcntl(dup, F_GETFL) & O_NONBLOCK))
        return 0;
    return -1;
}

/* A send on a non-blocking socket takes at most the free send buffer;
 * charging what it asked would bill bytes that EAGAIN turned away. */
static double send_cost(int dup, double want, int flags)
{
    if (!(flags & MSG_DONTWAIT) && !(fcntl(dup, F_GETFL) & O_NONBLOCK))
        return want;
    int sndbuf = 0, queued = 0;
    socklen_t len = sizeof sndbuf;
    if (getsockopt(dup, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) < 0 ||
        ioctl(dup, SIOCOUTQ, &queued) < 0)
        return want;
    /* The kernel doubles SO_SNDBUF for its bookkeeping; half is payload. */
    double room = (double)sndbuf / 2 - queued;
    if (room < 0)
        room = 0;
    return want < room ? want : room;
}

static void add(struct gov_call *out, int res, double cost)
{
    out->moves |= 1u << res;
    if (cost > 0 && out->nch < 4)
        out->ch[out->nch++] = (struct gov_charge){res, cost};
}

/* Settles a TCP socket's ledger slot (see classify.h); other sockets pass. */
static void settle(struct gov_ledger *lg, int dup, const struct stat *st, struct gov_call *out)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    int queued;
    if (getsockopt(dup, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 ||
        len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof ti.tcpi_bytes_received ||
        ioctl(dup, SIOCINQ, &queued) < 0)
        return;
    unsigned s = (unsigned)(st->st_ino % GOV_LEDGER_SLOTS);
    int same = lg->slot[s].ino == st->st_ino && lg->slot[s].dev == st->st_dev;
    uint64_t received = ti.tcpi_bytes_received, inq = (uint64_t)queued;
    /* Data arriving between TCP_INFO and SIOCINQ makes the two disagree
     * (what was read would look smaller, or below zero): settle at the next
     * receive instead; this call's estimate waits in the slot meanwhile. */
    int torn = inq > received || (same && received - inq < lg->slot[s].consumed);
    if (torn && !same)
        return;
    if (!torn) {
        uint64_t consumed = received - inq;
        if (same)
            out->correction = (double)(consumed - lg->slot[s].consumed) - lg->slot[s].charged;
        lg->slot[s].dev = st->st_dev;
        lg->slot[s].ino = st->st_ino;
        lg->slot[s].consumed = consumed;
        lg->slot[s].charged = 0;
    }
    out->ledger_slot = (int)s;
    out->ledger_ino = st->st_ino;
}

/* A receive of `want` on a tenant fd; reads of sockets may have to wait. */
static void charge_read(struct gov_call *out, struct gov_ledger *lg, int dup, int kind,
                        const struct stat *st, int pid, int64_t off, double want, int flags,
                        int msgs)
{
    if (kind == FD_FILE) {
        int64_t pos = off >= 0 ? off : position(dup, pid, 0);
        add(out, GOV_DISK_READ, file_read_cost(st, pos, want));
    } else if (kind == FD_SOCKET) {
        double cost = recv_cost(dup, want, flags, msgs);
        if (cost < 0) {
            struct timeval tv = {0};
            socklen_t len = sizeof tv;
            if (getsockopt(dup, SOL_SOCKET, SO_RCVTIMEO, &tv, &len) == 0)
                out->timeout_ns = tv.tv_sec * 1000000000LL + tv.tv_usec * 1000LL;
            out->kind = GOV_CALL_WAIT_DATA;
            out->wait_fd = dup;
            return;
        }
        settle(lg, dup, st, out);
        add(out, GOV_NET_RECV, cost);
    } else if (kind == FD_UNKNOWN) {
        add(out, GOV_DISK_READ, want);
        add(out, GOV_NET_RECV, want);
    }
    if (dup >= 0)
        close(dup);
}

static void charge_write(struct gov_call *out, int kind, double n)
{
    if (kind == FD_FILE || kind == FD_UNKNOWN)
        add(out, GOV_DISK_WRITE, n);
    if (kind == FD_SOCKET || kind == FD_UNKNOWN)
        add(out, GOV_NET_SEND, n);
}

static void charge_send(struct gov_call *out, int dup, int kind, double n, int flags)
{
    charge_write(out, kind, kind == FD_SOCKET ? send_cost(dup, n, flags) : n);
}

/* disk_space: `growth` bytes more for the file st of the area (if it is). */
static void charge_growth(struct gov_call *out, const struct gov_disk *d, const struct stat *st,
                          double growth)
{
    if (!d || growth <= 0 || !gov_disk_on_area(d, st->st_dev))
        return;
    add(out, GOV_DISK_SPACE, growth);
    out->disk_dev = st->st_dev;
    out->disk_ino = st->st_ino;
}

/* memory: `growth` bytes more for a file in memory (shmem.h), if it is one.
 * Charged first, so that a call held for it is held on memory. */
static void charge_memory(struct gov_call *out, struct gov_shmem *sh, int tid, int fd,
                          const struct stat *st, double growth)
{
    if (!sh || growth <= 0 || !gov_shmem_is_memory(fd, st))
        return;
    gov_shmem_note(sh, tid, fd, st);
    add(out, GOV_MEMORY, growth);
}

/* Where a write of a file lands: at its end with O_APPEND (pwrite too, on
 * Linux), else at pos (>= 0), else at its file position. */
static int64_t write_at(int dup, const struct stat *st, int64_t pos)
{
    if (fcntl(dup, F_GETFL) & O_APPEND)
        return st->st_size;
    return pos >= 0 ? pos : lseek(dup, 0, SEEK_CUR);
}

/* splice/sendfile/copy_file_range: bytes move from `in` to `out`. */
static void charge_transfer(struct gov_call *out, struct gov_pidfds *c, const struct gov_disk *d,
                            struct gov_shmem *sh, int pid, int in_fd, uint64_t in_off,
                            int out_fd, uint64_t out_off, double len)
{
    struct stat st_in, st_out;
    int in = tenant_fd(c, pid, in_fd);
    int kin = fd_kind(in, &st_in);
    int outd = tenant_fd(c, pid, out_fd);
    int kout = fd_kind(outd, &st_out);
    double n = len;
    if (kin == FD_UNKNOWN) {
        add(out, GOV_DISK_READ, len);
        add(out, GOV_NET_RECV, len);
    }
    if (kin == FD_FILE) {
        n = file_read_cost(&st_in, position(in, pid, in_off), len);
        add(out, GOV_DISK_READ, n);
    } else if (kin == FD_PIPE || kin == FD_SOCKET) {
        int queued = 0;
        if (ioctl(in, FIONREAD, &queued) == 0 && queued < n)
            n = queued > 0 ? queued : (kin == FD_SOCKET ? len : 0);
        if (kin == FD_SOCKET)
            add(out, GOV_NET_RECV, n);
    }
    if (kout == FD_FILE && ((d && gov_disk_on_area(d, st_out.st_dev)) || sh)) {
        int64_t at = write_at(outd, &st_out, out_off ? position(outd, pid, out_off) : -1);
        double grow = gov_disk_growth(&st_out, (double)at + n);
        charge_memory(out, sh, pid, outd, &st_out, grow);
        charge_growth(out, d, &st_out, grow);
    }
    charge_write(out, kout, n);
    if (in >= 0)
        close(in);
    if (outd >= 0)
        close(outd);
}

/* The fd that call nr reads, writes or resizes, or with `source` the one a
 * transfer reads (syscalls.h): its argument, as the tenant passed it. */
static int arg_fd(int nr, const uint64_t *a, int source)
{
    const struct gov_syscall *s = gov_syscall_of(nr);
    int i = !s ? -1 : source ? s->fd_in : s->fd;
    return i < 0 ? -1 : (int)a[i];
}

/* The address of the path that call nr names (syscalls.h), 0: none. */
static uint64_t arg_path(int nr, const uint64_t *a)
{
    const struct gov_syscall *s = gov_syscall_of(nr);
    return s && s->path >= 0 ? a[s->path] : 0;
}

/* The directory that path is relative to. */
static int arg_dirfd(int nr, const uint64_t *a)
{
    const struct gov_syscall *s = gov_syscall_of(nr);
    return s && s->dirfd >= 0 ? (int)a[s->dirfd] : AT_FDCWD;
}

static int is_plain_write(int nr)
{
    return nr == SYS_write || nr == SYS_pwrite64 || nr == SYS_writev || nr == SYS_pwritev ||
           nr == SYS_pwritev2;
}

/* Bytes a plain write (is_plain_write) asks to move. */
static double write_size(int pid, int nr, const uint64_t *a)
{
    return nr == SYS_write || nr == SYS_pwrite64 ? (double)a[2] : iov_sum(pid, a[1], a[2]);
}

/* Where a write of nr lands in a file, and what the file grows by. */
static double write_growth(int dup, const struct stat *st, int nr, const uint64_t *a, double n)
{
    int64_t pos = -1;
    if (nr == SYS_pwritev2 && (a[5] & RWF_APPEND))
        pos = st->st_size;
    else if (nr == SYS_pwrite64 || nr == SYS_pwritev || (nr == SYS_pwritev2 && (int64_t)a[3] != -1))
        pos = (int64_t)a[3];
    return gov_disk_growth(st, (double)write_at(dup, st, pos) + n);
}

/* The fd's kind is looked at on every call: what a number names changes
 * with calls that are not notified (close, dup2, exec: docs/design.md). */
static void classify_fd_call(struct gov_pidfds *c, struct gov_ledger *lg,
                             const struct gov_disk *d, struct gov_shmem *sh, int pid, int nr,
                             const uint64_t *a, struct gov_call *out)
{
    struct stat st = {0};
    int dup = tenant_fd(c, pid, arg_fd(nr, a, 0));
    int kind = fd_kind(dup, &st);
    if (dup < 0 && kind == FD_OTHER)
        return; /* EBADF: the kernel will say so too */
    if (is_plain_write(nr)) {
        double n = write_size(pid, nr, a);
        if (kind == FD_FILE && sh)
            charge_memory(out, sh, pid, dup, &st, write_growth(dup, &st, nr, a, n));
        if (nr == SYS_write || nr == SYS_writev)
            charge_send(out, dup, kind, n, 0);
        else
            charge_write(out, kind, n);
        if (kind == FD_FILE && d && gov_disk_on_area(d, st.st_dev))
            charge_growth(out, d, &st, write_growth(dup, &st, nr, a, n));
        if (dup >= 0)
            close(dup);
        return;
    }
    switch (nr) {
    case SYS_sendto:
        charge_send(out, dup, kind, (double)a[2], (int)a[3]);
        break;
    case SYS_sendmsg:
        charge_send(out, dup, kind, msghdr_sum(pid, a[1]), (int)a[2]);
        break;
    case SYS_sendmmsg:
        charge_send(out, dup, kind, mmsg_sum(pid, a[1], a[2]), (int)a[3]);
        break;
    case SYS_read:
        charge_read(out, lg, dup, kind, &st, pid, -1, (double)a[2], 0, 1);
        return;
    case SYS_pread64:
        charge_read(out, lg, dup, kind, &st, pid, (int64_t)a[3], (double)a[2], 0, 1);
        return;
    case SYS_readv:
        charge_read(out, lg, dup, kind, &st, pid, -1, iov_sum(pid, a[1], a[2]), 0, 1);
        return;
    case SYS_preadv:
    case SYS_preadv2:
        charge_read(out, lg, dup, kind, &st, pid, (int64_t)a[3], iov_sum(pid, a[1], a[2]), 0, 1);
        return;
    case SYS_recvfrom:
        charge_read(out, lg, dup, kind, &st, pid, -1, (double)a[2], (int)a[3], 1);
        return;
    case SYS_recvmsg:
        charge_read(out, lg, dup, kind, &st, pid, -1, msghdr_sum(pid, a[1]), (int)a[2], 1);
        return;
    case SYS_recvmmsg:
        charge_read(out, lg, dup, kind, &st, pid, -1, mmsg_sum(pid, a[1], a[2]), (int)a[3],
                    a[2] > MAX_IOV ? MAX_IOV : (int)a[2]);
        return;
    }
    if (dup >= 0)
        close(dup);
}

/* A NUL-terminated string of the tenant, read page by page (the string may
 * end just before an unmapped page). 0 or -1. */
static int read_str(int pid, uint64_t addr, char *buf, size_t size)
{
    for (size_t got = 0; got < size;) {
        size_t n = PAGE - ((addr + got) & (PAGE - 1));
        if (n > size - got)
            n = size - got;
        if (read_mem(pid, addr + got, buf + got, n))
            return -1;
        if (memchr(buf + got, 0, n))
            return 0;
        got += n;
    }
    return -1;
}

/* "a/b/" -> "a", "/a" -> "/", "a" -> "." */
static void to_parent(char *path)
{
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        path[--len] = 0;
    char *slash = strrchr(path, '/');
    if (!slash)
        strcpy(path, ".");
    else if (slash == path)
        path[1] = 0;
    else
        *slash = 0;
}

/* An O_PATH fd of the file that the tenant's path (relative to its dirfd)
 * names; -1 if none. The path is resolved as the tenant sees it: an
 * absolute one inside /proc/TID/root, a relative one from /proc/TID/cwd or
 * the tenant's dirfd. */
static int resolve(struct gov_pidfds *c, int tid, int dirfd, const char *path)
{
    char proc[64];
    struct open_how how = {.flags = O_PATH | O_CLOEXEC};
    int base;
    if (path[0] == '/' || dirfd == AT_FDCWD) {
        snprintf(proc, sizeof proc, "/proc/%d/%s", tid, path[0] == '/' ? "root" : "cwd");
        base = open(proc, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (path[0] == '/')
            how.resolve = RESOLVE_IN_ROOT;
    } else {
        base = tenant_fd(c, tid, dirfd);
    }
    if (base < 0)
        return -1;
    int fd = (int)syscall(SYS_openat2, base, path, &how, sizeof how);
    close(base);
    return fd;
}

/* resolve() of the path at the tenant's addr. */
static int tenant_path(struct gov_pidfds *c, int tid, int dirfd, uint64_t addr)
{
    char path[PATH_MAX];
    return read_str(tid, addr, path, sizeof path) < 0 ? -1 : resolve(c, tid, dirfd, path);
}

/* What ftruncate, truncate or fallocate grows file st by; -1 if it may give
 * space back. */
static double resize_growth(const struct stat *st, int nr, const uint64_t *a)
{
    if (nr != SYS_fallocate) {
        int64_t len = (int64_t)a[1];
        return len < st->st_size ? -1 : gov_disk_growth(st, (double)len);
    }
    int mode = (int)a[1];
    double off = (double)(int64_t)a[2], len = (double)(int64_t)a[3];
    if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_COLLAPSE_RANGE))
        return -1;
    if (mode & FALLOC_FL_INSERT_RANGE)
        return gov_disk_growth(st, (double)st->st_size + len);
    double grow = gov_disk_growth(st, off + len);
    /* KEEP_SIZE allocates blocks in the range only: at most len more. */
    if ((mode & FALLOC_FL_KEEP_SIZE) && grow > len + st->st_blksize)
        grow = len + st->st_blksize;
    return grow;
}

/* ftruncate, truncate and fallocate of a file of the area or in memory:
 * growth, or space given back. fd: the file (the caller closes it). */
static void classify_resize(const struct gov_disk *d, struct gov_shmem *sh, int tid, int fd,
                            int nr, const uint64_t *a, struct gov_call *out)
{
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return;
    int area = d && gov_disk_on_area(d, st.st_dev);
    if (!area && !sh)
        return;
    double grow = resize_growth(&st, nr, a);
    if (grow < 0) {
        if (area)
            out->kind = GOV_CALL_DISK_FREE; /* memory: the next recount sees it */
        return;
    }
    charge_memory(out, sh, tid, fd, &st, grow);
    if (area)
        charge_growth(out, d, &st, grow);
}

/* What a name takes in its directory: twice ext4's entry (8 bytes and the
 * name, to 4): a hashed directory's blocks split half full (5,100 names of
 * 5 bytes took 135 KiB, 1.74 times their entries). */
static double entry_bytes(const char *path)
{
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/')
        start--;
    return (double)(2 * ((8 + len - start + 3) & ~(size_t)3));
}

/* Charges the directory dirfd (of the tenant's, O_PATH; closed here), if
 * it is one of the area: `blocks` of its filesystem, `bytes` and `inodes`
 * more. */
static void charge_dir(const struct gov_disk *d, int fd, int blocks, double bytes, int inodes,
                       struct gov_call *out)
{
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) && gov_disk_on_area(d, st.st_dev)) {
        if (blocks || bytes > 0)
            add(out, GOV_DISK_SPACE, blocks * (st.st_blksize > 0 ? st.st_blksize : 4096) + bytes);
        if (inodes)
            add(out, GOV_DISK_INODES, inodes);
        out->disk_dev = st.st_dev;
        out->disk_ino = st.st_ino;
        out->disk_entry = 1;
    }
    if (fd >= 0)
        close(fd);
}

/* A new name (and with `inode` a new inode) in the directory that holds the
 * tenant's path: charged the entry and a block of that directory's
 * filesystem (what a new directory or a long symlink's target takes), and
 * an inode; the recount makes it exact. */
static void charge_entry(struct gov_pidfds *c, const struct gov_disk *d, int tid, int dirfd,
                         uint64_t addr, int inode, struct gov_call *out)
{
    char path[PATH_MAX];
    if (read_str(tid, addr, path, sizeof path) < 0)
        return;
    double bytes = entry_bytes(path);
    to_parent(path);
    charge_dir(d, resolve(c, tid, dirfd, path), 1, bytes, inode, out);
}

/* The last name of path if it is a plain one (not ".", "..", nor followed
 * by a slash), else NULL. */
static const char *plain_name(const char *path)
{
    const char *slash = strrchr(path, '/'), *name = slash ? slash + 1 : path;
    return *name && strcmp(name, ".") && strcmp(name, "..") ? name : NULL;
}

/* 1 if the plain name is in directory fd `at`, 0 if not; -1 if it is a
 * symlink (open follows it) or could not be looked at. */
static int name_there(int at, const char *name)
{
    struct stat st;
    if (at < 0 || !name)
        return -1;
    if (fstatat(at, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -1;
    return S_ISLNK(st.st_mode) ? -1 : 1;
}

#define MAX_LINKS 40 /* the kernel's MAXSYMLINKS */

/* open O_CREAT follows a last name that is a symlink, and makes the file
 * the link names if there is none, in that file's directory: path (the
 * tenant's, at the directory *at) becomes the link's target, a relative one
 * from the link's directory (the same path to it, so the same directory),
 * through at most MAX_LINKS links, and *at that target's directory.
 * name_there's answer for the last target; -1 (*at the last directory
 * found) if it cannot tell. */
static int follow_links(struct gov_pidfds *c, int tid, int dirfd, char *path, int *at)
{
    char target[PATH_MAX], dir[PATH_MAX];
    for (int n = 0; n < MAX_LINKS; n++) {
        const char *name = plain_name(path);
        ssize_t len = name ? readlinkat(*at, name, target, sizeof target - 1) : -1;
        if (len <= 0)
            return -1;
        target[len] = 0;
        memcpy(dir, path, PATH_MAX);
        to_parent(dir);
        if (target[0] == '/')
            memcpy(path, target, (size_t)len + 1);
        else if (snprintf(path, PATH_MAX, "%s/%s", dir, target) >= PATH_MAX)
            return -1;
        memcpy(dir, path, PATH_MAX);
        to_parent(dir);
        int next = resolve(c, tid, dirfd, dir);
        if (next < 0)
            return -1;
        close(*at);
        *at = next;
        int there = name_there(*at, plain_name(path));
        if (there >= 0)
            return there;
    }
    return -1;
}

/* open, openat, openat2, creat: a new inode with O_CREAT when the file is
 * not there yet, and always with O_TMPFILE (in the directory it names).
 * The path is read once, and its directory resolved once: the directory is
 * what a new file is charged to, and the last name is looked up in it (a
 * tenant that creates and deletes a file in a loop made three reads and
 * two resolutions of each path: README, Noisy neighbours, churned area).
 * A last name that is a symlink is followed to the directory where the
 * file would be made (a link to a new file charged its own directory: a
 * link from outside the area made files in it uncharged). Only a name that
 * could not be looked at has the whole path resolved, as before. */
static void classify_create(struct gov_pidfds *c, const struct gov_disk *d, int tid, int dirfd,
                            uint64_t addr, uint64_t flags, struct gov_call *out)
{
    if ((flags & O_TMPFILE) == O_TMPFILE) {
        charge_dir(d, tenant_path(c, tid, dirfd, addr), 0, 0, 1, out);
        return;
    }
    char path[PATH_MAX], dir[PATH_MAX];
    if (!(flags & O_CREAT) || read_str(tid, addr, path, sizeof path) < 0)
        return;
    memcpy(dir, path, sizeof dir);
    to_parent(dir);
    int at = resolve(c, tid, dirfd, dir);
    int there = name_there(at, plain_name(path));
    if (there < 0 && at >= 0)
        there = follow_links(c, tid, dirfd, path, &at);
    if (there < 0) {
        int fd = resolve(c, tid, dirfd, path);
        there = fd >= 0;
        if (fd >= 0)
            close(fd);
    }
    if (there) {
        if (at >= 0)
            close(at);
        return;
    }
    charge_dir(d, at, 1, entry_bytes(path), 1, out);
}

/* setxattr, lsetxattr, fsetxattr: the value may take a block of its own;
 * charged rounded up to blocks, the recount makes it exact. */
static void classify_xattr(const struct gov_disk *d, int fd, uint64_t size, struct gov_call *out)
{
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !gov_disk_on_area(d, st.st_dev))
        return;
    uint64_t blk = st.st_blksize > 0 ? (uint64_t)st.st_blksize : 4096;
    add(out, GOV_DISK_SPACE, (double)((size + blk) / blk * blk));
    out->disk_dev = st.st_dev;
    out->disk_ino = st.st_ino;
    out->disk_entry = 1;
}

/* Control data larger than this is refused (the kernel's optmem_max is
 * 128 KiB by default). */
#define MAX_CONTROL (1 << 20)

/* 1 if the tenant's msghdr at addr passes fds (SCM_RIGHTS), or cannot be
 * read whole (the kernel might read it otherwise). */
static int passes_fds(int pid, uint64_t addr)
{
    struct msghdr m;
    if (read_mem(pid, addr, &m, sizeof m))
        return 1;
    if (!m.msg_controllen || !m.msg_control)
        return 0;
    char *ctl = m.msg_controllen <= MAX_CONTROL ? malloc(m.msg_controllen) : NULL;
    int rc = !ctl || read_mem(pid, (uint64_t)m.msg_control, ctl, m.msg_controllen);
    m.msg_control = ctl;
    for (struct cmsghdr *h = rc ? NULL : CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h))
        if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS)
            rc = 1;
    free(ctl);
    return rc;
}

/* In a disk_space group, sendmsg and sendmmsg may not pass fds: a file in
 * flight in a socket is held by no process, where no recount can see it. */
static int refuses_fds(int pid, int nr, const uint64_t *a)
{
    if (nr == SYS_sendmsg)
        return passes_fds(pid, a[1]);
    uint64_t n = a[2] > MAX_IOV ? MAX_IOV : a[2];
    for (uint64_t i = 0; i < n; i++)
        if (passes_fds(pid, a[1] + i * sizeof(struct mmsghdr)))
            return 1;
    return 0;
}

/* A call that adds a name (syscalls.h: its directory fd and path); 0 if
 * nr is none. */
static int classify_entry_call(struct gov_pidfds *c, const struct gov_disk *d, int tid, int nr,
                               const uint64_t *a, struct gov_call *out)
{
    const struct gov_syscall *s = gov_syscall_of(nr);
    if (!s || !(s->flags & (GOV_SYS_ADDS_NAME | GOV_SYS_OPEN)))
        return 0;
    int dirfd = arg_dirfd(nr, a);
    uint64_t path = arg_path(nr, a);
    if (s->flags & GOV_SYS_OPEN) {
        uint64_t flags = s->open_flags < 0 ? O_CREAT : a[s->open_flags];
        classify_create(c, d, tid, dirfd, path, flags, out);
        return 1;
    }
    /* RENAME_WHITEOUT leaves a device inode behind. */
    int inode = (s->flags & GOV_SYS_NEW_INODE) ||
                (nr == SYS_renameat2 && (a[4] & RENAME_WHITEOUT));
    charge_entry(c, d, tid, dirfd, path, inode, out);
    if (s->flags & GOV_SYS_REPLACES)
        out->disk_entry = 1; /* it may replace a file: recount */
    return 1;
}

/* disk_space calls that name their file by path or fd, that add names,
 * inodes or attributes, or that free space. */
static int classify_disk_call(struct gov_pidfds *c, const struct gov_disk *d,
                              struct gov_shmem *sh, int tid, int nr, const uint64_t *a,
                              struct gov_call *out)
{
    struct open_how how;
    sa_family_t family;
    char first;
    int fd = -1;
    /* Without an area only a resize matters: of a file in memory (shmem.h). */
    if (!d && nr != SYS_ftruncate && nr != SYS_fallocate && nr != SYS_truncate)
        return 0;
    switch (nr) {
    case SYS_unlink:
    case SYS_unlinkat:
    case SYS_rmdir:
    case SYS_removexattr:
    case SYS_lremovexattr:
    case SYS_fremovexattr:
        out->kind = GOV_CALL_DISK_FREE;
        return 1;
    case SYS_bind: /* a unix socket's path is a new inode */
        if (a[2] > offsetof(struct sockaddr_un, sun_path) + 1 &&
            read_mem(tid, a[1], &family, sizeof family) == 0 && family == AF_UNIX &&
            read_mem(tid, a[1] + offsetof(struct sockaddr_un, sun_path), &first, 1) == 0 && first)
            charge_entry(c, d, tid, AT_FDCWD, a[1] + offsetof(struct sockaddr_un, sun_path), 1,
                         out);
        return 1;
    case SYS_openat2:
        if (a[3] < sizeof how.flags || read_mem(tid, a[2], &how.flags, sizeof how.flags) == 0)
            classify_create(c, d, tid, arg_dirfd(nr, a), arg_path(nr, a),
                            a[3] < sizeof how.flags ? 0 : how.flags, out);
        return 1;
    case SYS_setxattr:
    case SYS_lsetxattr:
        fd = tenant_path(c, tid, AT_FDCWD, arg_path(nr, a));
        classify_xattr(d, fd, a[3], out);
        break;
    case SYS_fsetxattr:
        fd = tenant_fd(c, tid, arg_fd(nr, a, 0));
        classify_xattr(d, fd, a[3], out);
        break;
    case SYS_ftruncate:
    case SYS_fallocate:
        fd = tenant_fd(c, tid, arg_fd(nr, a, 0));
        classify_resize(d, sh, tid, fd, nr, a, out);
        break;
    case SYS_truncate:
        fd = tenant_path(c, tid, AT_FDCWD, arg_path(nr, a));
        classify_resize(d, sh, tid, fd, nr, a, out);
        break;
    default:
        return classify_entry_call(c, d, tid, nr, a, out);
    }
    if (fd >= 0)
        close(fd);
    return 1;
}

static double page_round(uint64_t len)
{
    return (double)((len + PAGE - 1) & ~(PAGE - 1));
}

/* A shared mapping of a file commits no memory, but what the tenant stores
 * through it reaches the file with no call to hold (docs/design.md): a
 * regular file open for writing is charged its whole mapped length as
 * disk_write, up front, whatever the protection (mprotect may add
 * PROT_WRITE later). */
static void charge_shared_map(struct gov_pidfds *c, int tid, int fd, uint64_t len,
                              struct gov_call *out)
{
    struct stat st;
    out->kind = GOV_CALL_BYTES;
    int dup = tenant_fd(c, tid, fd);
    int kind = fd_kind(dup, &st);
    int flags = dup >= 0 ? fcntl(dup, F_GETFL) : -1;
    if (kind == FD_UNKNOWN || (kind == FD_FILE && (flags < 0 || (flags & O_ACCMODE) == O_RDWR)))
        out->ch[out->nch++] = (struct gov_charge){GOV_DISK_WRITE, (double)page_round(len)};
    if (dup >= 0)
        close(dup);
}

void gov_classify_shared_remap(uint64_t grow, struct gov_call *out)
{
    *out = (struct gov_call){.kind = GOV_CALL_BYTES, .wait_fd = -1, .ledger_slot = -1};
    out->ch[out->nch++] = (struct gov_charge){GOV_DISK_WRITE, (double)page_round(grow)};
}

/* What a new pipe or unix socket, or a larger send buffer, may hold
 * (shmem.h): charged as a shared mapping is. */
static void charge_buffer(struct gov_call *out, double bytes)
{
    out->kind = GOV_CALL_MEMORY;
    if (bytes > 0) {
        add(out, GOV_MEMORY, bytes);
        out->shared_mem = 1;
    }
}

static int sock_domain(int dup)
{
    int domain = 0;
    socklen_t len = sizeof domain;
    return getsockopt(dup, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 ? domain : -1;
}

/* accept of a unix socket makes one; setsockopt SO_SNDBUF of one grows it
 * (SO_SNDBUFFORCE past wmem_max). The value is read from the tenant, which
 * may change it before the kernel does: the recount reads the buffer the
 * kernel set. */
static void classify_socket_call(struct gov_pidfds *c, int tid, int nr, const uint64_t *a,
                                 struct gov_call *out)
{
    int val = 0, sndbuf = 0;
    socklen_t len = sizeof sndbuf;
    int force = a[2] == SO_SNDBUFFORCE;
    if (nr == SYS_setsockopt && (a[1] != SOL_SOCKET || (a[2] != SO_SNDBUF && !force) ||
                                 read_mem(tid, a[3], &val, sizeof val)))
        return;
    int dup = tenant_fd(c, tid, arg_fd(nr, a, 0));
    if (dup < 0)
        return;
    if (sock_domain(dup) == AF_UNIX) {
        if (nr != SYS_setsockopt)
            charge_buffer(out, (double)gov_unix_sndbuf(0));
        else if (getsockopt(dup, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) == 0)
            charge_buffer(out, (force ? 2.0 * val : (double)gov_unix_sndbuf(val)) - sndbuf);
    }
    close(dup);
}

void gov_classify(struct gov_pidfds *c, struct gov_ledger *lg, const struct gov_disk *disk,
                  struct gov_shmem *sh, int tid, int nr, const uint64_t *a, struct gov_call *out)
{
    memset(out, 0, sizeof *out);
    out->kind = GOV_CALL_BYTES;
    out->wait_fd = -1;
    out->ledger_slot = -1;
    switch (nr) {
    case SYS_clone:
    case SYS_clone3:
    case SYS_fork:
    case SYS_vfork:
        out->kind = GOV_CALL_TASK;
        return;
    case SYS_mmap:
        if ((a[3] & MAP_SHARED) && !(a[3] & MAP_ANONYMOUS)) {
            charge_shared_map(c, tid, arg_fd(nr, a, 0), a[1], out);
            return;
        }
        out->kind = GOV_CALL_MEMORY;
        /* Private writable mappings commit memory, and so do shared
         * anonymous ones (shmem); PROT_NONE reservations (thread arenas,
         * runtimes' heaps) and shared file maps do not. */
        if ((a[2] & PROT_WRITE) && (!(a[3] & MAP_SHARED) || (a[3] & MAP_ANONYMOUS))) {
            add(out, GOV_MEMORY, page_round(a[1]));
            out->shared_mem = (a[3] & MAP_SHARED) != 0;
        }
        return;
    case SYS_mprotect:
        out->kind = GOV_CALL_MEMORY;
        if (a[2] & PROT_WRITE)
            add(out, GOV_MEMORY, page_round(a[1]));
        return;
    case SYS_mremap:
        out->kind = GOV_CALL_MEMORY;
        if (a[2] > a[1])
            add(out, GOV_MEMORY, page_round(a[2] - a[1]));
        return;
    case SYS_brk:
        out->kind = GOV_CALL_MEMORY;
        out->brk = 1; /* the engine knows the current break */
        return;
    case SYS_pipe:
    case SYS_pipe2:
        charge_buffer(out, sh ? GOV_PIPE_BYTES : 0);
        return;
    case SYS_socketpair:
        charge_buffer(out, sh && a[0] == AF_UNIX ? 2.0 * (double)gov_unix_sndbuf(0) : 0);
        return;
    case SYS_socket:
        charge_buffer(out, sh && a[0] == AF_UNIX ? (double)gov_unix_sndbuf(0) : 0);
        return;
    case SYS_accept:
    case SYS_accept4:
    case SYS_setsockopt:
        if (sh)
            classify_socket_call(c, tid, nr, a, out);
        return;
    case SYS_shmget:
        /* A new SysV segment: its size, whether or not it is ever
         * attached (shmem.h recounts it). */
        out->kind = GOV_CALL_MEMORY;
        if (a[2] & IPC_CREAT) {
            add(out, GOV_MEMORY, page_round(a[1]));
            out->shared_mem = 1;
        }
        return;
    case SYS_sendfile:
        charge_transfer(out, c, disk, sh, tid, arg_fd(nr, a, 1), a[2], arg_fd(nr, a, 0), 0,
                        (double)a[3]);
        return;
    case SYS_splice:
    case SYS_copy_file_range:
        charge_transfer(out, c, disk, sh, tid, arg_fd(nr, a, 1), a[1], arg_fd(nr, a, 0), a[3],
                        (double)a[4]);
        return;
    case SYS_sendmsg:
    case SYS_sendmmsg:
        if (disk && refuses_fds(tid, nr, a)) {
            out->kind = GOV_CALL_REFUSED;
            out->refuse_errno = EPERM;
            return;
        }
        classify_fd_call(c, lg, disk, sh, tid, nr, a, out);
        return;
    default:
        if (!classify_disk_call(c, disk, sh, tid, nr, a, out))
            classify_fd_call(c, lg, disk, sh, tid, nr, a, out);
    }
}
