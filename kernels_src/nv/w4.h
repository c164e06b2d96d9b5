// NVIDIA body of the 4-bit family (w4.hip): the skinny core's organisation (a warp owns 16 weight rows, MT
// tiles of them a block; K split over WK warps and SK cluster blocks; tokens in 8-token tiles, NT a block,
// more take more blocks: jg_block_origin), with each lane's 16-byte weight slice holding 32 k of each of
// four consecutive 32-k groups. Per group its codes are widened to T exactly in registers, two mma.sync
// m16n8k16 sum them against the tokens in fp32, and the group's scale multiplies that partial sum into the
// accumulators. The
// order a row's terms are summed in depends on (WK, U, SK) only, never on N: a token's bits do not depend
// on the batch.
#pragma once
#include "nv/core.h"

template <class T>
struct jg_w4_out { using Out = T; };  // what jg_reduce_store needs of an operand policy

// both halves of h minus those of `sub`, as T: exact, every value is a small integer
template <class T>
JG_DEVICE unsigned jg_w4_sub(unsigned h, unsigned sub) {
  unsigned r;
  if constexpr (T::id == jg_f16::id) {
    asm("sub.f16x2 %0, %1, %2;" : "=r"(r) : "r"(h), "r"(sub));
  } else {  // sub.bf16x2 needs sm_90; h * 1 + (-sub) is the same on sm_80
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(r) : "r"(h), "r"(0x3f803f80u), "r"(sub ^ 0x80008000u));
  }
  return r;
}

// both halves of h times those of k, as T (h * k + -0: the bf16 multiply needs sm_90, the fma does not)
template <class T>
JG_DEVICE unsigned jg_w4_mul(unsigned h, unsigned k) {
  unsigned r;
  if constexpr (T::id == jg_f16::id) {
    asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(r) : "r"(h), "r"(k), "r"(0x80008000u));
  } else {
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(r) : "r"(h), "r"(k), "r"(0x80008000u));
  }
  return r;
}

// The four registers (e0 e1), (e2 e3), (e4 e5), (e6 e7) of a word's eight values v (w4.hip), as T pairs.
// Integer codes: a code c placed under the exponent of MAGIC (1024 in fp16, 128 in bf16: one unit per mantissa
// step) reads MAGIC + c; subtracting MAGIC + zero leaves c - zero exactly. nibbles: 0x000f000f, kept in a
// register by the caller (LOP3 takes one immediate, so NVCC otherwise moved the mask into a register again
// before every use: a quarter of the loop's instructions).
// MXFP4: the magnitude bits e1 e0 m of a code, put where the exponent's two low bits and the mantissa's top bit
// of a 16-bit float are, read as that float are |v| * 2^-14 (fp16) or |v| * 2^-126 (bf16), the subnormal
// code (e = 0: m * 2^-15, m * 2^-127) included; one exact multiply by 2^15 / 2^127 makes 2|v| (a sign on bit 15
// or 31 passes through it). The word's bit placement (w4.hip) lets one shift and one mask place pairs 0..2 with
// their signs for bf16 (three instructions a pair, two for pair 2); pair 3 and fp16 take a shift a field.
template <class T, int FMT>
JG_DEVICE void jg_w4_widen(unsigned w, unsigned zero, unsigned nibbles, unsigned (&p)[4]) {
  constexpr bool F16 = T::id == jg_f16::id;
  constexpr unsigned MAGIC = F16 ? 0x64006400u : 0x43004300u;
  if constexpr (FMT == JG_MXFP4) {
    constexpr unsigned TWICE = F16 ? 0x78007800u : 0x7f007f00u, S = 0x80008000u;  // 2^15, 2^127; the signs
    if constexpr (!F16) {
      constexpr unsigned F = 0x81c081c0u;  // m e0 e1 at bits 6..8 and the sign at 15 of each half
      p[0] = jg_w4_mul<T>((w << 6) & F, TWICE);
      p[1] = jg_w4_mul<T>((w << 3) & F, TWICE);
      p[2] = jg_w4_mul<T>(w & F, TWICE);
      p[3] = jg_w4_mul<T>(((w >> 4) & 0x00c000c0u) | ((w >> 5) & 0x01000100u) | ((w << 1) & S), TWICE);
    } else {
      constexpr unsigned MAG = 0x0e000e00u;  // m e0 e1 at bits 9..11 of each half
      p[0] = jg_w4_mul<T>((w << 9) & MAG, TWICE) ^ ((w << 6) & S);
      p[1] = jg_w4_mul<T>((w << 6) & MAG, TWICE) ^ ((w << 3) & S);
      p[2] = jg_w4_mul<T>((w << 3) & MAG, TWICE) ^ (w & S);
      p[3] = jg_w4_mul<T>(((w >> 1) & 0x06000600u) | ((w >> 2) & 0x08000800u), TWICE) ^ ((w << 1) & S);
    }
  } else {
    const unsigned sub = MAGIC + zero * 0x00010001u;
#pragma unroll
    for (int j = 0; j < 4; ++j) p[j] = jg_w4_sub<T>(((w >> (4 * j)) & nibbles) | MAGIC, sub);
  }
}

