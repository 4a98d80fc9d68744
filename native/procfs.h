/* What the engine reads from /proc about a group's tasks. */
#ifndef GOV_PROCFS_H
#define GOV_PROCFS_H

#include <stddef.h>
#include <stdint.h>

/* Reads a small /proc file into buf (NUL-terminated); bytes read or -errno. */
int gov_read_small(const char *path, char *buf, size_t size);

/* Committed private memory of the process that thread `tid` belongs to:
 * VmData + VmStk (the kernel's data_vm + stack_vm), in bytes; its thread
 * group id in *tgid. -errno if the task is gone. */
int64_t gov_task_committed(int tid, int *tgid);

/* Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS, memfd, SysV shm) that
 * process pid maps writable, from /proc/PID/maps: adds each object, keyed by
 * its inode, to the set in *objs (n of them, cap max) with its size, so an
 * object mapped by several processes of a group counts once. -errno if gone. */
struct gov_shm_obj {
    uint64_t dev, ino;
    int64_t size;
};
int gov_task_shared_anon(int pid, struct gov_shm_obj *objs, int *n, int max);
/* Adds an object to such a set, or raises its size to `size`; with no room
 * left, its size goes to the last one (an overcount, never one missed). */
void gov_shm_obj_add(struct gov_shm_obj *objs, int *n, int max, uint64_t dev, uint64_t ino,
                     int64_t size);

/* Field `field` (numbered from 1, as in proc(5); >= 3, numeric) of
 * /proc/PID/stat, e.g. 47: start_brk; -errno if gone. */
int64_t gov_task_stat(int pid, int field);

/* The syscall number thread `tid` is in (from /proc/TID/syscall),
 * GOV_SC_USER when it is not in a syscall, GOV_SC_RUNNING when it is runnable
 * (unknown), -ESRCH when it is gone. */
enum { GOV_SC_USER = -1, GOV_SC_RUNNING = -2 };
int gov_task_syscall(int tid);

/* The signals waiting for thread `tid` (/proc/TID/status), a mask:
 * GOV_SIG_DELIVERABLE: one it does not block that will reach it: its own, or
 * its process's when it is the only thread; GOV_SIG_FATAL: one whose action
 * is the default and ends the process. 0: neither; -errno if it is gone. */
enum { GOV_SIG_DELIVERABLE = 1, GOV_SIG_FATAL = 2 };
int gov_task_signals(int tid);

/* The decimal value after `key` (e.g. "\nPPid:") in /proc/TID/status;
 * -errno if the task is gone, -ENOENT if there is no such key. */
int64_t gov_task_status(int tid, const char *key);

/* The thread's own I/O counters, /proc/TID/task/TID/io: an fd (-errno),
 * bound to that task, that gov_io_writes reads again and again: wchar (bytes
 * its write-family calls returned) and write_bytes (page cache it dirtied,
 * which writeback will write). 0, or -errno (-ESRCH: the task is gone). */
int gov_task_io_open(int tid);
int gov_io_writes(int fd, int64_t *wchar, int64_t *dirtied);

/* 1 if the mapping of process pid that contains addr is a shared mapping
 * of a file (not shared anonymous memory), 0 if not (or none), -errno if
 * the process is gone. */
int gov_task_shared_file_map(int pid, uint64_t addr);

#endif
