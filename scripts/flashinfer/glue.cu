// samplex — scripts/flashinfer/glue.cu: a C ABI over FlashInfer's own host launchers
// (include/flashinfer/sampling.cuh, topk.cuh), for scripts/peers.py on a GPU host where the flashinfer
// package cannot be installed (its wheel is ~100 MB and its import pulls in far more than
// sampling). Built by scripts/flashinfer/build.sh from the headers of the pinned wheel.
//
// Each function calls the same launcher, with the same template arguments and values, as
// FlashInfer's tvm-ffi binding (csrc/sampling.cu, csrc/topk.cu, csrc/renorm.cu) does for its
// Python default: deterministic sampling, no `indices`, scalar seed and offset (as its Python
// wrapper passes after get_seed_and_offset), no top-k tie-break rule. The kernels, their block
// sizes and their split-row (cluster, multi-CTA) dispatch are FlashInfer's; nothing here
// launches a kernel of its own. scripts/flashinfer_kernels.py holds the Python side: the
// conversions, buffers and torch steps of FlashInfer's Python wrappers.
//
// Every function returns a cudaError_t (0 = success); sxfi_error_string names it.
#include <cuda_bf16.h>
#include <flashinfer/sampling.cuh>
#include <flashinfer/topk.cuh>

#include <cstdint>

using flashinfer::sampling::ChainSpeculativeSampling;
using flashinfer::sampling::MinPSamplingFromProb;
using flashinfer::sampling::OnlineSoftmax;
using flashinfer::sampling::RadixRowState;
using flashinfer::sampling::RadixTopKMaskLogitsMultiCTA;
using flashinfer::sampling::SamplingFromLogits;
using flashinfer::sampling::SamplingFromProb;
using flashinfer::sampling::TopKDispatch;
using flashinfer::sampling::TopKSamplingFromProb;
using flashinfer::sampling::TopKTieBreak;
using flashinfer::sampling::TopPSamplingFromProb;

namespace {

// csrc/topk.cu's radix_topk: TopKDispatch with no tie-break rule and not graph-safe.
template <typename T>
int top_k(void *input, int32_t *indices, void *values, uint32_t rows, uint32_t k, uint32_t d,
          void *row_states, int sorted_output, int deterministic, void *stream) {
  return TopKDispatch<T, int32_t>(static_cast<T *>(input), indices, static_cast<T *>(values), rows,
                                  k, d, static_cast<RadixRowState *>(row_states),
                                  sorted_output != 0, deterministic != 0, TopKTieBreak::None,
                                  static_cast<cudaStream_t>(stream), false);
}

// csrc/renorm.cu's top_k_mask_logits.
template <typename T>
int top_k_mask_logits(void *logits, void *masked, int32_t *top_k_arr, uint32_t batch,
                      uint32_t top_k_val, uint32_t vocab, void *row_states, void *stream) {
  return RadixTopKMaskLogitsMultiCTA<T, int>(static_cast<T *>(logits), static_cast<T *>(masked),
                                             top_k_arr, batch, top_k_val, vocab,
                                             static_cast<RadixRowState *>(row_states),
                                             static_cast<cudaStream_t>(stream));
}

}  // namespace

