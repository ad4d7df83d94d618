// x @ W^T for weights in group formats (quant/formats.py): w = scale[g] * q + offset[g] per group.
//
// Weight-only: x stays float (bf16 input is widened to float32 once), each group of q is
// widened to float32 once per tile of up to 8 input rows, and
//   out[m, n] = sum_g scale[n, g] * dot(x[m, g], q[n, g]) + sum_g offset[n, g] * sum(x[m, g])
// in float32. Output rows are split over torch's thread pool. `group_dequant` writes rows of
// the float weight as bf16, for the large-batch path (dequantized tiles into oneDNN's GEMM).
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <vector>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

namespace {

constexpr int kTile = 8;  // input rows per pass over the weights

#ifdef __AVX512F__
// 16 codes of group g starting at element `half * 16` -> float32.
template <int Bits>
inline __m512 codes16(const uint8_t* row, int64_t group, int64_t g, int half) {
  if (Bits == 4) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + g * 16));
    __m512i v = _mm512_cvtepu8_epi32(raw);
    v = half == 0 ? _mm512_and_si512(v, _mm512_set1_epi32(0xF)) : _mm512_srli_epi32(v, 4);
    return _mm512_cvtepi32_ps(v);
  }
  const __m128i raw =
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + g * group + half * 16));
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(raw));
}

// The codes of group g as float32: w0 = elements 0..15, w1 = 16..31 (Group 32; one load
// of the 16 packed bytes for 4-bit codes).
template <int Bits, int Group>
inline void codes_group(const uint8_t* row, int64_t g, __m512& w0, __m512& w1) {
  if (Bits == 4) {
    const __m512i v = _mm512_cvtepu8_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + g * 16)));
    w0 = _mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(0xF)));
    w1 = _mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4));
    return;
  }
  w0 = codes16<Bits>(row, Group, g, 0);
  w1 = Group == 32 ? codes16<Bits>(row, Group, g, 1) : w0;
}

// NB output rows times Tile input rows per pass (NB * Tile independent accumulators, all in
// registers: compile-time bounds). M is a multiple of Tile (the caller pads x with zero rows).
template <int Bits, int Group, int NB, int Tile>
void rows_block(const float* x, int64_t M, int64_t K, const uint8_t* q, int64_t row_bytes,
                const float* scale, int64_t n0, int64_t G, float* out, int64_t N) {
  for (int64_t m0 = 0; m0 < M; m0 += Tile) {
    __m512 acc[NB][Tile];
    for (int b = 0; b < NB; ++b)
      for (int t = 0; t < Tile; ++t) acc[b][t] = _mm512_setzero_ps();
    for (int64_t g = 0; g < G; ++g) {
      for (int b = 0; b < NB; ++b) {
        const uint8_t* row = q + (n0 + b) * row_bytes;
        const __m512 sg = _mm512_set1_ps(scale[(n0 + b) * G + g]);
        __m512 w0, w1;
        codes_group<Bits, Group>(row, g, w0, w1);
        if (Group == 32) {
          for (int t = 0; t < Tile; ++t) {
            const float* xr = x + (m0 + t) * K + g * Group;
            __m512 d = _mm512_mul_ps(w0, _mm512_loadu_ps(xr));
            d = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xr + 16), d);
            acc[b][t] = _mm512_fmadd_ps(d, sg, acc[b][t]);
          }
        } else {
          for (int t = 0; t < Tile; ++t) {
            const float* xr = x + (m0 + t) * K + g * Group;
            acc[b][t] = _mm512_fmadd_ps(_mm512_mul_ps(w0, _mm512_loadu_ps(xr)), sg, acc[b][t]);
          }
        }
      }
    }
    for (int b = 0; b < NB; ++b)
      for (int t = 0; t < Tile; ++t) out[(m0 + t) * N + n0 + b] = _mm512_reduce_add_ps(acc[b][t]);
  }
}

