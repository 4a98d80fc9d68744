/* The governed calls (syscalls.h): one row each, at its x86_64 number. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "syscalls.h"

_Static_assert(GOV_X32_BIT == __X32_SYSCALL_BIT, "GOV_X32_BIT is the kernel's");

#define R(res) (1u << GOV_##res)
#define AREA (R(DISK_SPACE) | R(DISK_INODES))
#define WRITES (R(DISK_WRITE) | R(MEMORY) | AREA)  /* a write to a file */
#define MASKED(arg, bits) {arg, GOV_CMP_MASKED_EQ, bits, bits}

/* Fields: name, nr, always, when, ncond, cond, fd, fd_in, flags. */
#define CALL(name, always, fd, flags) \
    [SYS_##name] = {#name, SYS_##name, always, 0, 0, {{0}}, fd, -1, flags}
#define TRANSFER(name, always, fd, fd_in, flags) \
    [SYS_##name] = {#name, SYS_##name, always, 0, 0, {{0}}, fd, fd_in, flags}

static const struct gov_syscall calls[GOV_NR_SYSCALLS] = {
    /* Writes. A thread's writes are settled at its next call (iowrite.h). */
    CALL(write, R(NET_SEND) | WRITES, 0, GOV_SYS_MAY_DIRTY),
    CALL(writev, R(NET_SEND) | WRITES, 0,
         GOV_SYS_IOVEC_WRITE | GOV_SYS_MAY_DIRTY | GOV_SYS_AT_EXIT),
    CALL(pwrite64, WRITES, 0, GOV_SYS_MAY_DIRTY),
    CALL(pwritev, WRITES, 0, GOV_SYS_IOVEC_WRITE | GOV_SYS_MAY_DIRTY | GOV_SYS_AT_EXIT),
    CALL(pwritev2, WRITES, 0, GOV_SYS_IOVEC_WRITE | GOV_SYS_MAY_DIRTY | GOV_SYS_AT_EXIT),
    CALL(sendto, R(NET_SEND), 0, 0),
    /* sendmsg and sendmmsg may not pass fds in a group with a disk area
     * (classify.c). */
    CALL(sendmsg, R(NET_SEND) | AREA, 0, GOV_SYS_AT_EXIT),
    CALL(sendmmsg, R(NET_SEND) | AREA, 0, 0),
    /* Reads: charged what they return. */
    CALL(read, R(NET_RECV) | R(DISK_READ), 0, GOV_SYS_RECEIVE | GOV_SYS_AT_EXIT),
    CALL(readv, R(NET_RECV) | R(DISK_READ), 0, GOV_SYS_RECEIVE | GOV_SYS_AT_EXIT),
    CALL(pread64, R(DISK_READ), 0, GOV_SYS_AT_EXIT),
    CALL(preadv, R(DISK_READ), 0, GOV_SYS_AT_EXIT),
    CALL(preadv2, R(DISK_READ), 0, GOV_SYS_AT_EXIT),
    CALL(recvfrom, R(NET_RECV), 0, GOV_SYS_RECEIVE | GOV_SYS_AT_EXIT),
    CALL(recvmsg, R(NET_RECV), 0, GOV_SYS_RECEIVE | GOV_SYS_AT_EXIT),
    CALL(recvmmsg, R(NET_RECV), 0, GOV_SYS_RECEIVE),
    /* Transfers charge both ends. */
    TRANSFER(sendfile, R(NET_SEND) | R(DISK_READ) | WRITES, 0, 1,
             GOV_SYS_MAY_DIRTY | GOV_SYS_AT_EXIT),
    TRANSFER(splice, R(NET_SEND) | R(NET_RECV) | R(DISK_READ) | WRITES, 2, 0,
             GOV_SYS_RECEIVE | GOV_SYS_MAY_DIRTY | GOV_SYS_AT_EXIT),
    TRANSFER(copy_file_range, R(DISK_READ) | WRITES, 2, 0, GOV_SYS_MAY_DIRTY | GOV_SYS_AT_EXIT),
    /* Tasks. */
    CALL(clone, R(PROCESSES), -1, GOV_SYS_CLONE),
    CALL(clone3, R(PROCESSES), -1, GOV_SYS_CLONE),
    CALL(fork, R(PROCESSES), -1, GOV_SYS_CLONE),
    CALL(vfork, R(PROCESSES), -1, GOV_SYS_CLONE),
    /* Memory grows by mappings, SysV segments, files in memory (memfd,
     * tmpfs) growing (writes and resizes are looked at for those), new pipes
     * and unix sockets, and larger send buffers (shmem.h). Shared mappings
     * of files move bytes with no call (classify.c charge_shared_map): with
     * disk_write, mmap stops when MAP_SHARED is set (a bit of the register,
     * which MAP_SHARED_VALIDATE sets too) and mremap always (whether it
     * grows a shared mapping is in the tenant's maps). */
    [SYS_mmap] = {"mmap", SYS_mmap, R(MEMORY), R(DISK_WRITE), 1,
                  {{1, {MASKED(3, MAP_SHARED)}}}, 4, -1, 0},
    CALL(mremap, R(MEMORY) | R(DISK_WRITE), -1, 0),
    CALL(brk, R(MEMORY), -1, 0),
    CALL(mprotect, R(MEMORY), -1, 0),
    CALL(shmget, R(MEMORY), -1, 0),
    CALL(pipe, R(MEMORY), -1, 0),
    CALL(pipe2, R(MEMORY), -1, 0),
    CALL(socketpair, R(MEMORY), -1, 0),
    CALL(accept, R(MEMORY), 0, 0),
    CALL(accept4, R(MEMORY), 0, 0),
    /* Compared on the registers (a container's profile has its own rules
     * on socket; whole, the two would not combine). */
    [SYS_socket] = {"socket", SYS_socket, 0, R(MEMORY), 1,
                    {{1, {{0, GOV_CMP_EQ, AF_UNIX, 0}}}}, -1, -1, 0},
    [SYS_setsockopt] = {"setsockopt", SYS_setsockopt, 0, R(MEMORY), 2,
                        {{2, {{1, GOV_CMP_EQ, SOL_SOCKET, 0}, {2, GOV_CMP_EQ, SO_SNDBUF, 0}}},
                         {2, {{1, GOV_CMP_EQ, SOL_SOCKET, 0}, {2, GOV_CMP_EQ, SO_SNDBUFFORCE, 0}}}},
                        0, -1, 0},
    /* Calls that may grow what a group stores in its area (disk_space,
     * disk_inodes: charged), or give space back (they mark the count
     * dirty); resizes grow files in memory too. */
    CALL(ftruncate, R(MEMORY) | AREA, 0, 0),
    CALL(truncate, R(MEMORY) | AREA, -1, 0),
    CALL(fallocate, R(MEMORY) | AREA, 0, 0),
    CALL(mkdir, AREA, -1, 0),
    CALL(mkdirat, AREA, -1, 0),
    CALL(unlink, AREA, -1, 0),
    CALL(unlinkat, AREA, -1, 0),
    CALL(rmdir, AREA, -1, 0),
    CALL(rename, AREA, -1, 0),
    CALL(renameat, AREA, -1, 0),
    CALL(renameat2, AREA, -1, 0),
    CALL(link, AREA, -1, 0),
    CALL(linkat, AREA, -1, 0),
    CALL(symlink, AREA, -1, 0),
    CALL(symlinkat, AREA, -1, 0),
    CALL(mknod, AREA, -1, 0),
    CALL(mknodat, AREA, -1, 0),
    CALL(creat, AREA, -1, 0),
    CALL(openat2, AREA, -1, 0),
    CALL(setxattr, AREA, -1, 0),
    CALL(lsetxattr, AREA, -1, 0),
    CALL(fsetxattr, AREA, 0, 0),
    CALL(removexattr, AREA, -1, 0),
    CALL(lremovexattr, AREA, -1, 0),
    CALL(fremovexattr, AREA, -1, 0),
    CALL(bind, AREA, -1, 0), /* a unix socket's path is a new inode */
    /* ... and open and openat when they may create a file: O_CREAT,
     * O_TMPFILE (compared on the register). */
    [SYS_open] = {"open", SYS_open, 0, AREA, 2,
                  {{1, {MASKED(1, O_CREAT)}}, {1, {MASKED(1, __O_TMPFILE)}}}, -1, -1, 0},
    [SYS_openat] = {"openat", SYS_openat, 0, AREA, 2,
                    {{1, {MASKED(2, O_CREAT)}}, {1, {MASKED(2, __O_TMPFILE)}}}, -1, -1, 0},
    /* A thread's writes are settled when it next calls in (iowrite.h): its
     * exit is such a call too. */
    CALL(exit, R(NET_SEND) | R(DISK_WRITE) | AREA, -1, GOV_SYS_EXIT),
    CALL(exit_group, R(NET_SEND) | R(DISK_WRITE) | AREA, -1, GOV_SYS_EXIT),
};

const struct gov_syscall *gov_syscall_of(int nr)
{
    return nr >= 0 && nr < GOV_NR_SYSCALLS && calls[nr].name ? &calls[nr] : NULL;
}

unsigned gov_syscall_flags(int nr)
{
    const struct gov_syscall *c = gov_syscall_of(nr);
    return c ? c->flags : 0;
}

int gov_syscall_number(const char *name, int compat)
{
    int nr = seccomp_syscall_resolve_name_arch(compat ? SCMP_ARCH_X86 : SCMP_ARCH_X86_64, name);
    return nr < 0 ? -ENOENT : nr;
}

int gov_syscall_name(int nr, int compat, char *buf, size_t size)
{
    int x32 = nr >= 0 && (nr & GOV_X32_BIT);
    if (x32)
        nr &= ~GOV_X32_BIT;
    char *name = seccomp_syscall_resolve_num_arch(compat && !x32 ? SCMP_ARCH_X86 : SCMP_ARCH_X86_64,
                                                  nr);
    int n = name ? snprintf(buf, size, "%s%s", x32 ? "x32 " : "", name)
                 : snprintf(buf, size, "%s%d", x32 ? "x32 " : "", nr);
    free(name);
    return n < 0 || (size_t)n >= size ? -ENOSPC : n;
}
