// W8A8 linear for the CPU: int8 weights (one scale per output row) times the input quantized to
// int8 in two passes, one int8 GEMM (oneDNN VNNI through at::_int_mm) for both passes.
//
// Each input row x is split as x = s1 * q1 + s2 * q2 + e: q1 = round(x / s1) with
// s1 = max|x| / 127, q2 = round(r / s2) for the residual r = x - s1 * q1 with s2 = max|r| / 127,
// so |e| <= s2 / 2 <= max|x| / 2^15 (about bf16's own precision, whatever the outliers).
#ifdef __AVX512F__
// One row, K a multiple of 16: the same arithmetic as the portable loop below.
template <typename T>
static void quantize_row_avx512(const T* row, int64_t K, float* r, int8_t* q1, int8_t* q2,
                                float* s1_out, float* s2_out) {
  const __m512 sign = _mm512_set1_ps(-0.0f);
  __m512 mx = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 16) {
    const __m512 v = load16(row + k);
    _mm512_storeu_ps(r + k, v);
    mx = _mm512_max_ps(mx, _mm512_andnot_ps(sign, v));
  }
  const float amax = _mm512_reduce_max_ps(mx);
  const float s1 = amax / 127.f, inv1 = amax > 0.f ? 127.f / amax : 0.f;
  const __m512 vs1 = _mm512_set1_ps(s1), vinv1 = _mm512_set1_ps(inv1);
  __m512 mx2 = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 16) {
    const __m512 v = _mm512_loadu_ps(r + k);
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(v, vinv1),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q1 + k), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(n)));
    const __m512 res = _mm512_fnmadd_ps(n, vs1, v);
    _mm512_storeu_ps(r + k, res);
    mx2 = _mm512_max_ps(mx2, _mm512_andnot_ps(sign, res));
  }
  const float amax2 = _mm512_reduce_max_ps(mx2);
  const float inv2 = amax2 > 0.f ? 127.f / amax2 : 0.f;
  const __m512 vinv2 = _mm512_set1_ps(inv2);
  for (int64_t k = 0; k < K; k += 16) {
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_loadu_ps(r + k), vinv2),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q2 + k), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(n)));
  }
  *s1_out = s1;
  *s2_out = amax2 / 127.f;
}
#endif

template <typename T>
static void quantize_two_pass(const T* x, int64_t M, int64_t K, int8_t* q, float* s) {
  at::parallel_for(0, M, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> r(K);
    for (int64_t m = begin; m < end; ++m) {
      const T* row = x + m * K;
#ifdef __AVX512F__
      if (K % 16 == 0) {
        quantize_row_avx512(row, K, r.data(), q + m * K, q + (M + m) * K, s + m, s + M + m);
        continue;
      }
#endif
      float amax = 0.f;
      for (int64_t k = 0; k < K; ++k) {
        r[k] = static_cast<float>(row[k]);
        amax = std::max(amax, std::fabs(r[k]));
      }
      const float s1 = amax / 127.f, inv1 = amax > 0.f ? 127.f / amax : 0.f;
      int8_t* q1 = q + m * K;
      float amax2 = 0.f;
      for (int64_t k = 0; k < K; ++k) {
        const float v = std::nearbyint(r[k] * inv1);
        q1[k] = static_cast<int8_t>(v);
        r[k] -= v * s1;
        amax2 = std::max(amax2, std::fabs(r[k]));
      }
      const float s2 = amax2 / 127.f, inv2 = amax2 > 0.f ? 127.f / amax2 : 0.f;
      int8_t* q2 = q + (M + m) * K;
#pragma omp simd
      for (int64_t k = 0; k < K; ++k) q2[k] = static_cast<int8_t>(std::nearbyint(r[k] * inv2));
      s[m] = s1;
      s[M + m] = s2;
    }
  });
}