extern "C" {

// The FlashInfer version whose headers this was built from (set by build.sh).
const char *sxfi_version() { return SXFI_VERSION; }

const char *sxfi_error_string(int e) { return cudaGetErrorString(static_cast<cudaError_t>(e)); }

// flashinfer.sampling.softmax on f32 logits: temperature_arr (f32, one per row) or nullptr and
// temperature_val; the workspace is the Python wrapper's 1 MiB cache buffer.
int sxfi_softmax(float *logits, float *probs, uint32_t batch, uint32_t vocab,
                 float *temperature_arr, float temperature_val, void *workspace,
                 size_t workspace_bytes, int enable_pdl, void *stream) {
  return OnlineSoftmax<float>(logits, probs, batch, vocab, temperature_arr, temperature_val,
                              workspace, workspace_bytes, enable_pdl != 0,
                              static_cast<cudaStream_t>(stream));
}

// flashinfer.sampling.sampling_from_logits on f32 logits.
int sxfi_sampling_from_logits(float *logits, int32_t *out, uint32_t batch, uint32_t vocab,
                              uint64_t seed, uint64_t offset, void *stream) {
  return SamplingFromLogits<float, int32_t>(logits, out, nullptr, batch, vocab, true, nullptr,
                                            seed, nullptr, offset,
                                            static_cast<cudaStream_t>(stream));
}

// flashinfer.sampling.sampling_from_probs on f32 probabilities (no indices: int32 tokens).
int sxfi_sampling_from_probs(float *probs, int32_t *out, bool *valid, uint32_t batch,
                             uint32_t vocab, uint64_t seed, uint64_t offset, void *stream) {
  return SamplingFromProb<float, int32_t>(probs, out, valid, nullptr, batch, vocab, true, nullptr,
                                          seed, nullptr, offset,
                                          static_cast<cudaStream_t>(stream));
}

// flashinfer.sampling.chain_speculative_sampling: draft_probs (batch, n, vocab), draft_token_ids
// (batch, n), target_probs (batch, n + 1, vocab), all f32/int32; writes output_token_ids
// (batch, n + 1) and ADDS to the two counts (one per row), which its wrapper zeroes per call.
int sxfi_chain_speculative_sampling(float *draft_probs, int32_t *draft_token_ids,
                                    float *target_probs, int32_t *output_token_ids,
                                    int32_t *output_accepted_token_num,
                                    int32_t *output_emitted_draft_token_num, uint32_t batch,
                                    uint32_t num_speculate_tokens, uint32_t vocab, uint64_t seed,
                                    uint64_t offset, void *stream) {
  return ChainSpeculativeSampling<float, int32_t>(
      draft_probs, draft_token_ids, target_probs, output_token_ids, output_accepted_token_num,
      output_emitted_draft_token_num, batch, num_speculate_tokens, vocab, true, nullptr, seed,
      nullptr, offset, static_cast<cudaStream_t>(stream));
}

// flashinfer.sampling.top_k_sampling_from_probs: top_k_arr (int32, one per row) or nullptr.
// The binding passes the int32 buffer through the launcher's T* parameter; so does this.
int sxfi_top_k_sampling_from_probs(float *probs, int32_t *out, bool *valid, int32_t *top_k_arr,
                                   uint32_t batch, uint32_t top_k_val, uint32_t vocab,
                                   uint64_t seed, uint64_t offset, void *stream) {
  return TopKSamplingFromProb<float, int32_t>(
      probs, out, valid, nullptr, reinterpret_cast<float *>(top_k_arr), batch, top_k_val, vocab,
      true, nullptr, seed, nullptr, offset, static_cast<cudaStream_t>(stream));
}

// flashinfer.sampling.top_p_sampling_from_probs: top_p_arr (f32, one per row) or nullptr.
int sxfi_top_p_sampling_from_probs(float *probs, int32_t *out, bool *valid, float *top_p_arr,
                                   uint32_t batch, float top_p_val, uint32_t vocab, uint64_t seed,
                                   uint64_t offset, void *stream) {
  return TopPSamplingFromProb<float, int32_t>(probs, out, valid, nullptr, top_p_arr, batch,
                                              top_p_val, vocab, true, nullptr, seed, nullptr,
                                              offset, static_cast<cudaStream_t>(stream));
}

// flashinfer.sampling.min_p_sampling_from_probs: min_p_arr (f32, one per row) or nullptr.
int sxfi_min_p_sampling_from_probs(float *probs, int32_t *out, bool *valid, float *min_p_arr,
                                   uint32_t batch, float min_p_val, uint32_t vocab, uint64_t seed,
                                   uint64_t offset, void *stream) {
  return MinPSamplingFromProb<float, int32_t>(probs, min_p_arr, out, valid, nullptr, batch,
                                              min_p_val, vocab, true, nullptr, seed, nullptr,
                                              offset, static_cast<cudaStream_t>(stream));
}

// flashinfer.top_k's radix path (the one it takes with sorted=True below compute capability 10):
// k (index, value) pairs per row, sorted by value when sorted_output (FlashInfer asks for that
// only when deterministic too). row_states: its zeroed 1 MiB cache buffer.
int sxfi_top_k_f32(void *input, int32_t *indices, void *values, uint32_t rows, uint32_t k,
                   uint32_t d, void *row_states, int sorted_output, int deterministic,
                   void *stream) {
  return top_k<float>(input, indices, values, rows, k, d, row_states, sorted_output, deterministic,
                      stream);
}
int sxfi_top_k_bf16(void *input, int32_t *indices, void *values, uint32_t rows, uint32_t k,
                    uint32_t d, void *row_states, int sorted_output, int deterministic,
                    void *stream) {
  return top_k<nv_bfloat16>(input, indices, values, rows, k, d, row_states, sorted_output,
                            deterministic, stream);
}

// flashinfer.sampling.top_k_mask_logits: top_k_arr (int32, one per row) or nullptr.
int sxfi_top_k_mask_logits_f32(void *logits, void *masked, int32_t *top_k_arr, uint32_t batch,
                               uint32_t top_k_val, uint32_t vocab, void *row_states,
                               void *stream) {
  return top_k_mask_logits<float>(logits, masked, top_k_arr, batch, top_k_val, vocab, row_states,
                                  stream);
}
int sxfi_top_k_mask_logits_bf16(void *logits, void *masked, int32_t *top_k_arr, uint32_t batch,
                                uint32_t top_k_val, uint32_t vocab, void *row_states,
                                void *stream) {
  return top_k_mask_logits<nv_bfloat16>(logits, masked, top_k_arr, batch, top_k_val, vocab,
                                        row_states, stream);
}

}  // extern "C"
