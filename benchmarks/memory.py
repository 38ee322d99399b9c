"""Peak extra resident memory of one load, read from the kernel.

Method: every loader runs in a fresh process. After its imports and set-up, the
process's peak RSS mark (``VmHWM``) is reset by writing ``5`` to
``/proc/self/clear_refs`` (Linux >= 4.0); the load runs; the peak extra memory is
``VmHWM`` after the load minus ``VmRSS`` before it. This counts every page the load
touched (numpy buffers, ``bytes``, the allocator's slack, C libraries' buffers), which
``tracemalloc`` cannot see in full. Where ``clear_refs`` is not writable, a thread
samples ``VmRSS`` every millisecond instead (it can miss short spikes).
"""

import threading


def _status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def rss():
    """Current resident set size in bytes."""
    return _status()["VmRSS"]


def reset_peak():
    """Reset this process's peak RSS mark (``VmHWM``); the RSS now, in bytes.

    Raises OSError where ``/proc/self/clear_refs`` is not writable.
    """
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return rss()


def peak():
    """This process's peak RSS in bytes since the last :func:`reset_peak`."""
    return _status()["VmHWM"]


class PeakRSS:
    """Context manager measuring the peak extra RSS of the code it wraps.

    Attributes
    ----------
    baseline : int
        RSS in bytes on entry.
    peak_extra : int
        Peak RSS minus ``baseline``, in bytes, set on exit.
    method : str
        ``"VmHWM"`` (kernel peak mark) or ``"sampled VmRSS"``.
    """

    def __init__(self):
        self.baseline = 0
        self.peak_extra = 0
        self.method = "VmHWM"
        self._stop = None
        self._peak = 0
        self._thread = None

    def __enter__(self):
        try:
            self.baseline = reset_peak()
        except OSError:
            self.method = "sampled VmRSS"
            self.baseline = rss()
        if self.method != "VmHWM":
            self._peak = self.baseline
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.001):
            self._peak = max(self._peak, rss())

    def __exit__(self, *exc):
        if self.method == "VmHWM":
            top = peak()
        else:
            self._stop.set()
            self._thread.join()
            top = max(self._peak, rss())
        self.peak_extra = max(0, top - self.baseline)
        return False
