//! What `benches/sampling.rs` needs besides the operations themselves: BENCH.md's grid and
//! input distributions, the device timer (CUDA events, stream padding, cold L2), the copy
//! roof, and the JSONL result lines.
//!
//! | item           | what it is                                                          |
//! |----------------|---------------------------------------------------------------------|
//! | [`Dist`]       | the four input distributions, generated on the host from a fixed seed |
//! | [`Grid`]       | vocab × batch × dist × dtype, full or `SAMPLEX_BENCH_QUICK=1`        |
//! | [`Timer`]      | device time of one launch sequence, median of ≥ 50 runs             |
//! | [`copy_roof`]  | GB/s of a 1 GiB device-to-device copy, timed the same way            |
//! | [`Line`], [`Results`] | one JSON object per point, appended to the results file      |
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaEvent, CudaSlice, CudaStream};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};
use rand_distr::{Distribution, Normal};

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

/// BENCH.md's input distributions (the same formulas as `tests/common::Dist`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Dist {
    /// N(0, σ²).
    Normal(f32),
    /// log(−log U)/β with U uniform in [ε, 1): β = 0.1 is very peaked, β = 1 mild.
    Gumbel(f32),
}

impl Dist {
    pub const ALL: [Dist; 4] = [
        Dist::Normal(1.0),
        Dist::Normal(5.0),
        Dist::Gumbel(0.1),
        Dist::Gumbel(1.0),
    ];

    /// The result-line name: normal1, normal5, gumbel0.1, gumbel1.
    pub fn name(self) -> &'static str {
        match self {
            Dist::Normal(1.0) => "normal1",
            Dist::Normal(5.0) => "normal5",
            Dist::Gumbel(0.1) => "gumbel0.1",
            Dist::Gumbel(1.0) => "gumbel1",
            _ => "other",
        }
    }

    fn index(self) -> u64 {
        Dist::ALL.iter().position(|d| *d == self).unwrap_or(99) as u64
    }

    /// One row of `vocab` logits; row `row` of (dist, vocab) is always the same values.
    fn fill_row(self, row: usize, out: &mut [f32]) {
        let seed = 0x5A3D_1E00_0000_0000u64
            ^ (self.index() << 40)
            ^ ((out.len() as u64) << 16)
            ^ row as u64;
        let mut rng = StdRng::seed_from_u64(seed);
        match self {
            Dist::Normal(s) => {
                let d = Normal::new(0.0f32, s).expect("σ > 0");
                out.iter_mut().for_each(|x| *x = d.sample(&mut rng));
            }
            Dist::Gumbel(beta) => out.iter_mut().for_each(|x| {
                let u: f32 = rng.random_range(f32::EPSILON..1.0);
                *x = (-u.ln()).ln() / beta;
            }),
        }
    }

    /// `batch × vocab` logits, rows generated in parallel (each row from its own seed, so the
    /// values do not depend on the thread count).
    pub fn logits(self, batch: usize, vocab: usize) -> Vec<f32> {
        let mut data = vec![0.0f32; batch * vocab];
        let threads = std::thread::available_parallelism()
            .map_or(4, |n| n.get())
            .min(32);
        let rows_per = batch.div_ceil(threads).max(1);
        std::thread::scope(|s| {
            for (chunk_index, chunk) in data.chunks_mut(rows_per * vocab).enumerate() {
                s.spawn(move || {
                    for (i, row) in chunk.chunks_mut(vocab).enumerate() {
                        self.fill_row(chunk_index * rows_per + i, row);
                    }
                });
            }
        });
        data
    }
}

// ---------------------------------------------------------------------------------------------
// The grid and the environment knobs
// ---------------------------------------------------------------------------------------------

/// The logit dtypes of the grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    Bf16,
}

impl Dtype {
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::Bf16 => "bf16",
        }
    }
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::Bf16 => 2,
        }
    }
}

/// The one point of each (op, dtype) that is also timed with a cold L2.
pub const COLD_VOCAB: usize = 128256;
pub const COLD_BATCH: usize = 32;
pub const COLD_DIST: Dist = Dist::Normal(1.0);

