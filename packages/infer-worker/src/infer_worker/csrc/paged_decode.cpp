// Paged decode attention for the CPU: reads K/V pages in place through the block tables.
// With AVX-512 (and head_dim a multiple of 16, up to 256; up to 8 query heads per kv head)
// each (sequence, kv head) item runs vectorized: K/V rows converted to float32 once for the
// whole query-head group, a polynomial exp for the softmax. Otherwise a portable scalar loop.
// int8 pages (paged_decode_int8) carry one scale per (token, kv head): rows are converted to
// float32 in registers and the scale applied to the row's dot product (K) or to its softmax
// weight (V); no float copy of a page is ever made.

// The scale of row i, or 1 for pages that are not quantized (s == nullptr).
static inline float row_scale(const float* s, int64_t i) { return s ? s[i] : 1.f; }
static inline float row_scale(const at::BFloat16* s, int64_t i) {
  return s ? static_cast<float>(s[i]) : 1.f;
}

#ifdef __AVX512F__
// exp(x) for x <= 0 (scores minus their max): 2^n * 2^f, f in [-0.5, 0.5], degree-6 Taylor
// polynomial of 2^f (relative error < 2e-7); x below -87 gives ~0.
static inline __m512 exp_nonpositive(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504f));
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(t, n);
  __m512 p = _mm512_set1_ps(1.540353e-4f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504109e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022651e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// One (sequence, kv head) item: G query heads of D (multiple of 16, <= 256) over the tokens
// t0 .. t0 + L - 1 (tokens before t0 are outside the window and never read).
// q: the G query rows (already scaled), scores: G * L floats of scratch, out: G * D floats;
// cap > 0 soft-caps the scores (tanh(s / cap) * cap) before the softmax; ks / vs: the row
// scales of int8 pages (nullptr otherwise).
template <typename T, typename TS>
static void decode_item_avx512(const float* q, const T* kp, const T* vp, const TS* ks,
                               const TS* vs, const int32_t* table, int64_t t0, int64_t L,
                               int64_t BS, int64_t KVH, int64_t h, int64_t G, int64_t D,
                               float cap, float* scores, float* out) {
  const int64_t C = D / 16;
  __m512 qv[8 * 16];
  for (int64_t g = 0; g < G; ++g)
    for (int64_t c = 0; c < C; ++c) qv[g * C + c] = _mm512_loadu_ps(q + g * D + c * 16);
  for (int64_t j = 0; j < L; ++j) {
    const int64_t t = t0 + j;
    const int64_t slot = static_cast<int64_t>(table[t / BS]) * BS + t % BS;
    const T* k = kp + (slot * KVH + h) * D;
    __m512 acc[8];
    for (int64_t g = 0; g < G; ++g) acc[g] = _mm512_setzero_ps();
    for (int64_t c = 0; c < C; ++c) {
      const __m512 kc = load16(k + c * 16);
      for (int64_t g = 0; g < G; ++g) acc[g] = _mm512_fmadd_ps(qv[g * C + c], kc, acc[g]);
    }
    const float kscale = row_scale(ks, slot * KVH + h);
    for (int64_t g = 0; g < G; ++g) scores[g * L + j] = _mm512_reduce_add_ps(acc[g]) * kscale;
  }
  if (cap > 0.f)
    for (int64_t i = 0; i < G * L; ++i) scores[i] = std::tanh(scores[i] / cap) * cap;
  for (int64_t g = 0; g < G; ++g) {
    float* row = scores + g * L;
    __m512 mx = _mm512_set1_ps(-INFINITY);
    int64_t t = 0;
    for (; t + 16 <= L; t += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(row + t));
    float m = _mm512_reduce_max_ps(mx);
    for (; t < L; ++t) m = std::max(m, row[t]);
    const __m512 mv = _mm512_set1_ps(m);
    __m512 sum = _mm512_setzero_ps();
    for (t = 0; t < L; t += 16) {
      const __mmask16 mask = L - t >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (L - t)) - 1);
      const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, row + t), mv));
      _mm512_mask_storeu_ps(row + t, mask, e);
      sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(mask, e));
    }
    const float inv = 1.f / _mm512_reduce_add_ps(sum);
    for (t = 0; t < L; ++t) row[t] *= inv;
  }
  __m512 av[8 * 16];
  for (int64_t i = 0; i < G * C; ++i) av[i] = _mm512_setzero_ps();
  for (int64_t j = 0; j < L; ++j) {
    const int64_t t = t0 + j;
    const int64_t slot = static_cast<int64_t>(table[t / BS]) * BS + t % BS;
    const T* v = vp + (slot * KVH + h) * D;
    const float vscale = row_scale(vs, slot * KVH + h);
    __m512 p[8];
    for (int64_t g = 0; g < G; ++g) p[g] = _mm512_set1_ps(scores[g * L + j] * vscale);
    for (int64_t c = 0; c < C; ++c) {
      const __m512 vc = load16(v + c * 16);
      for (int64_t g = 0; g < G; ++g) av[g * C + c] = _mm512_fmadd_ps(p[g], vc, av[g * C + c]);
    }
  }
  for (int64_t i = 0; i < G * C; ++i) _mm512_storeu_ps(out + i * 16, av[i]);
}
#endif