// v itself; with KEEP, as a value the compiler must keep in a register rather than recompute where it is used
template <bool KEEP, class V>
JG_DEVICE V jg_keep(V v) {
  if constexpr (!KEEP) return v;
  unsigned long long b = (unsigned long long)v;
  asm volatile("" : "+l"(b));  // an opaque definition: the compiler can neither see through it nor recompute it
  return (V)b;
}

JG_DEVICE unsigned jg_word(const jg_u32x4& v, int q) { return q == 0 ? v.x : q == 1 ? v.y : q == 2 ? v.z : v.w; }

// A group's scale as the NVIDIA loop applies it: fp16 scales as they are; MXFP4's e8m0 as 2S = 2^(e - 127), the
// float whose exponent field is e (e = 0: 2^-127, the subnormal; 255: NaN, OCP), three instructions fewer a group
// than S = 2^(e - 128) (jg_w4_scale_of); the epilogue multiplies by 1/2 once (every term scaled by the same power
// of two, so each rounding is the same, scaled: the sums are those of S exactly).
template <int FMT>
JG_DEVICE float jg_w4_loop_scale(unsigned bits) {
  if constexpr (FMT == JG_MXFP4) return __uint_as_float(bits == 0u ? 0x00400000u : bits == 255u ? 0x7fc00000u : bits << 23);
  else if constexpr (FMT == JG_MXFP4_NORMAL) return __uint_as_float(bits << 23);  // e in 1..254: 2^(e - 127), normal
  else return jg_w4_scale_of<FMT>(bits);
}
// BYTES (1, 2, 4 or 8) bytes at p, BYTES-aligned, in one read-only load (ld.global.nc)
template <int BYTES>
JG_DEVICE unsigned long long jg_load_bits(const unsigned char* p) {
  if constexpr (BYTES == 8) return __ldg((const unsigned long long*)p);
  else if constexpr (BYTES == 4) return __ldg((const unsigned*)p);
  else if constexpr (BYTES == 2) return __ldg((const unsigned short*)p);
  else return __ldg(p);
}

