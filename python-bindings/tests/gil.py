"""Shows that a call releases the GIL: this thread keeps taking time stamps while the call runs
in another one."""
import threading
import time


def stamps_during(call, tick):
    """Runs call() on a thread and stamps perf_counter() every `tick` seconds meanwhile.
    Returns (start, end, stamps inside (start + margin, end - margin)), margin = 10 ticks."""
    span = []

    def work():
        t0 = time.perf_counter()
        call()
        span.extend([t0, time.perf_counter()])

    stamps = []
    th = threading.Thread(target=work)
    th.start()
    while th.is_alive():
        stamps.append(time.perf_counter())
        time.sleep(tick)
    th.join()
    t0, t1 = span
    margin = 10 * tick
    return t0, t1, [t for t in stamps if t0 + margin < t < t1 - margin]
