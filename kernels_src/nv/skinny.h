// NVIDIA body of the skinny family (skinny.hip): tensor-core mma.sync through nv/core.h.
#pragma once
#include "nv/core.h"

// Weights never depend on the kernel before this one (only x does): with programmatic dependent
// launch (dispatch.use_pdl) pull the head of this block's rows into L2 (opt-in, JITGEMM_PREFETCH), and
// only then wait for the previous kernel's results; the core lets the next kernel launch after its
// store (JG_TRIGGER_END: measured faster than after the main loop here). Without PDL griddepcontrol is a
// no-op. pf_bytes is sized on the host to fit half of L2. (Letting the next kernel launch here, before the
// main loop, measured slower: NOTES.md.)
template <int NT, int MT>
JG_DEVICE void jg_skinny_prologue(const jg_u16* __restrict__ w, jg_i64 ldw, int N, int M, int pf_bytes) {
#if __CUDA_ARCH__ >= 900
  if (pf_bytes > 0 && threadIdx.x < 16 * MT) {
    jg_i64 m0;
    int n0;
    jg_block_origin<16 * MT, 8 * NT>(N, m0, n0);
    const jg_i64 r = m0 + threadIdx.x;
    if (r < M) asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(w + r * ldw), "r"(pf_bytes) : "memory");
  }
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// NT: 8-token tiles per block (1 or 2 for N <= 16; more tokens take more blocks); MT: 16-row
// weight tiles per block; WK: warps splitting K; U: 32-element K steps per warp iteration (bytes in
// flight); SK: cluster blocks splitting K further (sm_90). The arithmetic is jg_skinny_core's with
// 16-bit operands and no scales.
template <class T, int NT, int MT, int WK, int U, int SK>
__global__ void __launch_bounds__(32 * WK) JG_CLUSTER_K(SK) jg_skinny_nv(
    jg_u16* __restrict__ out, jg_i64 ldo, const jg_u16* __restrict__ x, jg_i64 ldx,
    const jg_u16* __restrict__ w, jg_i64 ldw, const jg_u16* __restrict__ bias, jg_i64 bias_ld, int bias_rows,
    int N, int M, int K, int pf_bytes) {
  jg_skinny_prologue<NT, MT>(w, ldw, N, M, pf_bytes);
  const jg_epilogue e{nullptr, nullptr, 1.f, 1.f, bias, bias_ld, 0, 0, bias_rows};
  jg_skinny_core<jg_op_16<T>, NT, MT, WK, U, SK, JG_TRIGGER_END>(out, ldo, (const unsigned char*)x, ldx,
                                                       (const unsigned char*)w, ldw, e, N, M, K);
}

// One tile of the persistent kernel, not inlined: inlined into the tile loop, ptxas kept more across tiles (sm_90a:
// 40 -> 64 registers at WK = 1, 70 -> 100 for two row tiles at WK = 16, asm-opaque tile index or not)
template <class T, int NT, int MT, int WK, int U, int SK>
__device__ __noinline__ void jg_skinny_persist_tile(unsigned b, jg_u16* __restrict__ out, jg_i64 ldo,
                                                    const jg_u16* __restrict__ x, jg_i64 ldx,
                                                    const jg_u16* __restrict__ w, jg_i64 ldw,
                                                    const jg_u16* __restrict__ bias, jg_i64 bias_ld, int bias_rows,
                                                    int N, int M, int K) {
  const jg_epilogue e{nullptr, nullptr, 1.f, 1.f, bias, bias_ld, 0, 0, bias_rows};
  jg_skinny_tile<jg_op_16<T>, NT, MT, WK, U, SK, JG_TRIGGER_NONE>(b, out, ldo, (const unsigned char*)x, ldx,
                                                                 (const unsigned char*)w, ldw, e, N, M, K);
}

// Blocks an SM the persistent kernel is compiled to fit: the plain kernel's two 512-thread blocks (WK = 16) need
// <= 64 registers, which the tile call's arguments pass by a few without the bound (sm_90a: 64 -> 70 for one row
// tile at 16 tokens, the config of every weight that lost); other block sizes keep ptxas's own choice (0: none).
// The dispatcher plans the persistent grid for WK = 16 only (dispatch.persist_fits).
#define JG_PERSIST_MIN_BLOCKS(wk) ((wk) == 16 ? 2 : 0)

// The same tiles with a persistent grid (dispatch: JITGEMM_PERSIST): as many blocks as fit on the GPU at once,
// each walking tiles blockIdx.x, blockIdx.x + gridDim.x, ... Every tile runs jg_skinny_tile unchanged (the same K
// order: a row's bits are jg_skinny_nv's). Why (NOTES session 36; a hypothesis until measured): on an H200 the
// N = 16 calls of the weights whose grid takes several waves lost 8-17 % against N = 1, those of one wave 1-4 %;
// blocks that start together may read the same token slices together (from L1), while blocks of later waves start
// out of step with their neighbours and take their tokens from L2 (as many bytes as the weights at one row tile).
// The host plans it for SK = 1 only (its count of resident blocks is per block, not per cluster).
template <class T, int NT, int MT, int WK, int U, int SK>
__global__ void __launch_bounds__(32 * WK, JG_PERSIST_MIN_BLOCKS(WK)) JG_CLUSTER_K(SK) jg_skinny_persist_nv(
    jg_u16* __restrict__ out, jg_i64 ldo, const jg_u16* __restrict__ x, jg_i64 ldx,
    const jg_u16* __restrict__ w, jg_i64 ldw, const jg_u16* __restrict__ bias, jg_i64 bias_ld, int bias_rows,
    int N, int M, int K, int pf_bytes) {
  jg_skinny_prologue<NT, MT>(w, ldw, N, M, pf_bytes);
  const unsigned tiles = (unsigned)((M + 16 * MT - 1) / (16 * MT)) * (unsigned)((N + 8 * NT - 1) / (8 * NT));
  for (unsigned b = blockIdx.x; b < tiles; b += gridDim.x) {
    jg_skinny_persist_tile<T, NT, MT, WK, U, SK>(b, out, ldo, x, ldx, w, ldw, bias, bias_ld, bias_rows, N, M, K);
    __syncthreads();  // the reduction's shared memory is the next tile's
  }
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;");
#endif
}
