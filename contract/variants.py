"""Where a model's variants live: the file-naming rule the quantizer writes by and the service reads by.

`training/quantize.py` writes the INT8 variant of `models/cnn.onnx` to `models/cnn-int8.onnx`;
`service/model_choice.py` looks for it there. One rule on the ground floor, so neither side
imports the other.
"""

from __future__ import annotations

from pathlib import Path


def int8_variant(fp32_path: Path) -> Path:
    """Where the INT8 variant of a model lives: `<name>-int8.onnx` beside it."""
    return fp32_path.with_name(fp32_path.stem + "-int8.onnx")