template <int Bits, int Group, int NB, int Tile>
void rows_range(const float* x, int64_t M, int64_t K, const uint8_t* q, int64_t row_bytes,
                const float* scale, int64_t n_begin, int64_t n_end, int64_t G, float* out,
                int64_t N) {
  int64_t n = n_begin;
  for (; n + NB <= n_end; n += NB)
    rows_block<Bits, Group, NB, Tile>(x, M, K, q, row_bytes, scale, n, G, out, N);
  for (; n < n_end; ++n)
    rows_block<Bits, Group, 1, Tile>(x, M, K, q, row_bytes, scale, n, G, out, N);
}

// The padded row count the AVX-512 path computes for M input rows.
inline int64_t padded_rows(int64_t M) { return M <= 2 ? M : (M + 3) / 4 * 4; }

template <int Bits, int Group>
void rows_avx512(const float* x, int64_t M, int64_t K, const uint8_t* q, int64_t row_bytes,
                 const float* scale, int64_t n_begin, int64_t n_end, int64_t G, float* out,
                 int64_t N) {
  if (M == 1)
    rows_range<Bits, Group, 4, 1>(x, M, K, q, row_bytes, scale, n_begin, n_end, G, out, N);
  else if (M == 2)
    rows_range<Bits, Group, 4, 2>(x, M, K, q, row_bytes, scale, n_begin, n_end, G, out, N);
  else
    rows_range<Bits, Group, 2, 4>(x, M, K, q, row_bytes, scale, n_begin, n_end, G, out, N);
}

inline void store_bf16(at::BFloat16* p, __m512 v) {  // round to nearest even
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_srli_epi32(
      _mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF))), 16);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(r));
}

template <int Bits, int Group>
void dequant_row_avx512(const uint8_t* row, const float* s, const float* off, int64_t G,
                        at::BFloat16* out) {
  for (int64_t g = 0; g < G; ++g) {
    const __m512 sg = _mm512_set1_ps(s[g]);
    const __m512 og = _mm512_set1_ps(off != nullptr ? off[g] : 0.f);
    for (int half = 0; half < Group / 16; ++half) {
      const __m512 w = _mm512_fmadd_ps(codes16<Bits>(row, Group, g, half), sg, og);
      store_bf16(out + g * Group + half * 16, w);
    }
  }
}
#endif

inline float code_at(const uint8_t* row, int bits, int64_t group, int64_t k) {
  if (bits == 8) return static_cast<float>(reinterpret_cast<const int8_t*>(row)[k]);
  const int64_t g = k / 32, j = k % 32;
  const uint8_t b = row[g * 16 + (j % 16)];
  return static_cast<float>(j < 16 ? (b & 0xF) : (b >> 4));
}

void rows_portable(const float* x, int64_t M, int64_t K, const uint8_t* q, int64_t row_bytes,
                   const float* scale, int bits, int64_t group, int64_t n_begin, int64_t n_end,
                   int64_t G, float* out, int64_t N) {
  for (int64_t n = n_begin; n < n_end; ++n) {
    const uint8_t* row = q + n * row_bytes;
    for (int64_t m = 0; m < M; ++m) {
      float total = 0.f;
      for (int64_t g = 0; g < G; ++g) {
        float d = 0.f;
        for (int64_t j = 0; j < group; ++j)
          d += code_at(row, bits, group, g * group + j) * x[m * K + g * group + j];
        total += d * scale[n * G + g];
      }
      out[m * N + n] = total;
    }
  }
}

}  // namespace

