#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "procfs.h"

int gov_read_small(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, size - 1);
    int err = errno;
    close(fd);
    if (n < 0)
        return -err;
    buf[n] = '\0';
    return (int)n;
}

/* /proc/TID/status into buf; bytes read or -errno. */
static int read_status(int tid, char *buf, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", tid);
    return gov_read_small(path, buf, size);
}

static int64_t status_kib(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    return p ? strtoll(p + strlen(key), NULL, 10) : 0;
}

int64_t gov_task_committed(int tid, int *tgid)
{
    char buf[4096];
    int n = read_status(tid, buf, sizeof buf);
    if (n < 0)
        return n;
    *tgid = (int)status_kib(buf, "\nTgid:");
    return (status_kib(buf, "\nVmData:") + status_kib(buf, "\nVmStk:")) * 1024;
}

int64_t gov_task_status(int tid, const char *key)
{
    char buf[4096];
    int n = read_status(tid, buf, sizeof buf);
    if (n < 0)
        return n;
    const char *p = strstr(buf, key);
    return p ? strtoll(p + strlen(key), NULL, 10) : -ENOENT;
}

int gov_task_io_open(int tid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/io", tid, tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int gov_io_writes(int fd, int64_t *wchar, int64_t *dirtied)
{
    char buf[512];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    const char *w = strstr(buf, "wchar:"), *d = strstr(buf, "\nwrite_bytes:");
    if (!w || !d)
        return -ESRCH; /* its task is gone: nothing to read */
    *wchar = strtoll(w + 6, NULL, 10);
    *dirtied = strtoll(d + 13, NULL, 10);
    return 0;
}

static uint64_t status_mask(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    return p ? strtoull(p + strlen(key), NULL, 16) : 0;
}

/* Standard signals whose default action does not end the process: SIGCHLD,
 * SIGCONT, SIGURG, SIGWINCH (ignored), SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU. */
#define SIGBIT(n) (1ULL << ((n) - 1))
#define NOT_FATAL (SIGBIT(17) | SIGBIT(18) | SIGBIT(23) | SIGBIT(28) | SIGBIT(19) | \
                   SIGBIT(20) | SIGBIT(21) | SIGBIT(22))

int gov_task_signals(int tid)
{
    char buf[4096];
    int n = read_status(tid, buf, sizeof buf);
    if (n < 0)
        return n;
    uint64_t blocked = status_mask(buf, "\nSigBlk:");
    uint64_t own = status_mask(buf, "\nSigPnd:") & ~blocked;
    uint64_t shared = status_mask(buf, "\nShdPnd:") & ~blocked;
    uint64_t handled = status_mask(buf, "\nSigCgt:") | status_mask(buf, "\nSigIgn:");
    int out = 0;
    if (own || (shared && status_kib(buf, "\nThreads:") == 1))
        out |= GOV_SIG_DELIVERABLE;
    if ((own | shared) & ~handled & ~NOT_FATAL)
        out |= GOV_SIG_FATAL;
    return out;
}

static int shmem_path(const char *path)
{
    return strncmp(path, "/dev/zero (deleted)", 19) == 0 || strncmp(path, "/memfd:", 7) == 0 ||
           strncmp(path, "/SYSV", 5) == 0;
}

void gov_shm_obj_add(struct gov_shm_obj *objs, int *n, int max, uint64_t dev, uint64_t ino,
                     int64_t size)
{
    int i = 0;
    while (i < *n && !(objs[i].dev == dev && objs[i].ino == ino))
        i++;
    if (i == *n) {
        if (*n == max) {
            objs[max - 1].size += size; /* no room: counted, perhaps twice */
            return;
        }
        objs[(*n)++] = (struct gov_shm_obj){dev, ino, 0};
    }
    if (size > objs[i].size)
        objs[i].size = size;
}

int gov_task_shared_anon(int pid, struct gov_shm_obj *objs, int *n, int max)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    while (fgets(line, sizeof line, f)) {
        unsigned long long start, end, ino;
        unsigned major, minor;
        char perms[8];
        int at = 0;
        if (sscanf(line, "%llx-%llx %7s %*x %x:%x %llu %n", &start, &end, perms, &major, &minor,
                   &ino, &at) < 6 || perms[1] != 'w' || perms[3] != 's' || !shmem_path(line + at))
            continue;
        uint64_t dev = ((uint64_t)major << 32) | minor;
        gov_shm_obj_add(objs, n, max, dev, ino, (int64_t)(end - start));
    }
    fclose(f);
    return 0;
}

int64_t gov_task_stat(int pid, int field)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int n = gov_read_small(path, buf, sizeof buf);
    if (n < 0)
        return n;
    /* Fields after the command name, which may contain spaces and ')'. */
    char *p = strrchr(buf, ')');
    if (!p || field < 3)
        return -EIO;
    int at = 2;
    for (; *p && at < field; p++)
        if (*p == ' ')
            at++;
    return at == field ? strtoll(p, NULL, 10) : -EIO;
}

int gov_task_syscall(int tid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/syscall", tid);
    if (gov_read_small(path, buf, sizeof buf) < 0)
        return -ESRCH;
    if (buf[0] == 'r')
        return GOV_SC_RUNNING; /* on a CPU: maybe inside the syscall we ask about */
    if (buf[0] < '0' || buf[0] > '9')
        return GOV_SC_USER; /* "-1 ...": not in a syscall */
    return atoi(buf);
}

int gov_task_shared_file_map(int pid, uint64_t addr)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long start, end, ino;
        char perms[8];
        int at = 0;
        if (sscanf(line, "%llx-%llx %7s %*x %*x:%*x %llu %n", &start, &end, perms, &ino, &at) < 4 ||
            addr < start || addr >= end)
            continue;
        found = perms[3] == 's' && ino != 0 && !shmem_path(line + at);
        break;
    }
    fclose(f);
    return found;
}
