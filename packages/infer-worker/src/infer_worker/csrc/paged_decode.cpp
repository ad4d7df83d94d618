// Paged decode attention for the CPU: reads K/V pages in place through the block tables.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <vector>

template <typename T>
static void decode_impl(const torch::Tensor& q, const torch::Tensor& kc, const torch::Tensor& vc,
                        const torch::Tensor& tables, const torch::Tensor& lens, double scale,
                        torch::Tensor& out) {
  const int64_t S = q.size(0), H = q.size(1), D = q.size(2);
  const int64_t BS = kc.size(1), KVH = kc.size(2), G = H / KVH, W = tables.size(1);
  const T* qp = q.data_ptr<T>();
  const T* kp = kc.data_ptr<T>();
  const T* vp = vc.data_ptr<T>();
  const int32_t* tp = tables.data_ptr<int32_t>();
  const int32_t* lp = lens.data_ptr<int32_t>();
  T* op = out.data_ptr<T>();
  const float sc = static_cast<float>(scale);
  TORCH_CHECK(tables.size(0) == S && lens.size(0) == S && kc.size(0) == vc.size(0),
              "paged_decode: shapes disagree");
  for (int64_t s = 0; s < S; ++s) {  // every page read must exist: no out-of-bounds reads
    TORCH_CHECK(lp[s] >= 1 && lp[s] <= W * BS, "paged_decode: seq_len outside the block table");
    for (int64_t b = 0; b < (lp[s] + BS - 1) / BS; ++b)
      TORCH_CHECK(tp[s * W + b] >= 0 && tp[s * W + b] < kc.size(0), "paged_decode: bad block id");
  }
  at::parallel_for(0, S * KVH, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> qf(G * D), acc(G * D), scores;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t s = item / KVH, h = item % KVH, L = lp[s];
      scores.resize(G * L);
      for (int64_t g = 0; g < G; ++g)
        for (int64_t d = 0; d < D; ++d)
          qf[g * D + d] = static_cast<float>(qp[(s * H + h * G + g) * D + d]) * sc;
      for (int64_t t = 0; t < L; ++t) {
        const int64_t slot = static_cast<int64_t>(tp[s * W + t / BS]) * BS + t % BS;
        const T* k = kp + (slot * KVH + h) * D;
        for (int64_t g = 0; g < G; ++g) {
          const float* qg = qf.data() + g * D;
          float dot = 0.f;
#pragma omp simd reduction(+ : dot)
          for (int64_t d = 0; d < D; ++d) dot += qg[d] * static_cast<float>(k[d]);
          scores[g * L + t] = dot;
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
      for (int64_t t = 0; t < L; ++t) {
        const int64_t slot = static_cast<int64_t>(tp[s * W + t / BS]) * BS + t % BS;
        const T* v = vp + (slot * KVH + h) * D;
        for (int64_t g = 0; g < G; ++g) {
          const float p = scores[g * L + t];
          float* a = acc.data() + g * D;
#pragma omp simd
          for (int64_t d = 0; d < D; ++d) a[d] += p * static_cast<float>(v[d]);
        }
      }
      for (int64_t g = 0; g < G; ++g)
        for (int64_t d = 0; d < D; ++d)
          op[(s * H + h * G + g) * D + d] = static_cast<T>(acc[g * D + d]);
    }
  });
}

torch::Tensor paged_decode(torch::Tensor q, torch::Tensor kc, torch::Tensor vc,
                           torch::Tensor tables, torch::Tensor lens, double scale) {
  TORCH_CHECK(q.is_contiguous() && kc.is_contiguous() && vc.is_contiguous(), "contiguous inputs");
  TORCH_CHECK(q.dim() == 3 && kc.dim() == 4 && vc.sizes() == kc.sizes() && tables.dim() == 2,
              "paged_decode: q [S,H,D], caches [blocks,block,kv_heads,D], tables [S,W]");
  TORCH_CHECK(kc.scalar_type() == q.scalar_type() && vc.scalar_type() == q.scalar_type(),
              "paged_decode: q and caches must share a dtype");
  TORCH_CHECK(q.size(2) == kc.size(3) && q.size(1) % kc.size(2) == 0, "paged_decode: head shapes");
  TORCH_CHECK(tables.scalar_type() == torch::kInt32 && lens.scalar_type() == torch::kInt32,
              "int32 tables and lens");
  auto t = tables.contiguous();
  auto l = lens.contiguous();
  auto out = torch::empty_like(q);
  if (q.scalar_type() == torch::kBFloat16) {
    decode_impl<at::BFloat16>(q, kc, vc, t, l, scale, out);
  } else if (q.scalar_type() == torch::kFloat32) {
    decode_impl<float>(q, kc, vc, t, l, scale, out);
  } else {
    TORCH_CHECK(false, "paged_decode: float32 or bfloat16 only");
  }
  return out;
}