// TQ: query and output, T: pages, TS: row scales (ks / vs nullptr when the pages are not int8).
template <typename TQ, typename T, typename TS>
static void decode_impl(const torch::Tensor& q, const torch::Tensor& kc, const torch::Tensor& vc,
                        const TS* ks, const TS* vs, const torch::Tensor& tables,
                        const torch::Tensor& lens, double scale, int64_t window, double softcap,
                        torch::Tensor& out) {
  const int64_t S = q.size(0), H = q.size(1), D = q.size(2);
  const int64_t BS = kc.size(1), KVH = kc.size(2), G = H / KVH, W = tables.size(1);
  const TQ* qp = q.data_ptr<TQ>();
  const T* kp = kc.data_ptr<T>();
  const T* vp = vc.data_ptr<T>();
  const int32_t* tp = tables.data_ptr<int32_t>();
  const int32_t* lp = lens.data_ptr<int32_t>();
  TQ* op = out.data_ptr<TQ>();
  const float sc = static_cast<float>(scale);
  const float cap = static_cast<float>(softcap);
  TORCH_CHECK(tables.size(0) == S && lens.size(0) == S && kc.size(0) == vc.size(0),
              "paged_decode: shapes disagree");
  for (int64_t s = 0; s < S; ++s) {  // every page read must exist: no out-of-bounds reads
    TORCH_CHECK(lp[s] >= 1 && lp[s] <= W * BS, "paged_decode: seq_len outside the block table");
    for (int64_t b = 0; b < (lp[s] + BS - 1) / BS; ++b)
      TORCH_CHECK(tp[s * W + b] >= 0 && tp[s * W + b] < kc.size(0), "paged_decode: bad block id");
  }
  const bool vectorized = D % 16 == 0 && D <= 256 && G <= 8;
  (void)vectorized;
  at::parallel_for(0, S * KVH, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> qf(G * D), acc(G * D), scores;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t s = item / KVH, h = item % KVH;
      // the window: the last `window` positions up to the new token, earlier ones unread
      const int64_t t0 = window > 0 && lp[s] > window ? lp[s] - window : 0;
      const int64_t L = lp[s] - t0;
      scores.resize(G * L);
      for (int64_t g = 0; g < G; ++g)
        for (int64_t d = 0; d < D; ++d)
          qf[g * D + d] = static_cast<float>(qp[(s * H + h * G + g) * D + d]) * sc;
#ifdef __AVX512F__
      if (vectorized) {
        decode_item_avx512(qf.data(), kp, vp, ks, vs, tp + s * W, t0, L, BS, KVH, h, G, D, cap,
                           scores.data(), acc.data());
        for (int64_t i = 0; i < G * D; ++i)
          op[(s * H + h * G) * D + i] = static_cast<TQ>(acc[i]);
        continue;
      }
#endif
      for (int64_t j = 0; j < L; ++j) {
        const int64_t t = t0 + j;
        const int64_t slot = static_cast<int64_t>(tp[s * W + t / BS]) * BS + t % BS;
        const T* k = kp + (slot * KVH + h) * D;
        const float kscale = row_scale(ks, slot * KVH + h);
        for (int64_t g = 0; g < G; ++g) {
          const float* qg = qf.data() + g * D;
          float dot = 0.f;
#pragma omp simd reduction(+ : dot)
          for (int64_t d = 0; d < D; ++d) dot += qg[d] * static_cast<float>(k[d]);
          dot *= kscale;
          scores[g * L + j] = cap > 0.f ? std::tanh(dot / cap) * cap : dot;
        }
      }
      for (int64_t g = 0; g < G; ++g) {
        float* row = scores.data() + g * L;
        float mx = -INFINITY, sum = 0.f;
        for (int64_t t = 0; t < L; ++t) mx = std::max(mx, row[t]);
        for (int64_t t = 0; t < L; ++t) { row[t] = std::exp(row[t] - mx); sum += row[t]; }
        const float inv = 1.f / sum;
        for (int64_t t = 0; t < L; ++t) row[t] *= inv;
      }
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t j = 0; j < L; ++j) {
        const int64_t t = t0 + j;
        const int64_t slot = static_cast<int64_t>(tp[s * W + t / BS]) * BS + t % BS;
        const T* v = vp + (slot * KVH + h) * D;
        const float vscale = row_scale(vs, slot * KVH + h);
        for (int64_t g = 0; g < G; ++g) {
          const float p = scores[g * L + j] * vscale;
          float* a = acc.data() + g * D;
#pragma omp simd
          for (int64_t d = 0; d < D; ++d) a[d] += p * static_cast<float>(v[d]);
        }
      }
      for (int64_t g = 0; g < G; ++g)
        for (int64_t d = 0; d < D; ++d)
          op[(s * H + h * G + g) * D + d] = static_cast<TQ>(acc[g * D + d]);
    }
  });
}

