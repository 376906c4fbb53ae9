"""The Python twin of bench/timing.h: `warmup` untimed calls, then the mean wall time of `calls`
calls in milliseconds; `sync` (device work) brackets the timed region."""
import time


def ms_per_call(call, warmup: int, calls: int, sync=None) -> float:
    for _ in range(warmup):
        call()
    if sync:
        sync()
    start = time.perf_counter()
    for _ in range(calls):
        call()
    if sync:
        sync()
    return (time.perf_counter() - start) * 1000 / calls
