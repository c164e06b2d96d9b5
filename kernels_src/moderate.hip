// Moderate-N GEMM (the wvSplitKrc capability): out[n, m] = sum_k x[n, k] * w[m, k] (+ bias) for
// N up to 128 tokens, fp32 accumulation, one rounding. Meant for small M*K, where one weight row per
// warp (the skinny family) cannot fill the GPU: a block computes a BN-token x BM-row tile over one of
// S slices of K (blockIdx.z), so tiles x S blocks share the work, and the S partial tiles are summed
// in a fixed order, so results are bit-identical run to run:
//   RED 0  S = 1: no reduction.
//   RED 1  (NVIDIA sm_90) the S blocks of a tile form a thread-block cluster; each sums its 1/S share
//          of the tile over all S blocks' shared memory (distributed shared memory), in rank order.
//   RED 2  every block writes its fp32 partial tile to a workspace (owned by jitgemm, reused across
//          calls); the last of a tile's S blocks to finish (an atomic counter) sums the S partials in
//          slice order 0..S-1 and sets the counter back to 0 for the next call (no zeroing launch).
//          Which block is last depends on timing; the order of the sum does not.
// x: [N, K] row pitch ldx; w: [M, K] row pitch ldw; out: [N, M] row pitch ldo (elements); bias as in
// skinny.hip. Host-checked: K % 8 == 0, pitches % 8 == 0, 16-byte aligned bases. Row offsets are
// 64-bit; rows beyond M or N and 16-byte chunks beyond K are zero-filled, never read.
// kb_per_split: 64-element K blocks per slice. ws: S * tiles * BN * BM floats; counters: tiles.
// Two NVIDIA cores compute a block's tile from the same cp.async stages (jg_moderate_core): mma.sync
// m16n8k16 over ldmatrix fragments (any sm_80+), or wgmma m64nBNk16 straight from shared memory
// (sm_90a; WN = 0 in the template selects it). The tuner measures both; the table says which.
#include "jg_platform.h"

#if defined(JG_NV)
#include "nv/moderate.h"
#else
#include "amd/moderate.h"
#endif