// One iteration of a warp: U 128-k blocks of each row's slices. The pointers are the iteration's own (the kernel
// advances them): wp at its first block, sp / ap at its first scale group, xp at its first k, so every load is
// an immediate offset from a register the loop carries, and no 64-bit address is made per group. Per scale
// group (GROUP / 32 of a block's four 32-k words) the mma sums run on in fp32 and the group's scale multiplies
// them into the accumulators once. TAIL: k may pass K, kleft = K - the iteration's first k (tested per scale
// group: K % GROUP == 0, so a group is wholly in or out).
template <class T, int FMT, int GROUP, int NT, int MT, int U, bool TAIL>
JG_DEVICE void jg_w4_step(float (&acc)[MT][NT][4], int kleft, const unsigned char* const (&wp)[MT][2],
                          const unsigned char* const (&sp)[MT][2], const unsigned char* const (&ap)[MT][2],
                          const jg_u16* const (&xp)[NT], unsigned nibbles) {
  static_assert(128 % GROUP == 0, "a scale group never spans two 128-k blocks");
  constexpr int F = JG_W4_BASE(FMT);  // FMT itself only where the scale is decoded (jg_w4_loop_scale)
  constexpr int QG = GROUP / 32;  // 32-k words per scale group
  constexpr unsigned ONE = T::id == jg_f16::id ? 0x3c003c00u : 0x3f803f80u;
  jg_u32x4 wv[U][MT][2];
#pragma unroll
  for (int u = 0; u < U; ++u)
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h)  // a 128-k block: 64 bytes of each row, this lane's 16 at 16 t
        wv[u][i][h] = !TAIL || 128 * u < kleft ? jg_load_stream(wp[i][h] + 64 * u) : jg_u32x4{0, 0, 0, 0};
  // A block's scales (and zero points) of each row in one load: the device pitches are padded to whole 128-k blocks
  // (quant4.group_pitch) and the pointers start at a block, so GPB values are one aligned, in-bounds load (four
  // fp16 scales of 32 k: 8 bytes). Four 2-byte loads a row and block, each touching the sectors of 8 rows,
  // outnumbered the weight slices' sectors 4 to 1 for q4_min (sessions 17-18: G32 formats the slowest). q4_min's
  // minima follow each block's scales (w4.hip): one load of 2 GPB values (16 bytes at G32) reads both, where a
  // second array took a second load a row and block.
  constexpr int GPB = 128 / GROUP, SB = F == JG_MXFP4 ? 1 : 2;
  constexpr int REC = F == JG_Q4_MIN ? 2 * GPB * SB : GPB * SB;  // scale bytes a row and block
  unsigned long long sv[U][MT][2], av[U][MT][2];
#pragma unroll
  for (int u = 0; u < U; ++u)
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const bool in = !TAIL || 128 * u < kleft;
        av[u][i][h] = 0ull;
        if constexpr (REC == 16) {  // q4_min G32: the scales' 8 bytes, then the minima's
          const ulonglong2 r = in ? __ldg((const ulonglong2*)(sp[i][h] + REC * u)) : ulonglong2{0ull, 0ull};
          sv[u][i][h] = r.x;
          av[u][i][h] = r.y;
        } else if constexpr (F == JG_Q4_MIN) {  // G64 / G128: 8 / 4 bytes, the minima in the upper half
          const unsigned long long r = in ? jg_load_bits<REC>(sp[i][h] + REC * u) : 0ull;
          sv[u][i][h] = r;  // the scales are read from the low GPB * 16 bits
          av[u][i][h] = r >> (8 * GPB * SB);
        } else {
          sv[u][i][h] = in ? jg_load_bits<REC>(sp[i][h] + REC * u) : 0ull;
          if constexpr (F == JG_Q4_ZP) av[u][i][h] = in ? jg_load_bits<GPB>(ap[i][h] + GPB * u) : 0ull;
        }
      }
#pragma unroll
  for (int u = 0; u < U; ++u)
#pragma unroll
    for (int qg = 0; qg < 4; qg += QG) {
      const int kq = 128 * u + 32 * qg;  // the scale group's first k, from the iteration's
      if (TAIL && kq >= kleft) return;   // every later group is past K too
      const int gq = qg / QG;            // the group's place in its block's loaded values
      float c[MT][NT][4], ts[NT][4];  // the group's sums; q4_min: each token's sum over it (all-ones weights)
      unsigned z[MT][2];  // what each row's codes are offset by (q4_zp: the group's zero point)
#pragma unroll
      for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          if constexpr (F == JG_Q4_ZP) z[i][h] = (unsigned)(av[u][i][h] >> (8 * gq)) & 0xffu;
          else z[i][h] = F == JG_Q4_SYM ? 8u : 0u;
        }
