"""Writes testdata/hf.safetensors with the reference implementation.

The Go tests read the committed output to prove the reader understands files
written by Hugging Face's own writer (header layout, padding, tensor order).
Regenerate with:

    python3 -m venv /tmp/st && /tmp/st/bin/pip install safetensors==0.8.0 numpy
    /tmp/st/bin/python testdata/make_hf_fixture.py testdata/hf.safetensors

Half-precision values are given as bit patterns so the file holds exactly the
patterns the Go test expects (numpy has no bfloat16).
"""

import sys

import numpy as np
from safetensors import TensorSpec, serialize_file

TENSORS = {
    # 1.0, -2.5, +inf, NaN, smallest subnormal (2^-133), -0
    "bf16": ("bfloat16", [2, 3], np.array([0x3F80, 0xC020, 0x7F80, 0x7FC0, 0x0001, 0x8000], dtype="<u2")),
    # 1.0, -2.5, 65504, smallest subnormal (2^-24), largest subnormal, -inf, NaN, -0
    "f16": ("float16", [2, 4], np.array([0x3C00, 0xC100, 0x7BFF, 0x0001, 0x03FF, 0xFC00, 0x7E00, 0x8000], dtype="<u2")),
    "f32": ("float32", [3], np.array([1.0, -2.5, 3.4028235e38], dtype="<f4")),
    "i64": ("int64", [2], np.array([1, -1], dtype="<i8")),
    "u8": ("uint8", [3], np.array([0, 127, 255], dtype="u1")),
    "scalar": ("float32", [], np.array(0.5, dtype="<f4")),
    "empty": ("float16", [0, 4], np.zeros((0, 4), dtype="<u2")),
}


def main(path):
    specs = {
        name: TensorSpec(dtype=dtype, shape=shape, data_ptr=arr.ctypes.data, data_len=arr.nbytes)
        for name, (dtype, shape, arr) in TENSORS.items()
    }
    serialize_file(specs, path, metadata={"format": "np", "writer": "huggingface safetensors 0.8.0"})


if __name__ == "__main__":
    main(sys.argv[1])
