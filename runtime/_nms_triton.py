"""detect.py's greedy NMS on CUDA without the host: two Triton kernels (private to :mod:`runtime.postprocess`).

Input: per image, boxes [K, 4] sorted by score and the number of candidates ``count`` (rows past it are
ignored), both on the device. Output: keep [N, K] bool, exactly what sequential greedy NMS keeps.

1. ``_suppression_bits``: for each pair i < j < count, bit j of row i is set when box j would be removed by a
   kept box i, i.e. when NOT (IoU(i, j) ≤ threshold). Tiles of BLOCK × BLOCK pairs; tiles at or past the count
   and below the diagonal are skipped, so the work grows with count², not K². The IoU is computed exactly as
   NumPy does it in float32: NaN-propagating max/min, IEEE division (``div_rn``), no fused multiply-add
   (the kernels are compiled with ``enable_fp_fusion=False``).
2. ``_greedy_pass``: one program per image walks the candidates in score order, keeps one when its bit is not
   set in the running "removed" mask, and ORs its row of bits into the mask. Bits of the current word stay in
   a register, so a removed candidate costs a shift and a test; a kept one loads its row.

Both kernels read ``count`` from device memory and allocate nothing, so the chain is CUDA-graph capturable.
The module imports Triton at import time: :func:`runtime.postprocess.nms_sorted` falls back to the host where
that fails. Under ``TRITON_INTERPRET=1`` the same kernels run on CPU tensors (how CI tests them).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 64          # bits per mask word: pairs per tile side


@triton.jit
def _suppression_bits(boxes_ptr, counts_ptr, mask_ptr, K, K_PAD, WORDS, threshold, BLOCK: tl.constexpr):
    n = tl.program_id(0)
    row_block = tl.program_id(1)
    count = tl.load(counts_ptr + n)
    if row_block * BLOCK < count:
        rows = row_block * BLOCK + tl.arange(0, BLOCK)
        row_ok = rows < count
        base = boxes_ptr + n * K * 4
        rx1 = tl.load(base + rows * 4 + 0, mask=row_ok, other=0.0)
        ry1 = tl.load(base + rows * 4 + 1, mask=row_ok, other=0.0)
        rx2 = tl.load(base + rows * 4 + 2, mask=row_ok, other=0.0)
        ry2 = tl.load(base + rows * 4 + 3, mask=row_ok, other=0.0)
        row_area = (rx2 - rx1 + 1.0) * (ry2 - ry1 + 1.0)
        bit = tl.full([BLOCK], 1, tl.int64) << tl.arange(0, BLOCK).to(tl.int64)
        for col_block in range(row_block, tl.cdiv(count, BLOCK)):
            cols = col_block * BLOCK + tl.arange(0, BLOCK)
            col_ok = cols < count
            cx1 = tl.load(base + cols * 4 + 0, mask=col_ok, other=0.0)
            cy1 = tl.load(base + cols * 4 + 1, mask=col_ok, other=0.0)
            cx2 = tl.load(base + cols * 4 + 2, mask=col_ok, other=0.0)
            cy2 = tl.load(base + cols * 4 + 3, mask=col_ok, other=0.0)
            col_area = (cx2 - cx1 + 1.0) * (cy2 - cy1 + 1.0)
            w = tl.minimum(rx2[:, None], cx2[None, :], propagate_nan=tl.PropagateNan.ALL) - \
                tl.maximum(rx1[:, None], cx1[None, :], propagate_nan=tl.PropagateNan.ALL) + 1.0
            h = tl.minimum(ry2[:, None], cy2[None, :], propagate_nan=tl.PropagateNan.ALL) - \
                tl.maximum(ry1[:, None], cy1[None, :], propagate_nan=tl.PropagateNan.ALL) + 1.0
            inter = tl.maximum(w, 0.0, propagate_nan=tl.PropagateNan.ALL) * tl.maximum(h, 0.0, propagate_nan=tl.PropagateNan.ALL)
            iou = tl.math.div_rn(inter, (row_area[:, None] + col_area[None, :]) - inter)
            removes = (~(iou <= threshold)) & (cols[None, :] > rows[:, None]) & col_ok[None, :]
            words = tl.sum(tl.where(removes, bit[None, :], 0), axis=1)    # distinct bits: the sum is an OR
            tl.store(mask_ptr + (n * K_PAD + rows) * WORDS + col_block, words, mask=row_ok)


@triton.jit
def _greedy_pass(mask_ptr, counts_ptr, keep_ptr, K_PAD, WORDS, BLOCK: tl.constexpr, WORDS_POW2: tl.constexpr):
    n = tl.program_id(0)
    count = tl.load(counts_ptr + n)
    word_index = tl.arange(0, WORDS_POW2)
    blocks = tl.cdiv(count, BLOCK)
    removed = tl.zeros([WORDS_POW2], dtype=tl.int64)
    for block in range(0, blocks):
        current = tl.sum(tl.where(word_index == block, removed, 0))      # this block's word, in a register
        for b in range(0, BLOCK):
            i = block * BLOCK + b
            if (i < count) & (((current >> b) & 1) == 0):
                tl.store(keep_ptr + n * K_PAD + i, 1)
                row = mask_ptr + (n * K_PAD + i) * WORDS
                bits = tl.load(row + word_index, mask=(word_index >= block) & (word_index < blocks), other=0)
                removed = removed | bits
                current = current | tl.load(row + block)


def nms_sorted(boxes: torch.Tensor, counts: torch.Tensor, threshold: float) -> torch.Tensor:
    """keep [N, K] bool for CUDA (or, interpreted, CPU) boxes [N, K, 4] float32 sorted by score; see module doc."""
    n, k = boxes.shape[:2]
    words = triton.cdiv(max(k, 1), BLOCK)
    k_pad = words * BLOCK
    boxes = boxes.contiguous()
    counts = counts.to(torch.int64).contiguous()
    mask = torch.empty((n, k_pad, words), dtype=torch.int64, device=boxes.device)
    keep = torch.zeros((n, k_pad), dtype=torch.int8, device=boxes.device)
    _suppression_bits[(n, words)](boxes, counts, mask, k, k_pad, words, float(threshold), BLOCK=BLOCK,
                                  num_warps=4, enable_fp_fusion=False)
    _greedy_pass[(n,)](mask, counts, keep, k_pad, words, BLOCK=BLOCK, WORDS_POW2=triton.next_power_of_2(words),
                       num_warps=1, enable_fp_fusion=False)
    return keep[:, :k].bool()