/// Bytes touched between two runs of a cold-L2 point (larger than any L2 so far).
pub const FLUSH_BYTES: usize = 256 << 20;

/// BENCH.md's grid, or the quick subset.
#[derive(Clone, Debug)]
pub struct Grid {
    pub vocabs: Vec<usize>,
    pub batches: Vec<usize>,
    pub dists: Vec<Dist>,
    pub dtypes: Vec<Dtype>,
    pub quick: bool,
}

impl Grid {
    pub fn full() -> Self {
        Grid {
            vocabs: vec![32000, 128256, 151936, 262144],
            batches: vec![1, 8, 32, 128, 512],
            dists: Dist::ALL.to_vec(),
            dtypes: vec![Dtype::F32, Dtype::Bf16],
            quick: false,
        }
    }

    /// `SAMPLEX_BENCH_QUICK=1`: vocab 128256, batch 1 and 128, normal1, f32 and bf16.
    pub fn quick() -> Self {
        Grid {
            vocabs: vec![128256],
            batches: vec![1, 128],
            dists: vec![Dist::Normal(1.0)],
            dtypes: vec![Dtype::F32, Dtype::Bf16],
            quick: true,
        }
    }

    pub fn from_env() -> Self {
        if env_flag("SAMPLEX_BENCH_QUICK") {
            Self::quick()
        } else {
            Self::full()
        }
    }

    /// The largest batch of the grid and the cold point (the bench adds its forced-path and
    /// unaligned-rows batches to it).
    pub fn max_batch(&self) -> usize {
        self.batches
            .iter()
            .copied()
            .chain([COLD_BATCH])
            .max()
            .unwrap_or(1)
    }
}

/// True when the variable is set to something other than "", "0", "false" or "no".
pub fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false" | "no"))
}

/// `SAMPLEX_BENCH_OPS`: the comma-separated op names to run (None: all of them).
pub fn ops_filter(known: &[&str]) -> Result<Option<Vec<String>>, String> {
    let Ok(list) = std::env::var("SAMPLEX_BENCH_OPS") else {
        return Ok(None);
    };
    let names: Vec<String> = list
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(bad) = names.iter().find(|n| !known.contains(&n.as_str())) {
        return Err(format!(
            "SAMPLEX_BENCH_OPS names an unknown op {bad:?}; known: {}",
            known.join(",")
        ));
    }
    Ok(if names.is_empty() { None } else { Some(names) })
}

// ---------------------------------------------------------------------------------------------
// Device timing
// ---------------------------------------------------------------------------------------------

/// Whether the L2 holds the inputs when a run starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L2 {
    /// Flush nothing: the inputs are in L2 as far as they fit (the serving case).
    Hot,
    /// A [`FLUSH_BYTES`] buffer is written before each run.
    Cold,
}

/// Calls of the op before timing (the first one grows the sampler's workspace).
pub const WARMUP: usize = 3;
/// Timed runs per reported point (BENCH.md: median of ≥ 50).
pub const RUNS: usize = 60;
/// Upper bound on the padding memsets queued ahead of a timed batch.
const MAX_PADS: usize = 512;

/// Times launch sequences on one stream with CUDA events.
///
/// Events around a launch only measure the device when the stream is already busy as the host
/// queues the run: on an idle stream the start event fires at once and the host's launch
/// latency is counted too. So a timed batch is queued behind padding (memsets of a scratch
/// buffer, sized from the measured host cost of one run), and the timer checks, after queueing
/// each run, that its start event has not yet completed: if it has, the device waited for the
/// host, and the batch is timed again with twice the padding.
///
/// Per run: `record(start_i); op(); record(end_i)`, time = end_i − start_i.
/// Hot: after the padding, one untimed run reloads L2, then the timed runs back to back.
/// Cold: each run is preceded by a memset of [`FLUSH_BYTES`] (which also keeps the stream busy).
pub struct Timer {
    stream: Arc<CudaStream>,
    events: Vec<CudaEvent>,
    pad: CudaSlice<u8>,
    pad_us: f64,
    /// Timed batches where the device still waited for the host after every retry.
    pub host_bound_batches: usize,
}

