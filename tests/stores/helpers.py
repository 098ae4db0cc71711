"""Helpers of the store tests: small FITS products, a pausable TCP proxy (service outage)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path

import numpy as np
from astropy.io import fits

from phangs_operators.routines.cubes.synthetic import synthetic_header
from phangs_operators.stores import ProductFile, Provenance


def small_cube(path: Path, seed: int = 0, shape: tuple[int, int, int] = (12, 16, 16)) -> Path:
    """A tiny FITS cube whose bytes depend on ``seed``."""
    data = np.random.default_rng(seed).normal(0.0, 0.1, shape).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.writeto(path, data, synthetic_header(shape, v0_kms=925.0, dv_kms=2.5), overwrite=True)
    return path


def small_map(path: Path, seed: int = 0, shape: tuple[int, int] = (16, 16)) -> Path:
    """A tiny 2-D FITS map (moment-like)."""
    hdr = synthetic_header((3, *shape), v0_kms=925.0, dv_kms=2.5)
    for key in list(hdr.keys()):
        if key.endswith("3") and key[:1] in "CPN":
            del hdr[key]
    hdr["NAXIS"] = 2
    hdr["BUNIT"] = "K km/s"
    data = np.random.default_rng(seed).normal(1.0, 0.1, shape).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.writeto(path, data, hdr, overwrite=True)
    return path


def big_file(path: Path, nbytes: int, seed: int = 1) -> Path:
    """``nbytes`` of pseudo-random data written in 8 MiB blocks (fast, not compressible)."""
    block = np.random.default_rng(seed).bytes(8 * 1024 * 1024)
    with open(path, "wb") as f:
        left = nbytes
        i = 0
        while left > 0:
            chunk = block if left >= len(block) else block[:left]
            f.write(i.to_bytes(8, "little") + chunk[8:] if len(chunk) > 8 else chunk)
            left -= len(chunk)
            i += 1
    return path


def cube_file(path: Path, target: str = "ngc0628", product: str = "co21", kind: str = "cube",
              stage: str = "pbcorr_trimmed_k", resolution: str = "", **prov) -> ProductFile:
    """ProductFile of ``path`` with a plausible PHANGS identity."""
    return ProductFile(path, target, "12m+7m", product, stage=stage, kind=kind, resolution=resolution,
                       provenance=Provenance(inputs=prov.pop("inputs", ()), recipe=prov.pop("recipe", "test"),
                                             keyset_hash=prov.pop("keyset_hash", None)))


class TcpProxy:
    """Forward 127.0.0.1:<port> to an upstream service; ``stop()`` simulates an outage.

    ``stop()`` closes the listener and every open connection (clients see refused/reset
    connections); ``start()`` listens again on the same port.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(64)
        self.port = ls.getsockname()[1]
        self._listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()
        return self

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(262144):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()
            with self._lock:
                self._conns -= {src, dst}

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()


def fork_and_run(func, *args) -> int:
    """Run ``func(*args)`` in a forked child; return its exit status (a SIGKILL gives -9)."""
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            func(*args)
        except BaseException:  # noqa: BLE001
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
