"""The C token bucket (native/bucket.c) through cffi, on a simulated clock."""
from __future__ import annotations

import random

import pytest

from governor import _native

ffi, lib = _native.ffi, _native.lib
S = 1_000_000_000  # ns per second
T0 = 5 * S


def bucket(rate: float, burst: float, now: int = T0):
    b = ffi.new("struct gov_bucket *")
    lib.gov_bucket_init(b, rate, burst, now)
    return b


def ns_for(tokens: float, rate: float) -> float:
    return tokens / rate * S


def test_init_is_full():
    b = bucket(1000.0, 100.0)
    assert (b.rate, b.burst, b.tokens, b.last_ns) == (1000.0, 100.0, 100.0, T0)
    assert lib.gov_bucket_wait_ns(b, 100.0, T0) == 0
    assert lib.gov_bucket_wait_ns(b, 1.0, T0) == 0


def test_wait_is_missing_tokens_over_rate():
    b = bucket(1000.0, 100.0)
    lib.gov_bucket_charge(b, 100.0)
    assert b.tokens == 0
    w = lib.gov_bucket_wait_ns(b, 50.0, T0)
    assert abs(w - ns_for(50, 1000)) <= 2  # 50 ms (+1 ns rounding up)
    assert w >= ns_for(50, 1000)
    # Half-way there: half the wait left.
    w2 = lib.gov_bucket_wait_ns(b, 50.0, T0 + 25_000_000)
    assert abs(w2 - 25_000_000) <= 2
    # Waiting exactly as told is enough.
    assert lib.gov_bucket_wait_ns(b, 50.0, T0 + 25_000_000 + w2) == 0


def test_wait_does_not_consume():
    b = bucket(1000.0, 100.0)
    for _ in range(5):
        assert lib.gov_bucket_wait_ns(b, 80.0, T0) == 0
    assert b.tokens == 100.0


def test_charge_is_exact():
    b = bucket(1e6, 1e5)
    for cost in (1.0, 10.0, 4096.0, 0.5):
        lib.gov_bucket_charge(b, cost)
    assert b.tokens == pytest.approx(1e5 - 4107.5, abs=1e-9)


def test_large_call_goes_when_full_then_debt():
    rate, burst = 1000.0, 100.0
    b = bucket(rate, burst)
    # 10x the bucket: allowed at once because the bucket is full ...
    assert lib.gov_bucket_wait_ns(b, 1000.0, T0) == 0
    lib.gov_bucket_charge(b, 1000.0)
    assert b.tokens == -900.0  # ... and leaves a debt
    # The next call waits for the debt plus its own cost (capped at burst).
    w1 = lib.gov_bucket_wait_ns(b, 1.0, T0)
    assert abs(w1 - ns_for(901, rate)) <= 2
    w = lib.gov_bucket_wait_ns(b, 5000.0, T0)
    assert abs(w - ns_for(900 + burst, rate)) <= 2  # 1 s: debt/rate + a full bucket
    assert lib.gov_bucket_wait_ns(b, 5000.0, T0 + w - 2_000_000) > 0  # 2 ms early
    assert lib.gov_bucket_wait_ns(b, 5000.0, T0 + w) == 0


def test_large_call_when_not_full_waits_for_full_bucket_only():
    b = bucket(1000.0, 100.0)
    lib.gov_bucket_charge(b, 50.0)
    w = lib.gov_bucket_wait_ns(b, 10_000.0, T0)
    assert abs(w - ns_for(50, 1000)) <= 2


def test_refill_capped_at_burst():
    b = bucket(1000.0, 100.0)
    lib.gov_bucket_charge(b, 100.0)
    assert lib.gov_bucket_wait_ns(b, 1.0, T0 + 3600 * S) == 0
    assert b.tokens == 100.0 and b.last_ns == T0 + 3600 * S
    # A long idle time does not buy more than one burst.
    lib.gov_bucket_charge(b, 100.0)
    assert lib.gov_bucket_wait_ns(b, 1.0, T0 + 3600 * S) > 0


def test_refill_partial():
    b = bucket(1000.0, 100.0)
    lib.gov_bucket_charge(b, 100.0)
    lib.gov_bucket_wait_ns(b, 1.0, T0 + 30_000_000)  # 30 ms -> 30 tokens
    assert b.tokens == pytest.approx(30.0, abs=1e-9)