impl Timer {
    pub fn new(stream: Arc<CudaStream>) -> samplex::Result<Self> {
        let pad = stream.alloc_zeros::<u8>(FLUSH_BYTES)?;
        let mut t = Timer {
            stream,
            events: Vec::new(),
            pad,
            pad_us: 100.0,
            host_bound_batches: 0,
        };
        // The device time of one padding memset, to size the padding.
        let pad_us = {
            let stream = t.stream.clone();
            let mut scratch = stream.alloc_zeros::<u8>(FLUSH_BYTES)?;
            let times = t.time_raw(9, L2::Hot, 4, &mut || {
                stream.memset_zeros(&mut scratch)?;
                Ok(())
            })?;
            median(&times)
        };
        t.pad_us = pad_us.max(1.0);
        Ok(t)
    }

    /// The stream the timer records on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    fn ensure_events(&mut self, n: usize) -> samplex::Result<()> {
        while self.events.len() < n {
            let e = self
                .stream
                .context()
                .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
            self.events.push(e);
        }
        Ok(())
    }

    /// Device times (µs) of `runs` runs of `op`, after [`WARMUP`] untimed calls.
    pub fn time<F>(&mut self, runs: usize, l2: L2, op: &mut F) -> samplex::Result<Vec<f64>>
    where
        F: FnMut() -> samplex::Result<()>,
    {
        // Warm-up, timing the host's cost of queueing one run.
        let mut host_us = f64::MAX;
        for _ in 0..WARMUP {
            let t = Instant::now();
            op()?;
            host_us = host_us.min(t.elapsed().as_secs_f64() * 1e6);
        }
        self.stream.synchronize()?;
        // Queueing a run also records two events and (cold) a memset.
        let per_run = host_us + 4.0;
        let pads = ((runs as f64 * per_run * 1.5 + 200.0) / self.pad_us).ceil() as usize;
        self.time_raw(runs, l2, pads.clamp(1, MAX_PADS), op)
    }

    fn time_raw<F>(
        &mut self,
        runs: usize,
        l2: L2,
        mut pads: usize,
        op: &mut F,
    ) -> samplex::Result<Vec<f64>>
    where
        F: FnMut() -> samplex::Result<()>,
    {
        self.ensure_events(2 * runs)?;
        let mut attempt = 0;
        loop {
            for _ in 0..pads {
                self.stream.memset_zeros(&mut self.pad)?;
            }
            if l2 == L2::Hot {
                op()?;
            }
            let mut waited = 0;
            for i in 0..runs {
                if l2 == L2::Cold {
                    self.stream.memset_zeros(&mut self.pad)?;
                }
                self.events[2 * i].record(&self.stream)?;
                op()?;
                self.events[2 * i + 1].record(&self.stream)?;
                // Still pending: the device has not reached this run, so it never idled
                // waiting for the host inside it.
                if self.events[2 * i].is_complete() {
                    waited += 1;
                }
            }
            self.stream.synchronize()?;
            let mut times = Vec::with_capacity(runs);
            for i in 0..runs {
                let ms = self.events[2 * i].elapsed_ms(&self.events[2 * i + 1])?;
                times.push(f64::from(ms) * 1e3);
            }
            attempt += 1;
            if waited == 0 {
                return Ok(times);
            }
            if attempt >= 4 || pads >= MAX_PADS {
                self.host_bound_batches += 1;
                return Ok(times);
            }
            pads = (pads * 2).min(MAX_PADS);
        }
    }
}

/// The median (mean of the two middle values for an even count); NaN when empty.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// The copy roof: GB/s of a device-to-device copy of a 1 GiB buffer (bytes read + written over
/// the median time of [`RUNS`] copies), timed like every op.
pub fn copy_roof(timer: &mut Timer) -> samplex::Result<f64> {
    const BYTES: usize = 1 << 30;
    let stream = timer.stream().clone();
    let src = stream.alloc_zeros::<u8>(BYTES)?;
    let mut dst = stream.alloc_zeros::<u8>(BYTES)?;
    let times = timer.time(RUNS, L2::Hot, &mut || {
        stream.memcpy_dtod(&src, &mut dst)?;
        Ok(())
    })?;
    Ok(gbps(2 * BYTES, median(&times)))
}

