//! A decoder is a regulariser plus a support rule (SPEC "The one idea behind the library"):
//!
//! ```text
//! q* = argmax_{q ∈ Δ(V) ∩ C}  ⟨q, s⟩ − λ·Ω(q)
//! ```
//!
//! [`Regularizer`] is Ω with its weight, [`Support`] is C, [`Decoder`] is the pair. Every
//! operation of the crate, on the CPU or the GPU, takes a `Decoder`.

use crate::error::{Error, Result};

/// Ω and its weight.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Regularizer {
    /// λ = 0: the mode of the scores, greedy decoding (ties to the lowest index).
    None,
    /// Negative entropy with λ = τ: q* = softmax(z/τ) over the support. τ = 0 is greedy.
    Entropy { temperature: f32 },
    /// ½‖q‖² with λ = τ: q* = sparsemax(z/τ), the Euclidean projection on the simplex.
    /// τ = 0 is greedy. Takes no support rule.
    Euclidean { temperature: f32 },
    /// β·KL(q‖p) − λ·coverage_K(q): Best-of-K, solved by mirror ascent.
    BestOfK(Bok),
}

/// The support constraint C, as the filters that build it, applied in the SPEC's order
/// top-k → top-p → min-p. Each at its neutral value is off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Support {
    /// Keep every token whose logit is ≥ the k-th largest (ties kept). 0 or ≥ vocab: off.
    pub top_k: u32,
    /// Keep the smallest prefix of the sorted probabilities with mass ≥ p (ties kept). 1: off.
    pub top_p: f32,
    /// Keep every token with p_i ≥ min_p · max p. 0: off.
    pub min_p: f32,
}

impl Support {
    /// No constraint: the whole vocabulary.
    pub const ALL: Support = Support {
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
    };

    /// True when no filter is on (for a row of `vocab` tokens).
    pub fn is_all(&self, vocab: usize) -> bool {
        (self.top_k == 0 || self.top_k as usize >= vocab) && self.top_p >= 1.0 && self.min_p <= 0.0
    }

    /// Host-side checks (SPEC "Bad input").
    pub fn validate(&self) -> Result<()> {
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::BadParam {
                name: "top_p",
                value: self.top_p.into(),
                range: "in (0, 1]",
            });
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(Error::BadParam {
                name: "min_p",
                value: self.min_p.into(),
                range: "in [0, 1]",
            });
        }
        Ok(())
    }
}

impl Default for Support {
    fn default() -> Self {
        Support::ALL
    }
}

/// Which tokens BoK's coverage term values (w in the SPEC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BokWeights {
    /// w = p, the reference distribution (the default).
    #[default]
    Prob,
    /// w_i = 1 on the M most likely tokens of p, else 0.
    TopM(u32),
    /// The caller's per-row buffer (batch × vocab, f32, ≥ 0), passed beside the decoder.
    Custom,
}

/// Best-of-K's parameters (SPEC "Best-of-K"):
/// J(q) = ⟨q, z⟩ − β·KL(q‖p) + λ·Σ w_i·(1 − (1 − q_i)^K), p = softmax(z/τ) over the support,
/// maximised by `iterations` steps of mirror ascent with step size η from q⁰ = p.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bok {
    /// τ of the reference p. Must be > 0.
    pub temperature: f32,
    /// K ≥ 1: how many samples the pipeline will draw per prompt.
    pub k: u32,
    /// β > 0: the KL anchor's weight.
    pub beta: f32,
    /// λ ≥ 0: the coverage weight.
    pub lambda: f32,
    /// η > 0: the mirror-ascent step size.
    pub eta: f32,
    /// T ≥ 0 iterations (T = 0 returns p).
    pub iterations: u32,
    /// The coverage weights w.
    pub weights: BokWeights,
}

impl Bok {
    /// The documented defaults: K = 8, β = 1, λ = 1, η = 0.2, T = 5, τ = 1, w = p.
    ///
    /// With β = 1 and η = 0.2 the update is a damped step towards the fixed point
    /// (q ∝ p^{βη}·q^{1−βη}·e^{η·(z + coverage')}); `tests/cpu_bok.rs` checks that J rises at
    /// every step on flat, peaked and Gumbel rows.
    pub const DEFAULT: Bok = Bok {
        temperature: 1.0,
        k: 8,
        beta: 1.0,
        lambda: 1.0,
        eta: 0.2,
        iterations: 5,
        weights: BokWeights::Prob,
    };

