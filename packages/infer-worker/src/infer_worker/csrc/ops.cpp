// The kernels as dispatcher ops (namespace infer_cpu), for torch.compile'd graphs: a call from
// a graph costs a few microseconds this way instead of tens through a Python custom op.
// Their fake (shape) functions are registered from Python (decode_graph.py).

// Writes key/value [S, KVH, D] of layer `layer` into slot_mapping, then attends -> [S, H, D];
// key_cache/value_cache are the whole caches [layers, blocks, block, KVH, D].
torch::Tensor paged_decode_op(const torch::Tensor& query, const torch::Tensor& key,
                              const torch::Tensor& value, torch::Tensor& key_cache,
                              torch::Tensor& value_cache, int64_t layer,
                              const torch::Tensor& block_tables, const torch::Tensor& seq_lens,
                              const torch::Tensor& slot_mapping, double scale, int64_t window,
                              double softcap) {
  TORCH_CHECK(key_cache.dim() == 5 && layer >= 0 && layer < key_cache.size(0),
              "paged_decode: caches [layers, blocks, block, kv_heads, D] and a layer in range");
  auto kc = key_cache.select(0, layer);
  auto vc = value_cache.select(0, layer);
  const int64_t kvh = kc.size(2), dim = kc.size(3);
  kc.view({-1, kvh, dim}).index_copy_(0, slot_mapping, key.to(kc.scalar_type()));
  vc.view({-1, kvh, dim}).index_copy_(0, slot_mapping, value.to(vc.scalar_type()));
  return paged_decode(query.contiguous(), kc, vc, block_tables, seq_lens, scale, window,
                      softcap);
}

// paged_decode_op over int8 pages: key_scale/value_scale are the whole scales
// [layers, blocks, block, KVH]; the new rows are quantized into the pages (kv_write.cpp).
torch::Tensor paged_decode_int8_op(const torch::Tensor& query, const torch::Tensor& key,
                                   const torch::Tensor& value, torch::Tensor& key_cache,
                                   torch::Tensor& value_cache, torch::Tensor& key_scale,
                                   torch::Tensor& value_scale, int64_t layer,
                                   const torch::Tensor& block_tables,
                                   const torch::Tensor& seq_lens,
                                   const torch::Tensor& slot_mapping, double scale,
                                   int64_t window, double softcap) {
  TORCH_CHECK(key_cache.dim() == 5 && key_scale.dim() == 4 && layer >= 0 &&
                  layer < key_cache.size(0) && key_scale.size(0) == key_cache.size(0),
              "paged_decode_int8: caches [layers, blocks, block, kv_heads, D], scales "
              "[layers, blocks, block, kv_heads] and a layer in range");
  auto kc = key_cache.select(0, layer);
  auto vc = value_cache.select(0, layer);
  auto ks = key_scale.select(0, layer);
  auto vs = value_scale.select(0, layer);
  kv_write_int8(key, value.to(key.scalar_type()), kc, vc, ks, vs, slot_mapping.to(torch::kInt64));
  return paged_decode_int8(query.contiguous(), kc, vc, ks, vs, block_tables, seq_lens, scale,
                           window, softcap);
}

torch::Tensor int8_linear_op(const torch::Tensor& x, const torch::Tensor& qweight,
                             const torch::Tensor& scale, const c10::optional<torch::Tensor>& bias,
                             bool float_out) {
  return int8_linear(x, qweight, scale, bias, float_out);
}

TORCH_LIBRARY(infer_cpu, m) {
  m.def(
      "paged_decode(Tensor query, Tensor key, Tensor value, Tensor(a!) key_cache, "
      "Tensor(b!) value_cache, int layer, Tensor block_tables, Tensor seq_lens, "
      "Tensor slot_mapping, float scale, int window, float softcap) -> Tensor");
  m.def(
      "paged_decode_int8(Tensor query, Tensor key, Tensor value, Tensor(a!) key_cache, "
      "Tensor(b!) value_cache, Tensor(c!) key_scale, Tensor(d!) value_scale, int layer, "
      "Tensor block_tables, Tensor seq_lens, Tensor slot_mapping, float scale, int window, "
      "float softcap) -> Tensor");
  m.def("int8_linear(Tensor x, Tensor qweight, Tensor scale, Tensor? bias, bool float_out) -> Tensor");
}

TORCH_LIBRARY_IMPL(infer_cpu, CPU, m) {
  m.impl("paged_decode", &paged_decode_op);
  m.impl("paged_decode_int8", &paged_decode_int8_op);
  m.impl("int8_linear", &int8_linear_op);
}
