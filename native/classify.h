/* What a notified call costs: which resources, how many bytes or tasks.
 *
 * The supervisor looks at the tenant's file descriptors through
 * pidfd_getfd(2) (a regular file is disk, a socket is network, a pipe or a
 * terminal is neither) and at its buffers through process_vm_readv(2). Those
 * buffers may change under us: sizes read there are cost estimates, never
 * grounds for isolation.
 *
 * Reads are charged what they will return, not what they ask for: for a
 * regular file min(count, size - position); for a socket the bytes queued
 * when the call is released (SIOCINQ). A blocking receive on an empty socket
 * waits in the engine until data is queued, so its cost is known too. */
#ifndef GOV_CLASSIFY_H
#define GOV_CLASSIFY_H

#include <stdint.h>

struct gov_disk;
struct gov_shmem;

#define GOV_PIDFD_SLOTS 4096

/* Thread pidfds by tid, direct-mapped. A slot that outlived its task fails
 * with ESRCH/EBADF and is reopened. With each, once asked for, the thread's
 * /proc io file (gov_pidfds_writes), closed with it. At most `max` fds are
 * open (an eighth of RLIMIT_NOFILE when the cache starts, the supervisor's
 * other engines and files need the rest): past it, or at EMFILE, the least
 * recently used slot is closed. */
struct gov_pidfds {
    int tid[GOV_PIDFD_SLOTS];
    int fd[GOV_PIDFD_SLOTS];
    int iofd[GOV_PIDFD_SLOTS];
    uint64_t used[GOV_PIDFD_SLOTS];  /* `clock` at its last use */
    uint64_t clock;
    int open, max;
};

void gov_pidfds_init(struct gov_pidfds *c);
void gov_pidfds_clear(struct gov_pidfds *c);
/* Closes the pidfds of tasks that have exited: the supervisor's fds follow
 * the tenants' live tasks, not every task they ever had. */
void gov_pidfds_sweep(struct gov_pidfds *c);
/* Thread tid's wchar and write_bytes (procfs.h gov_io_writes), read through
 * its slot's io file, kept open while the slot is tid's: a pread costs a
 * fraction of open, read and close. 0 or -errno. */
int gov_pidfds_writes(struct gov_pidfds *c, int tid, int64_t *wchar, int64_t *dirtied);

/* What each TCP socket has really handed to the tenant: the kernel counts
 * bytes received (TCP_INFO tcpi_bytes_received); minus what is still queued
 * (SIOCINQ) that is what reads took. Each receive on a TCP socket settles
 * the difference between that and the estimates charged since the last one,
 * so TCP receives are charged exactly, however the data raced the release. */
#define GOV_LEDGER_SLOTS 256

struct gov_ledger {
    struct {
        uint64_t dev, ino;
        uint64_t consumed;  /* bytes the tenant had read at the last settlement */
        double charged;     /* estimates charged since */
    } slot[GOV_LEDGER_SLOTS];
};

struct gov_charge {
    int res;      /* GOV_NET_SEND ... */
    double cost;
};

enum {
    GOV_CALL_BYTES = 1,   /* charges in ch[] (possibly none) */
    GOV_CALL_WAIT_DATA,   /* blocking receive, nothing queued: *wait_fd to poll */
    GOV_CALL_TASK,        /* creates a task */
    GOV_CALL_MEMORY,      /* may grow committed memory: ch[0] */
    GOV_CALL_DISK_FREE,   /* may give disk space back (unlink, shrink) */
    GOV_CALL_REFUSED,     /* fails with refuse_errno, unseen by the kernel */
};

struct gov_call {
    int kind;
    int nch;
    struct gov_charge ch[4];
    unsigned moves;       /* 1 << resource for every resource the call may charge,
                           * with an estimate of 0 too (charged at exit under ptrace) */
    int wait_fd;          /* owned by the caller when kind == GOV_CALL_WAIT_DATA */
    int64_t timeout_ns;   /* the socket's SO_RCVTIMEO for that wait, 0: none */
    int brk;              /* the call is brk(addr) */
    int shared_mem;       /* shared memory, not in VmData: a shared anonymous
                           * mapping, a SysV segment */
    double correction;    /* net_recv to settle now (may be negative) */
    int ledger_slot;      /* TCP receive: its ledger slot, else -1 */
    uint64_t ledger_ino;
    uint64_t disk_dev, disk_ino;  /* disk_space: the inode that grows (the directory
                                   * for a new name) */
    int disk_entry;       /* adds (or with rename may replace) a name, an inode
                           * or an attribute: the estimate charged is rough,
                           * recount when usage is read */
    int refuse_errno;     /* GOV_CALL_REFUSED */
};

/* Classifies syscall nr of thread tid with arguments args (x86_64 table).
 * disk: the group's disk_space area, or NULL; sh: with a memory limit, the
 * group's files in memory (growth of one is charged GOV_MEMORY), or NULL. */
void gov_classify(struct gov_pidfds *c, struct gov_ledger *lg, const struct gov_disk *disk,
                  struct gov_shmem *sh, int tid, int nr, const uint64_t *args,
                  struct gov_call *out);

/* mremap growing a shared file mapping by grow bytes: a disk_write charge,
 * as the mapping itself was (classify.c charge_shared_map). */
void gov_classify_shared_remap(uint64_t grow, struct gov_call *out);

#endif