def test_clock_going_backwards_changes_nothing():
    b = bucket(1000.0, 100.0)
    lib.gov_bucket_charge(b, 100.0)
    lib.gov_bucket_wait_ns(b, 1.0, T0 + S // 100)
    tokens, last = b.tokens, b.last_ns
    w = lib.gov_bucket_wait_ns(b, 50.0, T0)
    assert (b.tokens, b.last_ns) == (tokens, last)
    assert w == pytest.approx(ns_for(50 - tokens, 1000), abs=2)


def test_zero_cost_never_waits_without_debt():
    b = bucket(1000.0, 100.0)
    lib.gov_bucket_charge(b, 100.0)
    assert lib.gov_bucket_wait_ns(b, 0.0, T0) == 0


def test_waiting_as_told_always_suffices():
    rng = random.Random(1234)
    for _ in range(2000):
        rate = 10 ** rng.uniform(3, 9)
        burst = 10 ** rng.uniform(2, 8)
        b = bucket(rate, burst)
        lib.gov_bucket_charge(b, rng.uniform(0, 3 * burst))
        cost = rng.choice([1.0, rng.uniform(0, burst), rng.uniform(burst, 10 * burst)])
        w = lib.gov_bucket_wait_ns(b, cost, T0)
        assert w >= 0
        if w:
            assert lib.gov_bucket_wait_ns(b, cost, T0 + w) == 0, (rate, burst, cost, w)


@pytest.mark.parametrize("rate,burst,sizes", [
    (1_048_576.0, 104_857.6, (4096,)),                     # 1 MiB/s, default burst
    (1_048_576.0, 104_857.6, (65536, 1_000_000, 10)),      # calls above the burst too
    (500_000.0, 1.0, (1, 3, 7000)),                        # burst of 1 byte
    (123.0, 50.0, (1, 49, 51, 500)),
])
def test_long_run_rate_is_exact(rate, burst, sizes):
    """A greedy sender on a simulated clock: bytes moved over time T equal
    rate*T within one burst plus one call, and the relative error vanishes."""
    rng = random.Random(42)
    b = bucket(rate, burst, 0)
    now = sent = 0
    calls = 0
    biggest = max(sizes)
    while calls < 20_000:
        cost = float(rng.choice(sizes))
        for _ in range(10):  # a wait is always enough: no second wait
            w = lib.gov_bucket_wait_ns(b, cost, now)
            if not w:
                break
            now += w
        else:
            pytest.fail("a call waited more than once")
        assert w == 0
        lib.gov_bucket_charge(b, cost)
        sent += cost
        calls += 1
    elapsed = now / S
    assert elapsed > 0
    allowed = rate * elapsed
    # Never ahead of the rate by more than a burst plus the call in debt.
    assert sent <= allowed + burst + biggest + 1e-6 * allowed
    # Never behind by more than one call (+1 ns of rounding per wait).
    assert sent >= allowed - biggest - rate * calls * 1e-9 - 1e-6 * allowed
    assert sent / allowed == pytest.approx(1.0, rel=2e-3)


def test_settle_debt_and_refund():
    b = bucket(1000.0, 100.0)
    lib.gov_bucket_settle(b, 30.0, T0)      # the interface moved 30 more than charged
    assert b.tokens == 70.0
    lib.gov_bucket_settle(b, -20.0, T0)     # 20 charged never left: refunded
    assert b.tokens == 90.0
    lib.gov_bucket_settle(b, -50.0, T0)     # never past the burst
    assert b.tokens == 100.0


def test_settle_refills_first():
    b = bucket(1000.0, 100.0)
    lib.gov_bucket_charge(b, 100.0)
    lib.gov_bucket_settle(b, 10.0, T0 + S // 20)  # 50 tokens came back meanwhile
    assert b.tokens == pytest.approx(40.0)


def test_settle_debt_is_bounded_by_one_second_of_rate():
    b = bucket(1000.0, 100.0)
    lib.gov_bucket_settle(b, 1e9, T0)       # an inbound flood
    assert b.tokens == -1000.0
    assert lib.gov_bucket_wait_ns(b, 1.0, T0) == pytest.approx(1.001 * S, abs=2)


def test_settle_keeps_a_deeper_debt_of_calls():
    b = bucket(1000.0, 100.0)
    lib.gov_bucket_charge(b, 5100.0)        # one large call: 5 s of debt
    lib.gov_bucket_settle(b, 200.0, T0)
    assert b.tokens == -5000.0              # not forgiven, not deepened
    lib.gov_bucket_settle(b, -300.0, T0)
    assert b.tokens == -4700.0


def test_wait_of_an_enormous_debt_stays_a_wait():
    """A debt whose wait does not fit in int64 ns must not convert into a
    negative wait (which would let every call go)."""
    b = bucket(1000.0, 100.0)
    lib.gov_bucket_charge(b, 1.8e19)
    assert lib.gov_bucket_wait_ns(b, 1.0, T0) == lib.GOV_BUCKET_MAX_WAIT_NS