#pragma unroll
      for (int q = qg; q < qg + QG; ++q) {
        jg_u32x4 xv[NT];
#pragma unroll
        for (int j = 0; j < NT; ++j) xv[j] = jg_load_cached(xp[j] + 128 * u + 32 * q);
        if constexpr (F == JG_Q4_MIN) {
#pragma unroll
          for (int j = 0; j < NT; ++j) {
            if (q == qg) ts[j][0] = ts[j][1] = ts[j][2] = ts[j][3] = 0.f;
            jg_mma_k16<T>(ts[j], ONE, ONE, ONE, ONE, xv[j].x, xv[j].y);
            jg_mma_k16<T>(ts[j], ONE, ONE, ONE, ONE, xv[j].z, xv[j].w);
          }
        }
#pragma unroll
        for (int i = 0; i < MT; ++i) {
          unsigned a[4], b[4];  // rows g and g + 8
          jg_w4_widen<T, F>(jg_word(wv[u][i][0], q), z[i][0], nibbles, a);
          jg_w4_widen<T, F>(jg_word(wv[u][i][1], q), z[i][1], nibbles, b);
#pragma unroll
          for (int j = 0; j < NT; ++j) {
            if (q == qg) c[i][j][0] = c[i][j][1] = c[i][j][2] = c[i][j][3] = 0.f;
            jg_mma_k16<T>(c[i][j], a[0], b[0], a[1], b[1], xv[j].x, xv[j].y);  // k elements 0..3 of each lane
            jg_mma_k16<T>(c[i][j], a[2], b[2], a[3], b[3], xv[j].z, xv[j].w);  // 4..7
          }
        }
      }
#pragma unroll
      for (int i = 0; i < MT; ++i) {
        float s[2], o[2] = {0.f, 0.f};
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          s[h] = jg_w4_loop_scale<FMT>((unsigned)(sv[u][i][h] >> (8 * SB * gq)) & (SB == 1 ? 0xffu : 0xffffu));
          if constexpr (F == JG_Q4_MIN) o[h] = jg_f16_to_f32((jg_u16)(av[u][i][h] >> (16 * gq)));
        }
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
          for (int r = 0; r < 4; ++r) {
            acc[i][j][r] = __fmaf_rn(c[i][j][r], s[r / 2], acc[i][j][r]);  // c0, c1: row g; c2, c3: row g + 8
            if constexpr (F == JG_Q4_MIN) acc[i][j][r] = __fmaf_rn(ts[j][r], o[r / 2], acc[i][j][r]);
          }
      }
    }
}

// MB: the blocks an SM ptxas is asked to fit (__launch_bounds__' second argument), 1 but for a measured table row's
// `min_blocks` (tables.py): the loop waits on memory, so more blocks an SM can pay for a few spilled bytes on some
// shapes and lose on others (session 32: the same cap +5 % on Qwen2.5-7B's step, -3 % on Llama-3.1-8B's). It moves
// registers only, never the order of a row's sums.
// The kernels' body (jg_w4_nv: one weight; jg_w4_experts_nv: a group of tokens a weight of a stack).
template <class T, int FMT, int GROUP, int NT, int MT, int WK, int U, int SK>
JG_DEVICE void jg_w4_body(
    jg_u16* __restrict__ out, jg_i64 ldo, const jg_u16* __restrict__ x, jg_i64 ldx,
    const unsigned char* __restrict__ w, jg_i64 ldw, const void* __restrict__ scales, jg_i64 lds,
    const void* __restrict__ aux, jg_i64 lda, const jg_u16* __restrict__ bias, jg_i64 bias_ld, int bias_rows,
    int N, int M, int K) {
  constexpr int ROWS = 16 * MT, COLS = 8 * NT, STEP = 128 * U;  // STEP: k a warp covers an iteration
  constexpr int F = JG_W4_BASE(FMT);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  jg_i64 m0;
  int n0;
  jg_block_origin<ROWS, COLS>(N, m0, n0);

  // Per lane, made once: where its weight slices, scales (and zero points / minima) of rows g and g + 8 of each
  // tile start (tail rows read a real row, never stored), and where its tokens start. jg_keep makes each an
  // opaque value: without it NVCC rematerialized the 64-bit row arithmetic (clamp, multiply, add) in every
  // 32-k group, ~45 of the loop's ~115 instructions a group (sm_90a SASS, a loop of 8 groups, session 15: q4_sym
  // 915 -> 497, mxfp4 1289 -> 871; two row tiles 1466 -> 841). Not for q4_zp with two row tiles (q4_min no longer
  // takes two: kernels.w4.nv_heuristic): kept aux pointers spilled there at ptxas's 128-register cap of
  // 512-thread blocks, so there the compiler keeps its choice.
  constexpr bool KEEP = MT == 1 || F == JG_Q4_SYM || F == JG_MXFP4;
  // Tokens past N read token 0's row: their mma columns are never stored (jg_reduce_store), so no per-group test.
  // bytes per scale value (q4_min: a scale and a minimum, quant4.scale_records) / zero point
  constexpr jg_i64 SB = F == JG_MXFP4 ? 1 : F == JG_Q4_MIN ? 4 : 2, AB = 1;
  const unsigned char *wrow[MT][2], *srow[MT][2], *arow[MT][2] = {};
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const jg_i64 r0 = m0 + 16 * i + 8 * h + g, r = r0 < M ? r0 : (jg_i64)M - 1;
      wrow[i][h] = jg_keep<KEEP>(w + r * ldw + 16 * t);
      srow[i][h] = jg_keep<KEEP>((const unsigned char*)scales + r * lds * (F == JG_MXFP4 ? 1 : 2));  // lds: values
      if constexpr (F == JG_Q4_ZP)  // the format with an aux array (else aux is null)
        arow[i][h] = jg_keep<KEEP>((const unsigned char*)aux + r * lda * AB);
    }
  const jg_u16* xrow[NT];
