"""CPython's own regression tests (Debian's libpython3.11-testsuite) for
processes, signals, files, sockets, threads and select/poll: every test that
passes natively must pass under both backends, with every limit set where it
never binds. The quick modules run in `make test`; the long ones are marked
compat_full and run in `make compat`."""
from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from _compat import BACKENDS, needs_root, run

PYTHON = "/usr/bin/python3"
QUICK = ("test_os", "test_select", "test_epoll", "test_fork1", "test_wait4", "test_eintr",
         "test_pty", "test_fileio")
FULL = ("test_signal", "test_subprocess", "test_threading", "test_poll", "test_selectors",
        "test_wait3", "test_socket", "test_asyncio", "test_concurrent_futures", "test_shutil",
        "test_tempfile", "test_io", "test_mmap", "test_resource")
# Natively on this VM, test_socket's VSOCK test waits in accept() for ever: a
# guest has VSOCK, and nothing connects.
EXTRA = {"test_socket": ["--ignore", "*VSOCK*"]}
# Tests that fail natively on this kind of machine (no network, root without
# CAP_SYS_RESOURCE) are simply not compared. Tests that the governor breaks
# and cannot fix would be listed here with the reason; a skip is not a pass.
GOVERNOR_BREAKS: dict[str, str] = {}

pytestmark = needs_root


def outcomes(xml: Path) -> dict[str, str]:
    """test id -> passed, skipped, failed, from regrtest's JUnit XML."""
    out = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        out[case.get("name")] = ("failed" if kinds & {"failure", "error"} else
                                 "skipped" if "skipped" in kinds else "passed")
    return out


def regrtest(module: str, backend: str | None, workdir: Path):
    """Runs one module's tests; (outcomes, Result)."""
    assert Path("/usr/lib/python3.11/test/regrtest.py").exists(), \
        "Debian's libpython3.11-testsuite is not installed: run make setup"
    where = workdir / (backend or "native")
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    xml = where / "junit.xml"
    # -u: the resources this machine has (no network); --timeout: a test that
    # hangs fails instead of hanging the suite.
    res = run([PYTHON, "-m", "test", "-u", "all,-network,-urlfetch", "--timeout", "300",
               "--junit-xml", str(xml), *EXTRA.get(module, ()), module], backend, cwd=where,
              timeout=1500)
    assert xml.exists(), f"{module} ({backend or 'native'}) wrote no results: {res.err[-2000:]}"
    return outcomes(xml), res


def compare(module: str, tmp_path: Path, report) -> None:
    native, nres = regrtest(module, None, tmp_path)
    passed = {t for t, o in native.items() if o == "passed"}
    assert passed, f"no test of {module} passes natively here"
    for backend in BACKENDS:
        governed, gres = regrtest(module, backend, tmp_path)
        broken = sorted(t for t in passed if governed.get(t) != "passed"
                        and t not in GOVERNOR_BREAKS)
        report(f"CPython {module}", f"{backend}, limits never bind",
               f"{len(passed) - len(broken)}/{len(passed)} of the tests that pass natively",
               nres.seconds, gres.seconds)
        assert not broken, (f"{module} under {backend}: passes natively, not governed: "
                            f"{broken[:20]}\n{gres.out[-4000:]}")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("module", QUICK)
def test_cpython_quick(module, tmp_path, report):
    compare(module, tmp_path, report)


@pytest.mark.compat_full
@pytest.mark.timeout(5400)
@pytest.mark.parametrize("module", FULL)
def test_cpython_full(module, tmp_path, report):
    compare(module, tmp_path, report)
