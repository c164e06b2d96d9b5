// NVIDIA body of the fp8 family (fp8.hip): the skinny core with fp8 operand policies.
#pragma once
#include "nv/core.h"

// NVIDIA decodes only e4m3fn (OCP) natively (sm_89+); the host refuses e4m3fnuz here.
template <class T, int MODE, int NT, int MT, int WK, int U, int SK>
__global__ void __launch_bounds__(32 * WK) JG_CLUSTER_K(SK) jg_fp8_nv(
    jg_u16* __restrict__ out, jg_i64 ldo, const unsigned char* __restrict__ x, jg_i64 ldx,
    const unsigned char* __restrict__ w, jg_i64 ldw, const float* __restrict__ sx, int sx_per_token, float sx_val,
    const float* __restrict__ sw, int sw_per_row, float sw_val, const jg_u16* __restrict__ bias, jg_i64 bias_ld,
    int bias_rows, int N, int M, int K, int /*unused: the MFMA kernel's LDS size*/) {
#if __CUDA_ARCH__ >= 890
#if __CUDA_ARCH__ >= 900
  // Programmatic dependent launch (dispatch.use_pdl; a no-op without it): nothing is read before the previous kernel
  // has finished (x, and the scales a quantize kernel may just have written). The core lets the next kernel launch
  // after its main loop (W8A8, W8Q) or after its store (W8A16). Measured on whole steps (session 22, H100, two runs
  // each): W8A16 with the trigger after the store 0.5-2.8 % faster at N = 1 and 4, the same at N = 16; W8A8 faster at
  // N = 1 (0.4 %) but slower at N = 4 (0.8 %) and, with per-channel scales, at N = 16 (0.6-1.4 %), so it stays.
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
  const jg_epilogue e{sx, sw, sx_val, sw_val, bias, bias_ld, sx_per_token, sw_per_row, bias_rows};
  if constexpr (MODE == JG_W8A8) {
    jg_skinny_core<jg_op_w8a8<T>, NT, MT, WK, U, SK, JG_TRIGGER_LOOP>(out, ldo, x, ldx, w, ldw, e, N, M, K);
  } else if constexpr (MODE == JG_W8A16) {
    jg_skinny_core<jg_op_w8a16<T>, NT, MT, WK, U, SK, JG_TRIGGER_END>(out, ldo, x, ldx, w, ldw, e, N, M, K);
  } else {
    jg_skinny_core<jg_op_w8q<T>, NT, MT, WK, U, SK, JG_TRIGGER_LOOP>(out, ldo, x, ldx, w, ldw, e, N, M, K);
  }
#endif
}

