"""Lowering: a pipeline -> ExecuTorch programs and Core ML models, the parity gate, the package writer."""
