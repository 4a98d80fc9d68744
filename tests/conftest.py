"""The core behavioural tests run against each backend: a test that takes the
`backend` fixture runs once per backend."""
import pytest

BACKENDS = ("seccomp", "ptrace")


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param
