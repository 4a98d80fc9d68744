/* What a hostile tenant asks the kernel from inside a container: each
 * attempt of issue 14's table and of the container profile
 * (governor/container/profile.py), one line each: "NAME ok" or "NAME
 * ERRNONAME". Arguments are chosen so that an attempt that gets through
 * changes nothing outside the container (a no-op, a query, an invalid id,
 * the probe's own files and fds); built static, run as container root. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/kcmp.h>
#include <linux/keyctl.h>
#include <linux/mount.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <linux/sched.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#define SYS_lsm_list_modules 461

static void report(const char *name, long rc)
{
    printf("%s %s\n", name, rc < 0 ? strerrorname_np(errno) : "ok");
}

/* A child with new namespaces (made by clone's return pid) exits at once. */
static long reaped(long pid)
{
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid((pid_t)pid, NULL, 0);
    return pid;
}

static long clone3_newuser(void)
{
    struct clone_args args = {.flags = CLONE_NEWUSER, .exit_signal = SIGCHLD};
    return reaped(syscall(SYS_clone3, &args, sizeof args));
}

/* unshare a user and a mount namespace, then mount a tmpfs in them: in a
 * child, so the probe's own namespaces stay. */
static void unshare_and_mount(void)
{
    int p[2];
    if (pipe(p) < 0)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        char line[64];
        long rc = unshare(CLONE_NEWUSER | CLONE_NEWNS);
        int n = snprintf(line, sizeof line, "%s\n", rc < 0 ? strerrorname_np(errno) : "ok");
        if (rc == 0) {
            rc = mount("none", "/tmp", "tmpfs", 0, NULL);
            n += snprintf(line + n, sizeof line - (size_t)n, "%s\n",
                          rc < 0 ? strerrorname_np(errno) : "ok");
        }
        if (write(p[1], line, (size_t)n) < 0)
            _exit(1);
        _exit(0);
    }
    close(p[1]);
    char buf[64] = {0}, *second;
    ssize_t got = read(p[0], buf, sizeof buf - 1);
    close(p[0]);
    waitpid(pid, NULL, 0);
    if (got <= 0)
        return;
    second = strchr(buf, '\n');
    *second++ = 0;
    printf("unshare_user_mount %s\n", buf);
    if (*second)
        printf("unshare_then_mount_tmpfs %s", second);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    unshare_and_mount();
    report("clone_newuser", reaped(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)));
    report("clone3", clone3_newuser());
    int ns = open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC);
    report("setns", setns(ns, 0));
    report("mount_tmpfs", mount("none", "/tmp", "tmpfs", 0, NULL));
    report("umount2", umount2("/tmp", MNT_DETACH));
    report("pivot_root", syscall(SYS_pivot_root, ".", "."));
    report("open_tree", syscall(SYS_open_tree, AT_FDCWD, "/tmp", OPEN_TREE_CLONE));
    report("fsopen", syscall(SYS_fsopen, "tmpfs", 0));
    report("fspick", syscall(SYS_fspick, AT_FDCWD, "/tmp", 0));
    report("fsconfig", syscall(SYS_fsconfig, -1, FSCONFIG_CMD_CREATE, NULL, NULL, 0));
    report("fsmount", syscall(SYS_fsmount, -1, 0, 0));
    report("move_mount", syscall(SYS_move_mount, -1, "", AT_FDCWD, "/tmp", MOVE_MOUNT_F_EMPTY_PATH));
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
    report("mount_setattr", syscall(SYS_mount_setattr, AT_FDCWD, "/tmp", 0, &attr, sizeof attr));

    report("keyctl_join_session", syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL));
    report("add_key", syscall(SYS_add_key, "user", "probe", "x", 1, KEY_SPEC_PROCESS_KEYRING));
    report("request_key", syscall(SYS_request_key, "user", "probe", NULL, 0));

    union bpf_attr map = {.map_type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 4,
                          .max_entries = 1};
    report("bpf", syscall(SYS_bpf, BPF_MAP_CREATE, &map, sizeof map));
    struct perf_event_attr pe = {.type = PERF_TYPE_SOFTWARE, .size = sizeof pe,
                                 .config = PERF_COUNT_SW_CPU_CLOCK, .disabled = 1};
    report("perf_event_open", syscall(SYS_perf_event_open, &pe, 0, -1, -1, 0));
    report("userfaultfd", syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY));
    report("personality_no_aslr", personality(ADDR_NO_RANDOMIZE));
    report("personality_query", personality(0xffffffff));

    report("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
    report("init_module", syscall(SYS_init_module, NULL, 0, ""));
    report("finit_module", syscall(SYS_finit_module, -1, "", 0));
    report("delete_module", syscall(SYS_delete_module, "governor_probe", O_NONBLOCK));
    struct {
        unsigned int bytes;
        int type;
        unsigned char h[128];
    } handle = {.bytes = 128};
    int mount_id;
    report("name_to_handle_at", syscall(SYS_name_to_handle_at, AT_FDCWD, "/", &handle, &mount_id, 0));
    report("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, &handle, O_RDONLY));

    report("acct", syscall(SYS_acct, NULL));
    report("swapoff", syscall(SYS_swapoff, "/governor-probe-none"));
    report("reboot_cad_off", syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
                                     LINUX_REBOOT_CMD_CAD_OFF, NULL));
    report("settimeofday_noop", syscall(SYS_settimeofday, NULL, NULL));
    struct timespec now = {0};
    report("clock_settime_bad_clock", syscall(SYS_clock_settime, 9999, &now));
    report("iopl", syscall(SYS_iopl, 0));
    report("ioperm", syscall(SYS_ioperm, 0x80, 1, 0));
    report("quotactl_sync", syscall(SYS_quotactl, 0x800001 /* Q_SYNC */, NULL, 0, NULL));
    report("syslog_size", syscall(SYS_syslog, 10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0));
    report("get_mempolicy", syscall(SYS_get_mempolicy, NULL, NULL, 0, NULL, 0));
    report("move_pages", syscall(SYS_move_pages, 0, 0, NULL, NULL, NULL, 0));
    report("fanotify_init", syscall(SYS_fanotify_init, 0, 0));
    pid_t me = getpid();
    report("kcmp", syscall(SYS_kcmp, me, me, KCMP_FILE, 0, 0));
    int self = (int)syscall(SYS_pidfd_open, me, 0);
    report("pidfd_getfd", syscall(SYS_pidfd_getfd, self, 0, 0));
    report("lsm_list_modules", syscall(SYS_lsm_list_modules, NULL, NULL, 0));
    report("socket_vsock", socket(AF_VSOCK, SOCK_STREAM, 0));
    report("socket_alg", socket(AF_ALG, SOCK_SEQPACKET, 0));
    report("socket_inet", socket(AF_INET, SOCK_STREAM, 0));
    report("ustat", syscall(SYS_ustat, 0, NULL));
    report("io_uring_setup", syscall(SYS_io_uring_setup, 1, NULL));
    report("getpid", syscall(SYS_getpid));
    return 0;
}