/// Bytes over microseconds, in GB/s (10⁹ bytes per second).
pub fn gbps(bytes: usize, us: f64) -> f64 {
    bytes as f64 / us.max(1e-3) / 1e3
}

// ---------------------------------------------------------------------------------------------
// Result lines
// ---------------------------------------------------------------------------------------------

/// One BENCH.md result line. A cold-L2 point carries `l2=cold` at the end of `params` (the
/// line format has no other place for it).
#[derive(Clone, Debug)]
pub struct Line<'a> {
    pub op: &'a str,
    pub dtype: &'a str,
    pub dist: &'a str,
    pub batch: usize,
    pub vocab: usize,
    pub params: String,
    pub per_row: bool,
    pub median_us: f64,
    pub gbps: f64,
    pub roof_gbps: f64,
}

/// The results file: one JSON object per line, appended and flushed point by point, so that
/// an interrupted run keeps what it measured.
pub struct Results {
    pub path: PathBuf,
    file: File,
    device: String,
    git: String,
}

impl Results {
    /// `SAMPLEX_BENCH_OUT`, else `benches/results/<YYYY-MM-DD>-<gpu>.jsonl` (UTC date, GPU name
    /// sanitised to [a-z0-9-]) under the current directory (`cargo bench` runs in the crate).
    pub fn open(device: &str) -> std::io::Result<Self> {
        let path = match std::env::var_os("SAMPLEX_BENCH_OUT") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => Path::new("benches/results").join(format!(
                "{}-{}.jsonl",
                utc_date(),
                sanitize_gpu(device)
            )),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Results {
            path,
            file,
            device: device.to_string(),
            git: git_commit(),
        })
    }

    pub fn write(&mut self, l: &Line<'_>) -> std::io::Result<()> {
        let s = |x: &str| serde_json::to_string(x).expect("a str serialises");
        let line = format!(
            "{{\"op\": {}, \"impl\": \"samplex\", \"dtype\": {}, \"dist\": {}, \"batch\": {}, \
             \"vocab\": {}, \"params\": {}, \"per_row\": {}, \"median_us\": {:.3}, \"gbps\": {:.2}, \
             \"roof_gbps\": {:.2}, \"device\": {}, \"git\": {}}}\n",
            s(l.op),
            s(l.dtype),
            s(l.dist),
            l.batch,
            l.vocab,
            s(&l.params),
            l.per_row,
            finite(l.median_us),
            finite(l.gbps),
            finite(l.roof_gbps),
            s(&self.device),
            s(&self.git),
        );
        self.file.write_all(line.as_bytes())?;
        self.file.flush()
    }
}

fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

/// Lower-case, every run of characters outside [a-z0-9] becomes one '-', no '-' at the ends.
pub fn sanitize_gpu(name: &str) -> String {
    let mut out = String::new();
    for c in name.to_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        "unknown-gpu".into()
    } else {
        out
    }
}

/// Today's date in UTC, YYYY-MM-DD.
pub fn utc_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `SAMPLEX_GIT`, else `git rev-parse --short HEAD` here, else "unknown".
pub fn git_commit() -> String {
    if let Ok(g) = std::env::var("SAMPLEX_GIT") {
        if !g.trim().is_empty() {
            return g.trim().to_string();
        }
    }
    std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Checks of the pure helpers, run at the start of every bench process (cheap, no GPU): a
/// wrong date or file name would scatter results across files.
pub fn self_check() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    assert_eq!(
        sanitize_gpu("NVIDIA H100 80GB HBM3"),
        "nvidia-h100-80gb-hbm3"
    );
    assert_eq!(sanitize_gpu("  A100-SXM4 (40GB) "), "a100-sxm4-40gb");
    assert_eq!(sanitize_gpu("???"), "unknown-gpu");
    assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
}