static void check_decode_args(const torch::Tensor& q, const torch::Tensor& kc,
                              const torch::Tensor& vc, const torch::Tensor& tables,
                              const torch::Tensor& lens) {
  TORCH_CHECK(q.is_contiguous() && kc.is_contiguous() && vc.is_contiguous(), "contiguous inputs");
  TORCH_CHECK(q.dim() == 3 && kc.dim() == 4 && vc.sizes() == kc.sizes() && tables.dim() == 2,
              "paged_decode: q [S,H,D], caches [blocks,block,kv_heads,D], tables [S,W]");
  TORCH_CHECK(q.size(2) == kc.size(3) && q.size(1) % kc.size(2) == 0, "paged_decode: head shapes");
  TORCH_CHECK(tables.scalar_type() == torch::kInt32 && lens.scalar_type() == torch::kInt32,
              "int32 tables and lens");
}

// window > 0: each query reads only the last `window` positions; softcap > 0: logits capped.
torch::Tensor paged_decode(torch::Tensor q, torch::Tensor kc, torch::Tensor vc,
                           torch::Tensor tables, torch::Tensor lens, double scale,
                           int64_t window, double softcap) {
  check_decode_args(q, kc, vc, tables, lens);
  TORCH_CHECK(kc.scalar_type() == q.scalar_type() && vc.scalar_type() == q.scalar_type(),
              "paged_decode: q and caches must share a dtype");
  auto t = tables.contiguous();
  auto l = lens.contiguous();
  auto out = torch::empty_like(q);
  const float* none = nullptr;
  if (q.scalar_type() == torch::kBFloat16) {
    decode_impl<at::BFloat16, at::BFloat16>(q, kc, vc, none, none, t, l, scale, window, softcap,
                                            out);
  } else if (q.scalar_type() == torch::kFloat32) {
    decode_impl<float, float>(q, kc, vc, none, none, t, l, scale, window, softcap, out);
  } else {
    TORCH_CHECK(false, "paged_decode: float32 or bfloat16 only");
  }
  return out;
}

// int8 pages kc / vc [blocks, block, kv_heads, D] with row scales ks / vs [blocks, block,
// kv_heads] (float32): key row = kc * ks, value row = vc * vs. q is float32 or bfloat16.
torch::Tensor paged_decode_int8(torch::Tensor q, torch::Tensor kc, torch::Tensor vc,
                                torch::Tensor ks, torch::Tensor vs, torch::Tensor tables,
                                torch::Tensor lens, double scale, int64_t window,
                                double softcap) {
  check_decode_args(q, kc, vc, tables, lens);
  TORCH_CHECK(kc.scalar_type() == torch::kInt8 && vc.scalar_type() == torch::kInt8,
              "paged_decode_int8: int8 caches");
  TORCH_CHECK(ks.is_contiguous() && vs.is_contiguous() && ks.dim() == 3 &&
                  ks.sizes() == kc.sizes().slice(0, 3) && vs.sizes() == ks.sizes(),
              "paged_decode_int8: scales [blocks, block, kv_heads], contiguous");
  TORCH_CHECK(ks.scalar_type() == vs.scalar_type(), "paged_decode_int8: scales share a dtype");
  auto t = tables.contiguous();
  auto l = lens.contiguous();
  auto out = torch::empty_like(q);
  const bool bf16_scales = ks.scalar_type() == torch::kBFloat16;
  TORCH_CHECK(bf16_scales || ks.scalar_type() == torch::kFloat32,
              "paged_decode_int8: float32 or bfloat16 scales");
  TORCH_CHECK(q.scalar_type() == torch::kBFloat16 || q.scalar_type() == torch::kFloat32,
              "paged_decode_int8: float32 or bfloat16 queries only");
  if (bf16_scales) {
    const auto* ksp = ks.data_ptr<at::BFloat16>();
    const auto* vsp = vs.data_ptr<at::BFloat16>();
    if (q.scalar_type() == torch::kBFloat16)
      decode_impl<at::BFloat16, int8_t>(q, kc, vc, ksp, vsp, t, l, scale, window, softcap, out);
    else
      decode_impl<float, int8_t>(q, kc, vc, ksp, vsp, t, l, scale, window, softcap, out);
  } else {
    const float* ksp = ks.data_ptr<float>();
    const float* vsp = vs.data_ptr<float>();
    if (q.scalar_type() == torch::kBFloat16)
      decode_impl<at::BFloat16, int8_t>(q, kc, vc, ksp, vsp, t, l, scale, window, softcap, out);
    else
      decode_impl<float, int8_t>(q, kc, vc, ksp, vsp, t, l, scale, window, softcap, out);
  }
  return out;
}
