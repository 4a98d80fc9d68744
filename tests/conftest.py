"""The core behavioural tests run against each backend: a test that takes the
`backend` fixture runs once per backend. State files of every supervisor the
tests start (in process or as `governor run`) go to a directory of the
session's, not the host's /run/governor."""
import os

import pytest

from _tenants import under_tsan

# make sanitize: the engine built with sanitizers (native/build_native.py
# --sanitize) is loaded in place of the installed one. Only this process
# runs it: the commands it spawns and the `governor` CLIs the tests start
# neither preload the sanitizer's runtime nor load that build.
SANITIZED = os.environ.pop("GOVERNOR_NATIVE_DIR", "")
if SANITIZED:
    import governor

    governor.__path__.insert(0, os.path.join(SANITIZED, "governor"))
    from governor import _native

    assert _native.__file__.startswith(SANITIZED), f"not the sanitized engine: {_native.__file__}"
    os.environ.pop("LD_PRELOAD", None)

BACKENDS = ("seccomp", "ptrace")


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    if request.param != "seccomp" and under_tsan():
        pytest.skip("the tracer's wake-up does not survive TSan (tests/_tenants.py)")
    return request.param


@pytest.fixture(scope="session", autouse=True)
def run_dir(tmp_path_factory):
    old = os.environ.get("GOVERNOR_RUN_DIR")
    os.environ["GOVERNOR_RUN_DIR"] = str(tmp_path_factory.mktemp("run"))
    yield
    if old is None:
        del os.environ["GOVERNOR_RUN_DIR"]
    else:
        os.environ["GOVERNOR_RUN_DIR"] = old


@pytest.fixture(scope="module")
def host_net_lock():
    """Tests that make bridges and pools with fixed names on the host take
    this machine-wide lock, so that two test runs (two checkouts) do not
    tear down each other's bridge."""
    import fcntl

    with open("/tmp/governor-tests-net.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
