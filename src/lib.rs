//! # samplex — LLM sampling on the GPU, with an f64 CPU reference
//!
//! samplex turns a batch of logits into tokens with hand-written CUDA kernels: temperature
//! softmax, greedy, top-k, top-p, min-p, sparsemax and Best-of-K. Every decoder is one
//! optimisation problem on the probability simplex — a regulariser Ω plus a support rule C:
//!
//! ```text
//! q* = argmax_{q ∈ Δ(V) ∩ C}  ⟨q, s⟩ − λ·Ω(q),   then draw a token from q*
//! ```
//!
//! | decoder   | [`Regularizer`]                  | [`Support`]                    | q*                          |
//! |-----------|----------------------------------|--------------------------------|-----------------------------|
//! | greedy    | `None`                           | all                            | one-hot at argmax           |
//! | softmax   | `Entropy { temperature }`        | all                            | softmax(z/τ)                |
//! | top-k     | `Entropy { temperature }`        | `top_k`                        | softmax over the k best     |
//! | top-p     | `Entropy { temperature }`        | `top_p`                        | softmax over the nucleus    |
//! | min-p     | `Entropy { temperature }`        | `min_p`                        | softmax over p ≥ min_p·max p|
//! | sparsemax | `Euclidean { temperature }`      | all                            | projection of z/τ on Δ      |
//! | BoK       | `BestOfK(Bok)`                   | all, or any of the above       | mirror ascent               |
//!
//! Two paths compute the same thing:
//!
//! * [`cpu`]: the reference — simple, f64, obviously right. It is what the kernels are tested
//!   against, and what a user without a GPU runs.
//! * [`gpu`]: a [`gpu::Sampler`] on a caller's cudarc stream, working on device buffers,
//!   asynchronous, allocation-free after warm-up, capturable in a CUDA graph.
//!
//! Before a decoder sees the logits, SPEC's first stage may edit them in place ([`edits`]):
//! an allowed-token mask, a per-token bias and repetition / presence / frequency penalties.
//! After the draw, the log-probabilities of the sampled (or any given) tokens come from one
//! more read of the logits, without writing the distribution (`token_log_probs` on both paths).
//! A pipeline that draws n samples per prompt (BoK's K) draws them from one read of q
//! (`sample_from_probs_n` on both paths). Speculative decoding's verification step keeps the
//! prefix of a draft that the target model accepts and draws one more token (`verify_draft` on
//! both paths; `verify_draft_logits` takes the target's logits and fuses their softmax).
//!
//! Random numbers come from Philox4x32-10 ([`philox`]), the same stream on both paths, so the
//! GPU and the CPU draw the same token from the same inputs.
//!
//! ```
//! use samplex::{cpu, Decoder, Logits, Rng, Rows};
//! let z = [6.0f32, 5.0, 4.5, 3.5, 2.0, 0.0];
//! let logits = Logits::new(&z, 1, 6).unwrap();
//! let q = cpu::distribution(&logits, Rows::All(Decoder::top_k(3, 1.0)), None).unwrap();
//! assert_eq!(q[0][3], 0.0); // the 4th token is outside the top 3
//! let draws = cpu::sample(&logits, Rows::All(Decoder::softmax(1.0)), Rows::All(Rng::new(7)), None).unwrap();
//! assert!(draws[0].token < 6);
//! ```
//!
//! ## Features and build
//!
//! No Cargo features. build.rs compiles `kernels/` with nvcc when it finds one
//! (`SAMPLEX_NVCC`, `NVCC`, `CUDA_HOME`, `CUDA_PATH`, `PATH`) into one embedded fatbin;
//! otherwise it embeds the sources and NVRTC compiles them on first use. The CUDA driver and
//! NVRTC are loaded at run time: building needs no CUDA, and running without a GPU returns
//! [`Error::NoDriver`], never a panic.

pub mod batch;
pub mod cpu;
pub mod decoder;
pub mod dtype;
pub mod edits;
pub mod error;
pub mod gpu;
pub mod philox;
pub mod status;

pub use batch::{DraftLayout, Logits, Rows};
pub use decoder::{Bok, BokWeights, Decoder, Regularizer, Support};
pub use dtype::{DType, Logit};
pub use edits::{mask_words, History, Penalties};
pub use error::{Error, Result};
pub use philox::Rng;
