// What every AMD body shares: the wave's fixed-order sum and the epilogue (bias in fp32, the one rounding).
#pragma once

// butterfly over the wave: a fixed tree, so the order of additions never changes; a + b == b + a bit for
// bit, so every lane ends with the same bits
template <int WAVE>
JG_DEVICE float jg_wave_sum(float v) {
#pragma unroll
  for (int s = WAVE / 2; s > 0; s >>= 1) v += jg_shfl_xor(v, s, WAVE);
  return v;
}

// one finished sum of token n, row m: its bias (one row for every token, or rows of pitch bias_ld) added in
// fp32 when there is one, then the one rounding. The bias index is computed only under the test.
template <class T>
JG_DEVICE jg_u16 jg_finish(float v, const jg_u16* bias, jg_i64 bias_ld, int bias_rows, int n, jg_i64 m) {
  if (bias) v += jg_to_f32<T>(bias[(bias_rows == 1 ? 0 : (jg_i64)n * bias_ld) + m]);
  return jg_from_f32<T>(v);
}

// the same for a kernel that steps its own bias offset (bias + at: token n's row m)
template <class T>
JG_DEVICE jg_u16 jg_finish_at(float v, const jg_u16* bias, jg_i64 at) {
  if (bias) v += jg_to_f32<T>(bias[at]);
  return jg_from_f32<T>(v);
}
