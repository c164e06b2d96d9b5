// NVIDIA body of the skinny family (skinny.hip): tensor-core mma.sync through nv/core.h.
#pragma once
#include "nv/core.h"

// NT: 8-token tiles per block (1 or 2 for N <= 16; more tokens take more blocks); MT: 16-row
// weight tiles per block; WK: warps splitting K; U: 32-element K steps per warp iteration (bytes in
// flight); SK: cluster blocks splitting K further (sm_90). The arithmetic is jg_skinny_core's with
// 16-bit operands and no scales.
template <class T, int NT, int MT, int WK, int U, int SK>
__global__ void __launch_bounds__(32 * WK) JG_CLUSTER_K(SK) jg_skinny_nv(
    jg_u16* __restrict__ out, jg_i64 ldo, const jg_u16* __restrict__ x, jg_i64 ldx,
    const jg_u16* __restrict__ w, jg_i64 ldw, const jg_u16* __restrict__ bias, jg_i64 bias_ld, int bias_rows,
    int N, int M, int K, int pf_bytes) {
#if __CUDA_ARCH__ >= 900
  // Weights never depend on the kernel before this one (only x does): with programmatic dependent
  // launch (dispatch.use_pdl) pull the head of this block's rows into L2 (opt-in, JITGEMM_PREFETCH), and
  // only then wait for the previous kernel's results; the core lets the next kernel launch after its
  // store (JG_TRIGGER_END: measured faster than after the main loop here). Without PDL griddepcontrol is a
  // no-op. pf_bytes is sized on the host to fit half of L2. (Letting the next kernel launch here, before the
  // main loop, measured slower: NOTES.md.)
  if (pf_bytes > 0 && threadIdx.x < 16 * MT) {
    jg_i64 m0;
    int n0;
    jg_block_origin<16 * MT, 8 * NT>(N, m0, n0);
    const jg_i64 r = m0 + threadIdx.x;
    if (r < M) asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(w + r * ldw), "r"(pf_bytes) : "memory");
  }
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
  const jg_epilogue e{nullptr, nullptr, 1.f, 1.f, bias, bias_ld, 0, 0, bias_rows};
  jg_skinny_core<jg_op_16<T>, NT, MT, WK, U, SK, JG_TRIGGER_END>(out, ldo, (const unsigned char*)x, ldx,
                                                       (const unsigned char*)w, ldw, e, N, M, K);
}

