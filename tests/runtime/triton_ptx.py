"""Compile the Triton NMS kernels for one NVIDIA compute capability without a GPU; print what the PTX uses.

    python -m tests.runtime.triton_ptx 80 90   → {"80": {"_suppression_bits": {"div.rn.f32": true, ...}}, ...}
"""

import json
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from runtime import _nms_triton as kernels

SIGNATURES = {
    "_suppression_bits": ({"boxes_ptr": "*fp32", "counts_ptr": "*i64", "mask_ptr": "*i64", "K": "i32",
                           "K_PAD": "i32", "WORDS": "i32", "threshold": "fp32", "BLOCK": "constexpr"},
                          {"BLOCK": kernels.BLOCK}, 4),
    "_greedy_pass": ({"mask_ptr": "*i64", "counts_ptr": "*i64", "keep_ptr": "*i8", "K_PAD": "i32", "WORDS": "i32",
                      "BLOCK": "constexpr", "WORDS_POW2": "constexpr"}, {"BLOCK": kernels.BLOCK, "WORDS_POW2": 128}, 1),
}
INSTRUCTIONS = ("div.rn.f32", "div.full", "fma.rn.f32")


def main(capability: int) -> dict:
    found = {}
    for name, (signature, constants, warps) in SIGNATURES.items():
        source = ASTSource(fn=getattr(kernels, name), signature=signature, constexprs=constants)
        compiled = triton.compile(source, target=GPUTarget("cuda", capability, 32),
                                  options={"num_warps": warps, "enable_fp_fusion": False})
        found[name] = {op: op in compiled.asm["ptx"] for op in INSTRUCTIONS}
    return found


if __name__ == "__main__":
    print(json.dumps({capability: main(int(capability)) for capability in sys.argv[1:]}))
