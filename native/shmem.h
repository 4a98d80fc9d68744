/* Memory a group holds outside its private mappings: files in memory
 * (memfd, tmpfs such as /dev/shm or a container's /tmp, hugetlbfs) and SysV
 * shared memory segments.
 *
 * A file in memory is charged against `memory` at the call that grows it
 * (write, ftruncate, fallocate, copies into it) and remembered here by a
 * file handle (name_to_handle_at), which, unlike an fd, does not keep the
 * file alive. The exact recount finds each file again with
 * open_by_handle_at: a file that is gone (ESTALE: unlinked and no longer
 * open or mapped anywhere, also not in flight in a unix socket) is dropped,
 * the others count their current size. A file that cannot be looked at
 * again keeps its last size: the count fails closed.
 *
 * SysV segments are charged their size at shmget(IPC_CREAT). The recount
 * lists the segments of the group's IPC namespace (SHM_STAT): in a container's
 * own namespace all of them, in a shared one those whose creator is a
 * process that called shmget in the group. */
#ifndef GOV_SHMEM_H
#define GOV_SHMEM_H

#include <stdint.h>
#include <sys/stat.h>

#include "procfs.h"

struct file_handle;

struct gov_shmem_file {
    uint64_t dev, ino;
    int64_t size;               /* at the last look */
    int anchor;                 /* index in anchors[] or -1: cannot be found again */
    struct file_handle *fh;
};

#define GOV_SHMEM_ANCHORS 16
#define GOV_SHMEM_CREATORS 64

struct gov_shmem {
    struct gov_shmem_file *f;
    int n, cap;
    int *slot, nslot;           /* f[] by (dev, ino) */
    /* A directory (or our own memfd) on each file system in memory the group
     * wrote: open_by_handle_at needs an fd on the file's file system. */
    struct {
        uint64_t dev;
        int fd;
    } anchor[GOV_SHMEM_ANCHORS];
    int nanchor;
    int creators[GOV_SHMEM_CREATORS];  /* tgids that called shmget(IPC_CREAT) */
    int ncreators;
    int creators_full;          /* more than that: every segment of the namespace counts */
    int64_t sysv_bytes;         /* the group's segments at the last count */
};

/* 1 if fd (st: its stat) is a regular file whose pages are memory. */
int gov_shmem_is_memory(int fd, const struct stat *st);

/* Remembers the file in memory fd (of thread tid, whose mounts name its file
 * system) that is about to grow. 0 or -errno (it is then charged, not
 * recounted). */
int gov_shmem_note(struct gov_shmem *s, int tid, int fd, const struct stat *st);

/* Remembers a process that creates SysV segments. */
void gov_shmem_creator(struct gov_shmem *s, int tgid);

/* Adds the group's files in memory and SysV segments to the object set of
 * gov_task_shared_anon (an object found both ways counts the larger size).
 * ipc_pid: a process of the group, whose IPC namespace is looked at. */
void gov_shmem_recount(struct gov_shmem *s, int ipc_pid, struct gov_shm_obj *objs, int *n,
                       int max);

/* Pipes and unix sockets: what they may queue, which the kernel keeps in
 * memory, is bounded per object: a pipe's 64 KiB (a group with a memory
 * limit may not make one larger: filter.c) and a unix socket's send buffer
 * (what it sent and is queued at its peer, or in flight, counts there).
 * Charged when made (pipe, socketpair, socket, accept) and when a send
 * buffer grows (setsockopt SO_SNDBUF).
 *
 * The recount adds each one found in the fd table of process pid, and notes
 * the files in memory open there (then counted by gov_shmem_recount). */
#define GOV_PIPE_BYTES 65536
void gov_shmem_fds(struct gov_shmem *s, int pid, struct gov_shm_obj *objs, int *n, int max);

/* The send buffer of a unix socket after SO_SNDBUF `want` (0: a new
 * socket's), as the kernel sets it: doubled, within net.core.wmem_max. */
int64_t gov_unix_sndbuf(int64_t want);

void gov_shmem_free(struct gov_shmem *s);

#endif