template <typename O>
static void dequantize_two_pass(const int32_t* acc, const float* s, const float* ws,
                                const float* bias, int64_t M, int64_t N, O* out) {
  at::parallel_for(0, M, 4, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m) {
      const int32_t* a1 = acc + m * N;
      const int32_t* a2 = acc + (M + m) * N;
      const float s1 = s[m], s2 = s[M + m];
      O* o = out + m * N;
#ifdef __AVX512F__
      if (N % 16 == 0) {
        const __m512 v1 = _mm512_set1_ps(s1), v2 = _mm512_set1_ps(s2);
        for (int64_t n = 0; n < N; n += 16) {
          const __m512 a = _mm512_cvtepi32_ps(_mm512_loadu_si512(a1 + n));
          const __m512 b = _mm512_cvtepi32_ps(_mm512_loadu_si512(a2 + n));
          __m512 v = _mm512_mul_ps(_mm512_loadu_ps(ws + n),
                                   _mm512_fmadd_ps(v1, a, _mm512_mul_ps(v2, b)));
          if (bias != nullptr) v = _mm512_add_ps(v, _mm512_loadu_ps(bias + n));
          store16(o + n, v);
        }
        continue;
      }
#endif
      if (bias != nullptr) {
#pragma omp simd
        for (int64_t n = 0; n < N; ++n)
          o[n] = static_cast<O>(ws[n] * (s1 * static_cast<float>(a1[n]) +
                                         s2 * static_cast<float>(a2[n])) + bias[n]);
      } else {
#pragma omp simd
        for (int64_t n = 0; n < N; ++n)
          o[n] = static_cast<O>(ws[n] * (s1 * static_cast<float>(a1[n]) +
                                         s2 * static_cast<float>(a2[n])));
      }
    }
  });
}

torch::Tensor int8_linear(torch::Tensor x, torch::Tensor qweight, torch::Tensor wscale,
                          c10::optional<torch::Tensor> bias, bool float_out) {
  TORCH_CHECK(x.dim() == 2 && qweight.dim() == 2 && x.size(1) == qweight.size(1),
              "int8_linear: x [M, K] and qweight [N, K]");
  TORCH_CHECK(qweight.scalar_type() == torch::kInt8 && qweight.is_contiguous(),
              "int8_linear: a contiguous int8 weight");
  TORCH_CHECK(wscale.scalar_type() == torch::kFloat32 && wscale.numel() == qweight.size(0),
              "int8_linear: one float32 scale per output row");
  TORCH_CHECK(x.scalar_type() == torch::kBFloat16 || x.scalar_type() == torch::kFloat32,
              "int8_linear: float32 or bfloat16 input");
  auto xc = x.contiguous();
  const int64_t M = xc.size(0), K = xc.size(1), N = qweight.size(0);
  auto out = torch::empty({M, N}, x.options().dtype(float_out ? torch::kFloat32 : x.scalar_type()));
  if (M == 0) return out;
  auto q = torch::empty({2 * M, K}, x.options().dtype(torch::kInt8));
  auto s = torch::empty({2 * M}, x.options().dtype(torch::kFloat32));
  if (x.scalar_type() == torch::kBFloat16)
    quantize_two_pass(xc.data_ptr<at::BFloat16>(), M, K, q.data_ptr<int8_t>(), s.data_ptr<float>());
  else
    quantize_two_pass(xc.data_ptr<float>(), M, K, q.data_ptr<int8_t>(), s.data_ptr<float>());
  auto acc = at::_int_mm(q, qweight.t());
  torch::Tensor b;
  const float* bp = nullptr;
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->numel() == N, "int8_linear: bias size");
    b = bias->to(torch::kFloat32).contiguous();
    bp = b.data_ptr<float>();
  }
  auto wsc = wscale.contiguous();
  if (out.scalar_type() == torch::kFloat32)
    dequantize_two_pass(acc.data_ptr<int32_t>(), s.data_ptr<float>(), wsc.data_ptr<float>(), bp,
                        M, N, out.data_ptr<float>());
  else
    dequantize_two_pass(acc.data_ptr<int32_t>(), s.data_ptr<float>(), wsc.data_ptr<float>(), bp,
                        M, N, out.data_ptr<at::BFloat16>());
  return out;
}