// x [M, K] bf16/float32; q uint8 [N, K/2] (bits 4) or int8 [N, K] (bits 8); scale, offset
// float32 [N, K/group] -> [M, N] in x's dtype.
torch::Tensor group_linear(const torch::Tensor& x, const torch::Tensor& q,
                           const torch::Tensor& scale, const c10::optional<torch::Tensor>& offset,
                           int64_t bits, int64_t group) {
  TORCH_CHECK(x.dim() == 2 && q.dim() == 2 && scale.dim() == 2, "group_linear: 2-D tensors");
  TORCH_CHECK(scale.scalar_type() == at::kFloat, "group_linear: float32 scales");
  TORCH_CHECK((bits == 4 && group == 32) || (bits == 8 && (group == 16 || group == 32)),
              "group_linear: bits 4 with group 32, or bits 8 with group 16 or 32");
  const int64_t M = x.size(0), K = x.size(1), N = q.size(0), G = scale.size(1);
  TORCH_CHECK(G * group == K && scale.size(0) == N, "group_linear: scale shape");
  TORCH_CHECK(q.size(1) * (bits == 4 ? 2 : 1) == K, "group_linear: q shape");
#ifdef __AVX512F__
  const int64_t Mp = padded_rows(M);
#else
  const int64_t Mp = M;
#endif
  auto xf = x.to(at::kFloat).contiguous();
  if (Mp != M) xf = at::constant_pad_nd(xf, {0, 0, 0, Mp - M});
  const auto qc = q.contiguous();
  const auto sc = scale.contiguous();
  auto out = torch::empty({Mp, N}, x.options().dtype(at::kFloat));
  const float* xp = xf.data_ptr<float>();
  const auto* qp = reinterpret_cast<const uint8_t*>(qc.data_ptr());
  const int64_t row_bytes = qc.size(1);
  float* op = out.data_ptr<float>();
  at::parallel_for(0, N, 16, [&](int64_t begin, int64_t end) {
#ifdef __AVX512F__
    if (bits == 4)
      rows_avx512<4, 32>(xp, Mp, K, qp, row_bytes, sc.data_ptr<float>(), begin, end, G, op, N);
    else if (group == 32)
      rows_avx512<8, 32>(xp, Mp, K, qp, row_bytes, sc.data_ptr<float>(), begin, end, G, op, N);
    else
      rows_avx512<8, 16>(xp, Mp, K, qp, row_bytes, sc.data_ptr<float>(), begin, end, G, op, N);
#else
    rows_portable(xp, M, K, qp, row_bytes, sc.data_ptr<float>(), bits, group, begin, end, G, op,
                  N);
#endif
  });
  if (Mp != M) out = out.narrow(0, 0, M);
  if (offset.has_value()) {  // + (sum of x over each group) @ offset^T: one small GEMM
    const auto xsum = xf.narrow(0, 0, M).view({M, G, group}).sum(2);
    out.addmm_(xsum, offset->t());
  }
  return x.scalar_type() == at::kFloat ? out : out.to(x.scalar_type());
}

// Rows [begin, end) of the float weight, as bf16 [end - begin, K].
torch::Tensor group_dequant(const torch::Tensor& q, const torch::Tensor& scale,
                            const c10::optional<torch::Tensor>& offset, int64_t bits,
                            int64_t group, int64_t begin, int64_t end) {
  const int64_t G = scale.size(1), K = G * group, rows = end - begin;
  TORCH_CHECK(begin >= 0 && end <= q.size(0) && rows > 0, "group_dequant: row range");
  auto out = torch::empty({rows, K}, scale.options().dtype(at::kBFloat16));
  const auto qc = q.contiguous();
  const auto sc = scale.contiguous();
  const auto oc = offset.has_value() ? offset->contiguous() : torch::Tensor();
  const auto* qp = reinterpret_cast<const uint8_t*>(qc.data_ptr());
  const int64_t row_bytes = qc.size(1);
  const float* sp = sc.data_ptr<float>();
  const float* offp = oc.defined() ? oc.data_ptr<float>() : nullptr;
  auto* op = out.data_ptr<at::BFloat16>();
  at::parallel_for(0, rows, 4, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = begin + r;
      const uint8_t* row = qp + n * row_bytes;
#ifdef __AVX512F__
      const float* offn = offp != nullptr ? offp + n * G : nullptr;
      if (bits == 4)
        dequant_row_avx512<4, 32>(row, sp + n * G, offn, G, op + r * K);
      else if (group == 32)
        dequant_row_avx512<8, 32>(row, sp + n * G, offn, G, op + r * K);
      else
        dequant_row_avx512<8, 16>(row, sp + n * G, offn, G, op + r * K);
      continue;
#endif
      for (int64_t k = 0; k < K; ++k) {
        const int64_t g = k / group;
        float w = sp[n * G + g] * code_at(row, static_cast<int>(bits), group, k);
        if (offp != nullptr) w += offp[n * G + g];
        op[r * K + k] = static_cast<at::BFloat16>(w);
      }
    }
  });
  return out;
}

bool group_linear_avx512() {
#ifdef __AVX512F__
  return true;
#else
  return false;
#endif
}
