// Writes new K/V rows into int8 pages (kv_quant.py's rule, as one pass per row): each row of
// key/value [T, KVH, D] (float32 or bf16) gets scale s = max|x| / 127 held in the scales' dtype
// (float32 or bf16), then q = round-half-even(x / s) clamped to [-127, 127], computed against
// the stored s; token i goes to slot slots[i] of the pages [blocks, block, KVH, D] and of the
// scales [blocks, block, KVH]. A row of zeros stores s = 0 and q = 0.
template <typename TX, typename TS>
static void quantize_into(const TX* x, int64_t T, int64_t KVH, int64_t D, const int64_t* slots,
                          int8_t* pages, TS* scales) {
  at::parallel_for(0, T * KVH, 256, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const TX* row = x + r * D;
      float amax = 0.f;
      for (int64_t d = 0; d < D; ++d) amax = std::max(amax, std::abs(static_cast<float>(row[d])));
      const TS s = static_cast<TS>(amax / 127.f);
      const float sf = static_cast<float>(s);
      const float inv = sf > 0.f ? 1.f / sf : 0.f;
      const int64_t dst = slots[r / KVH] * KVH + r % KVH;
      int8_t* out = pages + dst * D;
      for (int64_t d = 0; d < D; ++d) {
        const float q = std::nearbyint(static_cast<float>(row[d]) * inv);
        out[d] = static_cast<int8_t>(std::min(127.f, std::max(-127.f, q)));
      }
      scales[dst] = s;
    }
  });
}

template <typename TX>
static void quantize_rows(const torch::Tensor& x, const torch::Tensor& slots, torch::Tensor& pages,
                          torch::Tensor& scales) {
  const int64_t T = x.size(0), KVH = x.size(1), D = x.size(2);
  const int64_t* sp = slots.data_ptr<int64_t>();
  if (scales.scalar_type() == torch::kBFloat16)
    quantize_into(x.data_ptr<TX>(), T, KVH, D, sp, pages.data_ptr<int8_t>(),
                  scales.data_ptr<at::BFloat16>());
  else
    quantize_into(x.data_ptr<TX>(), T, KVH, D, sp, pages.data_ptr<int8_t>(),
                  scales.data_ptr<float>());
}

// key / value [T, KVH, D]; kc / vc int8 [blocks, block, KVH, D]; ks / vs [blocks, block, KVH]
// (float32 or bf16); slots int64 [T], each a slot of the pages.
void kv_write_int8(torch::Tensor key, torch::Tensor value, torch::Tensor kc, torch::Tensor vc,
                   torch::Tensor ks, torch::Tensor vs, torch::Tensor slots) {
  key = key.contiguous();
  value = value.contiguous();
  slots = slots.contiguous();
  TORCH_CHECK(key.dim() == 3 && value.sizes() == key.sizes(), "kv_write_int8: key/value [T,KVH,D]");
  TORCH_CHECK(key.scalar_type() == value.scalar_type() &&
                  (key.scalar_type() == torch::kFloat32 || key.scalar_type() == torch::kBFloat16),
              "kv_write_int8: float32 or bfloat16 rows");
  TORCH_CHECK(kc.is_contiguous() && vc.is_contiguous() && kc.scalar_type() == torch::kInt8 &&
                  vc.scalar_type() == torch::kInt8 && kc.dim() == 4 && vc.sizes() == kc.sizes(),
              "kv_write_int8: int8 pages [blocks, block, KVH, D], contiguous");
  TORCH_CHECK(kc.size(2) == key.size(1) && kc.size(3) == key.size(2), "kv_write_int8: head shapes");
  TORCH_CHECK(ks.is_contiguous() && vs.is_contiguous() && ks.sizes() == kc.sizes().slice(0, 3) &&
                  vs.sizes() == ks.sizes() && ks.scalar_type() == vs.scalar_type() &&
                  (ks.scalar_type() == torch::kFloat32 || ks.scalar_type() == torch::kBFloat16),
              "kv_write_int8: float32 or bfloat16 scales [blocks, block, KVH], contiguous");
  TORCH_CHECK(slots.dim() == 1 && slots.size(0) == key.size(0) &&
                  slots.scalar_type() == torch::kInt64,
              "kv_write_int8: int64 slots [T]");
  const int64_t num_slots = kc.size(0) * kc.size(1);
  const int64_t* sp = slots.data_ptr<int64_t>();
  for (int64_t i = 0; i < slots.size(0); ++i)
    TORCH_CHECK(sp[i] >= 0 && sp[i] < num_slots, "kv_write_int8: slot out of range");
  if (key.scalar_type() == torch::kBFloat16) {
    quantize_rows<at::BFloat16>(key, slots, kc, ks);
    quantize_rows<at::BFloat16>(value, slots, vc, vs);
  } else {
    quantize_rows<float>(key, slots, kc, ks);
    quantize_rows<float>(value, slots, vc, vs);
  }
}
