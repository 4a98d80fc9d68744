"""What a disk area costs the calls it adds to the filter: 2,000 creating
opens (open O_CREAT|O_EXCL, close, unlink) and 2,000 sendmsg on a unix
socketpair, by a small C program, in a group with disk_space against the same
group with disk_write only (which intercepts writes, not these calls), the
two alternating. Medians of 15 rounds in one run:

    python -m pytest benchmarks/test_disk_calls.py --benchmark-only -s
"""
import shutil
import statistics
import subprocess
import time

import pytest

from governor import Limits, Supervisor

ROUNDS, CALLS = 15, 2000

PROGRAM = r'''
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    int n = atoi(argv[3]), sv[2];
    if (!strcmp(argv[1], "create")) {
        int dir = open(argv[2], O_RDONLY | O_DIRECTORY);
        for (int i = 0; i < n; i++) {
            int fd = openat(dir, "f", O_WRONLY | O_CREAT | O_EXCL, 0644);
            if (fd < 0 || close(fd) < 0 || unlinkat(dir, "f", 0) < 0)
                return 1;
        }
        return 0;
    }
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) < 0)
        return 1;
    char c = 'x';
    struct iovec iov = {&c, 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    for (int i = 0; i < n; i++)
        if (sendmsg(sv[0], &m, 0) != 1 || read(sv[1], &c, 1) != 1)
            return 1;
    return 0;
}
'''


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    d = tmp_path_factory.mktemp("calls")
    (d / "calls.c").write_text(PROGRAM)
    subprocess.run([gcc, "-O1", "-o", str(d / "calls"), str(d / "calls.c")], check=True)
    return str(d / "calls")


@pytest.mark.parametrize("call", ["create", "sendmsg"])
def test_disk_area_calls(benchmark, program, tmp_path, call):
    """Each round runs the program in both groups, one after the other, so
    that a busy machine weighs on both alike; the ratio is of the medians."""
    times = {"disk_space": [], "disk_write": []}
    with Supervisor(publish_state=False) as sup:
        groups = {"disk_space": sup.group("area", Limits(disk_write="100GiB/s", disk_space="100GiB"),
                                          disk_area=[tmp_path]),
                  "disk_write": sup.group("plain", Limits(disk_write="100GiB/s"))}

        def both():
            for name, g in groups.items():
                t = time.perf_counter()
                assert g.spawn([program, call, str(tmp_path), str(CALLS)]).wait(60) == 0
                times[name].append(time.perf_counter() - t)

        benchmark.pedantic(both, rounds=ROUNDS, warmup_rounds=1)
    area, plain = (statistics.median(times[k][1:]) for k in ("disk_space", "disk_write"))
    benchmark.extra_info.update(calls=CALLS, area_median_s=area, plain_median_s=plain,
                                ratio=area / plain)
    print(f"\n{CALLS} {call}: {area * 1e3:.1f} ms with a disk area, {plain * 1e3:.1f} ms "
          f"without, ratio {area / plain:.2f}x, {(area - plain) / CALLS * 1e6:.1f} us a call")
