"""The native video engine (C++17 over ExecuTorch): sources in this folder, built by `build.py`,
driven by `mobile-sdk engine` (`commands.py`)."""