    /// Host-side checks (SPEC "Bad input").
    pub fn validate(&self) -> Result<()> {
        check_temperature(self.temperature)?;
        if self.temperature == 0.0 {
            return Err(Error::BadParam {
                name: "temperature",
                value: 0.0,
                range: "> 0 for BoK",
            });
        }
        if self.k == 0 {
            return Err(Error::BadParam {
                name: "k",
                value: 0.0,
                range: ">= 1",
            });
        }
        if self.beta.is_nan() || self.beta <= 0.0 {
            return Err(Error::BadParam {
                name: "beta",
                value: self.beta.into(),
                range: "> 0",
            });
        }
        if self.lambda.is_nan() || self.lambda < 0.0 {
            return Err(Error::BadParam {
                name: "lambda",
                value: self.lambda.into(),
                range: ">= 0",
            });
        }
        if self.eta.is_nan() || self.eta <= 0.0 {
            return Err(Error::BadParam {
                name: "eta",
                value: self.eta.into(),
                range: "> 0",
            });
        }
        if let BokWeights::TopM(0) = self.weights {
            return Err(Error::BadParam {
                name: "top_m",
                value: 0.0,
                range: ">= 1",
            });
        }
        Ok(())
    }
}

impl Default for Bok {
    fn default() -> Self {
        Bok::DEFAULT
    }
}

/// A decoder: a regulariser plus a support rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decoder {
    pub regularizer: Regularizer,
    pub support: Support,
}

impl Decoder {
    /// Greedy: the argmax, ties to the lowest index.
    pub fn greedy() -> Self {
        Decoder {
            regularizer: Regularizer::None,
            support: Support::ALL,
        }
    }

    /// Softmax at temperature τ over the whole vocabulary.
    pub fn softmax(temperature: f32) -> Self {
        Decoder {
            regularizer: Regularizer::Entropy { temperature },
            support: Support::ALL,
        }
    }

    /// Softmax at τ over the k best tokens.
    pub fn top_k(k: u32, temperature: f32) -> Self {
        Self::softmax(temperature).with_support(Support {
            top_k: k,
            ..Support::ALL
        })
    }

    /// Softmax at τ over the nucleus of mass p.
    pub fn top_p(p: f32, temperature: f32) -> Self {
        Self::softmax(temperature).with_support(Support {
            top_p: p,
            ..Support::ALL
        })
    }

    /// Softmax at τ over the tokens with p_i ≥ min_p · max p.
    pub fn min_p(min_p: f32, temperature: f32) -> Self {
        Self::softmax(temperature).with_support(Support {
            min_p,
            ..Support::ALL
        })
    }

    /// Sparsemax at temperature τ.
    pub fn sparsemax(temperature: f32) -> Self {
        Decoder {
            regularizer: Regularizer::Euclidean { temperature },
            support: Support::ALL,
        }
    }

    /// Best-of-K over the whole vocabulary (add a support with [`Decoder::with_support`]).
    pub fn bok(params: Bok) -> Self {
        Decoder {
            regularizer: Regularizer::BestOfK(params),
            support: Support::ALL,
        }
    }

    /// The same regulariser under another support rule.
    pub fn with_support(self, support: Support) -> Self {
        Decoder { support, ..self }
    }

    /// The temperature τ, or 0 for greedy.
    pub fn temperature(&self) -> f32 {
        match self.regularizer {
            Regularizer::None => 0.0,
            Regularizer::Entropy { temperature } | Regularizer::Euclidean { temperature } => {
                temperature
            }
            Regularizer::BestOfK(b) => b.temperature,
        }
    }

    /// Host-side checks (SPEC "Bad input"): each parameter in range, and a support rule only
    /// where the SPEC defines one (entropy and BoK).
    ///
    /// # Errors
    /// [`Error::BadParam`] naming the parameter and its value; [`Error::Unsupported`] for a
    /// support rule on sparsemax.
    pub fn validate(&self) -> Result<()> {
        self.support.validate()?;
        match self.regularizer {
            Regularizer::None => Ok(()),
            Regularizer::Entropy { temperature } => check_temperature(temperature),
            Regularizer::Euclidean { temperature } => {
                check_temperature(temperature)?;
                if self.support != Support::ALL {
                    return Err(Error::Unsupported(
                        "sparsemax takes no support rule (its support comes from θ)".into(),
                    ));
                }
                Ok(())
            }
            Regularizer::BestOfK(b) => b.validate(),
        }
    }
}

/// τ must be ≥ 0 and not NaN (SPEC "Bad input").
pub(crate) fn check_temperature(t: f32) -> Result<()> {
    if t >= 0.0 && t.is_finite() {
        Ok(())
    } else {
        Err(Error::BadParam {
            name: "temperature",
            value: t.into(),
            range: ">= 0 and finite",
        })
    }
}