#pragma unroll
  for (int j = 0; j < NT; ++j) {
    const int n = n0 + 8 * j + g;
    xrow[j] = jg_keep<KEEP>(x + (jg_i64)(n < N ? n : 0) * ldx + 8 * t);
  }

  // A zero the compilers cannot see: x's pitch is >= 1 (the host checks), so its sign bit is 0 (K's sign bit they
  // could: the loop's test says K > 0). Shifting by it keeps a value opaque. The widening's mask so stays in one
  // register: ptxas folds a constant (even through an empty asm) and had moved it into a register again before
  // every LOP3.
  const unsigned hidden_zero = (unsigned)((unsigned long long)ldx >> 63);
  const unsigned nibbles = 0x000f000fu >> hidden_zero;
  float acc[MT][NT][4];
  jg_zero(acc);
  unsigned split = 0;
  if constexpr (SK > 1) asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(split));
  // each pointer moves by dk of k: the packed bytes by dk / 2, the scales / aux by dk / GROUP values, x by dk
  auto advance = [&](jg_i64 dk) {
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        wrow[i][h] += dk / 2;
        srow[i][h] += dk / GROUP * SB;
        if constexpr (F == JG_Q4_ZP) arow[i][h] += dk / GROUP * AB;
      }
#pragma unroll
    for (int j = 0; j < NT; ++j) xrow[j] += dk;
  };
  const jg_i64 kstride = (jg_i64)SK * WK * STEP;
  jg_i64 k0 = ((jg_i64)split * WK + warp) * STEP;
  advance(k0);
  // Whole iterations first, with no test of k against K; a warp's last iteration may pass K (K % 32 == 0 only)
  // and takes the tested body (the rows are zero-padded to whole 128-k blocks, x and the scales are not).
  // With two row or token tiles the whole iteration in one straight block lets ptxas hoist every group's token and
  // scale loads to its top, which spilled at the 128-register cap of 512-thread blocks; there the body keeps its
  // per-group test, against a bound the compilers cannot fold (STEP shifted by the hidden zero), so each group is a
  // block of its own. The slices are loaded inside the step (with two tiles, each block's load behind the same
  // test): loading them first and passing them in (session 16) measured 9-10 % slower on the Llama-3.1-8B step at
  // N = 1 and 4, q4_sym and MXFP4 (H100), and loading the next iteration's early (two register sets) slower still.
  constexpr bool TIGHT = NT > 1 || MT > 1;
  const int bound = STEP >> (31 * hidden_zero);
