"""Keep third-party noise out of the CLI's output: torchao's "Failed to load" lines, torch's pytree
deprecation warning, ExecuTorch's `[cpuinfo_utils.cpp]` probing on every program load. `mobile-sdk -v`
shows them. Library users get the libraries' own behaviour unless they call `quiet_third_party()`."""
from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def native_stderr_quiet():
    """Around calls into native code: what it writes to stderr is held back, and shown only if the call fails."""
    if not _quiet_native:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
