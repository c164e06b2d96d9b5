// 4-bit weights, 16-bit tokens (issue #19): out[n, m] = round( sum_g S[m, g] * sum_{k in g} v(m, k) * x[n, k]
// (+ O[m, g] * sum_{k in g} x[n, k]) + bias ), fp32 sums, one rounding, where per FMT (jitgemm/quant4.py):
//   JG_MXFP4  v = 2 * e2m1(code)       S = 2^(e8m0 - 128)   (the halving keeps every v an integer)
//   JG_Q4_SYM v = code - 8             S = fp16 scale
//   JG_Q4_MIN v = code                 S = fp16 scale, O = fp16 min
//   JG_Q4_ZP  v = code - zero          S = fp16 scale   (zero: a byte 0..15 per group)
// Every v is a small integer, exact in fp16 and bf16, so the tensor cores (NVIDIA) or fp32 FMAs (AMD) see
// the codes exactly and each group's scale multiplies its fp32 partial sum.
//
// The device layout of w (quant4.device_layout): each row in blocks of 128 k (64 bytes, the row zero-padded
// to whole blocks); block b holds four 16-byte slices t = 0..3, slice t four 32-bit words q = 0..3, and word q
// the eight codes of k = 128 b + 32 q + 8 t + e (e = 0..7) in nibble order e0 e2 e4 e6 e1 e3 e5 e7 (nibble p
// at bits 4p..4p+3). So the four slices of a block split each 32-k group evenly (one group per word: the
// scale of a group is one value for all four lanes that share an mma), and nibbles p and p + 4 are the
// consecutive pair (e_2p, e_2p+1) one 16-bit register of two values needs, 16 bits apart.
// MXFP4 words place each code's bits (m, e0, e1, sign: the code is s e1 e0 m) by pair instead (quant4.MX_BITS):
// nibble p = j + 4 h's bits at 16 h + {0, 1, 2, 9} (j = 0), {3, 4, 5, 12}, {6, 7, 8, 15}, {10, 11, 13, 14} (j = 3),
// so for j = 0..2 one shift puts the magnitude under a bf16 value's exponent/mantissa boundary (6..8) and the
// sign on bit 15 of both halves at once: one mask, no separate sign (NVIDIA widening: 5 instructions a pair
// with nibbles, 3 so). jg_mx_code reads a code back.
// scales: [M, K / GROUP] with row pitch lds (fp16; uint8 e8m0 for MXFP4), each row padded to whole 128-k blocks;
// q4_min's are records: per row and 128-k block its 128 / GROUP scales, then as many minima (quant4.scale_records),
// so one load reads both. aux: zero points (uint8, [M, K / GROUP], pitch lda) for q4_zp, null for the other formats.
// K % 32 == 0, K % GROUP == 0 (checked on the host).
#include "jg_platform.h"

#define JG_MXFP4 0
#define JG_Q4_SYM 1
#define JG_Q4_MIN 2
#define JG_Q4_ZP 3
// MXFP4 whose every group's e8m0 is a normal exponent, 1..254 (no 2^-127 subnormal, no NaN: the host checked the
// whole weight, Q4Device.normal_scales), so the NVIDIA loop takes a group's 2S as the byte shifted into a float's
// exponent field, with no selects (sm_90a, bf16, MT 1 WK 4 U 2: 498 -> 424 instructions a loop); NVIDIA only
#define JG_MXFP4_NORMAL 4
// the format a kernel's FMT decodes (JG_MXFP4_NORMAL is MXFP4 but for its scales)
#define JG_W4_BASE(FMT) ((FMT) == JG_MXFP4_NORMAL ? JG_MXFP4 : (FMT))

// the code (s e1 e0 m) of nibble p of an MXFP4 word (the bit placement above)
JG_DEVICE unsigned jg_mx_code(unsigned w, int p) {
  const int h = 16 * (p >> 2), j = p & 3;
  if (j < 3) return ((w >> (h + 3 * j)) & 7u) | (((w >> (h + 3 * j + 9)) & 1u) << 3);
  return ((w >> (h + 10)) & 3u) | (((w >> (h + 13)) & 1u) << 2) | (((w >> (h + 14)) & 1u) << 3);
}

// S of a group from its stored bits (fp16, or the e8m0 byte): fp16 -> fp32; e8m0 e -> 2^(e - 128) (the v = 2 *
// e2m1 halving folded in), 255 NaN (OCP)
template <int FMT>
JG_DEVICE float jg_w4_scale_of(unsigned bits) {
  if constexpr (FMT == JG_MXFP4) {  // selects, not branches: this runs for every group of every row
    const unsigned e = bits;
    const unsigned v = e >= 2u ? (e - 1u) << 23 : 0x00200000u << (e & 1u);  // e = 0, 1: 2^-128, 2^-127 (subnormal)
    return __uint_as_float(e == 255u ? 0x7fc00000u : v);
  } else {
    return jg_f16_to_f32((jg_u16)bits);
  }
}

template <int FMT>
JG_DEVICE float jg_w4_scale(const void* scales, jg_i64 at) {
  if constexpr (FMT == JG_MXFP4) return jg_w4_scale_of<FMT>(((const unsigned char*)scales)[at]);
  else return jg_w4_scale_of<FMT>(((const jg_u16*)scales)[at]);
}

// 2 * |e2m1| for the magnitude codes 0..7 (0, 0.5, 1, 1.5, 2, 3, 4, 6 doubled), one nibble each
#define JG_E2M1_X2 0xC8643210u

#if defined(JG_NV)
#include "nv/w4.h"
#else
#include "amd/w4.h"
#endif