#if __CUDA_ARCH__ >= 900
  // Programmatic dependent launch (dispatch.use_pdl; a no-op without it): this grid may have started while the
  // previous kernel drains, so nothing is read before it has finished (its x, and an out it may still read), and
  // the next kernel may launch once every block is past its main loop (as the skinny family: nv/core.h)
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
  for (; k0 + STEP <= K; k0 += kstride) {
    jg_w4_step<T, FMT, GROUP, NT, MT, U, TIGHT>(acc, bound, wrow, srow, arow, xrow, nibbles);
    advance(kstride);
  }
  if (k0 < K) jg_w4_step<T, FMT, GROUP, NT, MT, U, true>(acc, (int)(K - k0), wrow, srow, arow, xrow, nibbles);
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;");
#endif
  // MXFP4's sums carry 2S (jg_w4_loop_scale): one halving here
  const jg_epilogue e{nullptr, nullptr, 1.f, F == JG_MXFP4 ? 0.5f : 1.f, bias, bias_ld, 0, 0, bias_rows};
  jg_reduce_store<jg_w4_out<T>, NT, MT, WK, SK>(acc, out, ldo, e, N, M, m0, n0, split);
}

template <class T, int FMT, int GROUP, int NT, int MT, int WK, int U, int SK, int MB = 1>
__global__ void __launch_bounds__(32 * WK, MB) JG_CLUSTER_K(SK) jg_w4_nv(
    jg_u16* __restrict__ out, jg_i64 ldo, const jg_u16* __restrict__ x, jg_i64 ldx,
    const unsigned char* __restrict__ w, jg_i64 ldw, const void* __restrict__ scales, jg_i64 lds,
    const void* __restrict__ aux, jg_i64 lda, const jg_u16* __restrict__ bias, jg_i64 bias_ld, int bias_rows,
    int N, int M, int K) {
  jg_w4_body<T, FMT, GROUP, NT, MT, WK, U, SK>(out, ldo, x, ldx, w, ldw, scales, lds, aux, lda, bias, bias_ld,
                                              bias_rows, N, M, K);
}

// A mixture-of-experts layer's experts in one launch (w4gemm.w4_experts_gemm, NOTES idea 11): grid z is the group.
// Group z's N tokens (x + z * gx) run against weight experts[z] of a stack of E (its codes, scales and zero points
// ew, es and ea bytes an expert apart; its bias row eb elements) into out + z * go. Each group runs the body
// unchanged, so its sums are those of a call of its own: the same K order, the same bits. An expert id outside
// 0..E-1 makes the group's outputs NaN: the ids live on the device, where no host check can see them.
template <class T, int FMT, int GROUP, int NT, int MT, int WK, int U, int SK, int MB = 1>
__global__ void __launch_bounds__(32 * WK, MB) JG_CLUSTER_K(SK) jg_w4_experts_nv(
    jg_u16* __restrict__ out, jg_i64 ldo, const jg_u16* __restrict__ x, jg_i64 ldx,
    const unsigned char* __restrict__ w, jg_i64 ldw, const void* __restrict__ scales, jg_i64 lds,
    const void* __restrict__ aux, jg_i64 lda, const jg_u16* __restrict__ bias, jg_i64 bias_ld, int bias_rows,
    int N, int M, int K, const int* __restrict__ experts, int E, jg_i64 gx, jg_i64 go, jg_i64 ew, jg_i64 es,
    jg_i64 ea, jg_i64 eb) {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");  // the ids may be the kernel before's output
#endif
  const jg_i64 z = blockIdx.z;
  const int e = experts[z];
  out += z * go;
  if (e < 0 || e >= E) {
    constexpr int ROWS = 16 * MT, COLS = 8 * NT;
    jg_i64 m0;
    int n0;
    jg_block_origin<ROWS, COLS>(N, m0, n0);
    const jg_u16 nan = T::id == jg_bf16::id ? 0x7fc0 : 0x7e00;
    for (int i = threadIdx.x; i < ROWS * COLS; i += blockDim.x) {
      const jg_i64 m = m0 + i % ROWS;
      const int n = n0 + i / ROWS;
      if (m < M && n < N) out[n * ldo + m] = nan;
    }
    return;
  }
  jg_w4_body<T, FMT, GROUP, NT, MT, WK, U, SK>(
      out, ldo, x + z * gx, ldx, w + e * ew, ldw, (const unsigned char*)scales + e * es, lds,
      aux ? (const unsigned char*)aux + e * ea : nullptr, lda, bias ? bias + e * eb : nullptr, bias_ld, bias_rows,
      N, M, K);
}
