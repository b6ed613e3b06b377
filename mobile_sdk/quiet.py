"""Keep third-party noise out of the CLI's output: torchao's "Failed to load" lines, torch's pytree
deprecation warning, ExecuTorch's `[cpuinfo_utils.cpp]` probing on every program load. `mobile-sdk -v`
shows them. Library users get the libraries' own behaviour unless they call `quiet_third_party()`."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings

NOISY_LOGGERS = ("torchao", "torch.utils._pytree", "torch._export", "torch.export", "executorch", "coremltools")
_quiet_native = False


def quiet_third_party() -> None:
    global _quiet_native
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for category in (DeprecationWarning, FutureWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    _quiet_native = True


def is_quiet() -> bool:
    """Whether quiet_third_party() is in force (worker processes are told, to quiet themselves too)."""
    return _quiet_native


@contextlib.contextmanager
def native_stderr_quiet():
    """Around calls into native code and chatty converters: what they write to stderr (the file
    descriptor, and Python's sys.stderr wherever it points) is held back, and shown only if the call fails."""
    if not _quiet_native:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    python_held = io.StringIO()
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            with contextlib.redirect_stderr(python_held):
                yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace") + python_held.getvalue())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
