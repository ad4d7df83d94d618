// Fused elementwise steps of a bf16 decoder layer for the eager CPU path, each one call
// instead of 3-14 torch ops (the per-op dispatch is what a small decode step spends most on).
// Every step rounds to bf16 where the torch ops it replaces do, so the results are the same.

static inline float bf(float v) { return static_cast<float>(static_cast<at::BFloat16>(v)); }

// x [T, H] bf16, weight [H] bf16 -> weight * bf16(x * rsqrt(mean(x^2) + eps)), as RMSNorm.
torch::Tensor rms_norm_bf16(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kBFloat16 &&
                  weight.scalar_type() == torch::kBFloat16 && weight.numel() == x.size(1),
              "rms_norm_bf16: x [T, H] and weight [H] in bfloat16");
  auto xc = x.contiguous();
  auto wc = weight.contiguous();
  const int64_t T = xc.size(0), H = xc.size(1);
  auto out = torch::empty_like(xc);
  const at::BFloat16* xp = xc.data_ptr<at::BFloat16>();
  const at::BFloat16* wp = wc.data_ptr<at::BFloat16>();
  at::BFloat16* op = out.data_ptr<at::BFloat16>();
  at::parallel_for(0, T, 64, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const at::BFloat16* row = xp + t * H;
      float sum = 0.f;
      for (int64_t h = 0; h < H; ++h) {
        const float v = static_cast<float>(row[h]);
        sum += v * v;
      }
      const float r = 1.f / std::sqrt(sum / static_cast<float>(H) + static_cast<float>(eps));
      for (int64_t h = 0; h < H; ++h)
        op[t * H + h] = static_cast<at::BFloat16>(static_cast<float>(wp[h]) *
                                                  bf(static_cast<float>(row[h]) * r));
    }
  });
  return out;
}

// Rotate-half RoPE of q [T, H, D] and k [T, KVH, D] (bf16, any strides of a qkv split) with
// cos/sin [T, D] float32 tables rows: bf16(bf16(x * c) + bf16(rot(x) * s)), as apply_rotary.
std::vector<torch::Tensor> rotary_bf16(const torch::Tensor& q, const torch::Tensor& k,
                                       const torch::Tensor& cos, const torch::Tensor& sin) {
  TORCH_CHECK(q.dim() == 3 && k.dim() == 3 && q.scalar_type() == torch::kBFloat16 &&
                  k.scalar_type() == torch::kBFloat16 && q.size(0) == k.size(0) &&
                  q.size(2) == k.size(2) && q.size(2) % 2 == 0,
              "rotary_bf16: q [T, H, D], k [T, KVH, D] in bfloat16");
  TORCH_CHECK(cos.dim() == 2 && cos.sizes() == sin.sizes() && cos.size(0) == q.size(0) &&
                  cos.size(1) == q.size(2) && cos.scalar_type() == torch::kBFloat16 &&
                  sin.scalar_type() == torch::kBFloat16,
              "rotary_bf16: cos/sin [T, D] in bfloat16");
  auto cc = cos.contiguous();
  auto sc = sin.contiguous();
  const int64_t T = q.size(0), D = q.size(2), half = D / 2;
  std::vector<torch::Tensor> outs;
  for (const auto& x : {q, k}) {
    auto xc = x.contiguous();
    auto out = torch::empty_like(xc);
    const int64_t H = xc.size(1);
    const at::BFloat16* xp = xc.data_ptr<at::BFloat16>();
    const at::BFloat16* cp = cc.data_ptr<at::BFloat16>();
    const at::BFloat16* sp = sc.data_ptr<at::BFloat16>();
    at::BFloat16* op = out.data_ptr<at::BFloat16>();
    at::parallel_for(0, T * H, 64, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const int64_t t = i / H;
        const at::BFloat16* row = xp + i * D;
        const at::BFloat16* c = cp + t * D;
        const at::BFloat16* s = sp + t * D;
        for (int64_t d = 0; d < D; ++d) {
          const float v = static_cast<float>(row[d]);
          // rotate-half: (-x[half:], x[:half]); negation is exact in bf16
          const float r = d < half ? -static_cast<float>(row[d + half])
                                   : static_cast<float>(row[d - half]);
          const float a = bf(v * static_cast<float>(c[d]));
          const float b = bf(r * static_cast<float>(s[d]));
          op[i * D + d] = static_cast<at::BFloat16>(a + b);
        }
      }
    });
    outs.push_back(out);
  }
  return outs;
}

// gate_up [T, 2I] bf16 -> bf16(silu(gate)) * up rounded to bf16, as MLP.forward.
torch::Tensor silu_mul_bf16(const torch::Tensor& gate_up) {
  TORCH_CHECK(gate_up.dim() == 2 && gate_up.scalar_type() == torch::kBFloat16 &&
                  gate_up.size(1) % 2 == 0,
              "silu_mul_bf16: gate_up [T, 2I] in bfloat16");
  auto xc = gate_up.contiguous();
  const int64_t T = xc.size(0), I = xc.size(1) / 2;
  auto out = torch::empty({T, I}, xc.options());
  const at::BFloat16* xp = xc.data_ptr<at::BFloat16>();
  at::BFloat16* op = out.data_ptr<at::BFloat16>();
  at::parallel_for(0, T, 16, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t)
      for (int64_t i = 0; i < I; ++i) {
        const float g = static_cast<float>(xp[t * 2 * I + i]);
        const float silu = bf(g / (1.f + std::exp(-g)));
        op[t * I + i] = static_cast<at::BFloat16>(silu * static_cast<float>(xp[t * 2 * I + I + i]));
      }
  });
  return out;
}
