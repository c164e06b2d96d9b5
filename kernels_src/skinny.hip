// Skinny GEMM, 16-bit: out[n, m] = sum_k x[n, k] * w[m, k] (+ bias), fp32 accumulation, one rounding.
// x: [N, K] row pitch ldx; w: [M, K] row pitch ldw; out: [N, M] row pitch ldo; all in elements.
// bias: null, or rows of M elements with pitch bias_ld; bias_rows = 1 broadcasts one row to all n.
// Requirements checked on the host: K % 8 == 0, pitches % 8 == 0, 16-byte aligned bases.
//
// Two bodies, because the fastest algorithm differs per vendor:
//  * NVIDIA: tensor-core mma.sync m16n8k16 on 16-row weight tiles; each thread feeds its own
//    16-byte slices as A (weights) and B (tokens) in the same k order, so no operand shuffles;
//    K is split across the block's warps and reduced through shared memory in a fixed order.
//  * AMD: the wvSplitK algorithm: persistent workgroups, a wave owns YT rows over all of K,
//    lanes split K in 8-element slices, tokens staged in LDS (whole, or in chunks when they do
//    not fit), fp32 dot products, a fixed-order cross-lane reduction.
#include "jg_platform.h"

#if defined(JG_NV)
#include "nv/skinny.h"
#else
#include "amd/skinny.h"
#endif

