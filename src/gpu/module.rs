//! Finding the driver and loading the kernels.
//!
//! build.rs embeds two things: `samplex.fatbin` (empty when no nvcc was found) and
//! `samplex_kernels.cu`, every kernel in one translation unit. `load` takes the fatbin when
//! there is one and otherwise compiles the source with NVRTC for the device's architecture.
//! Either way the module is loaded once per context and shared by every sampler on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{CudaContext, CudaModule};
use cudarc::nvrtc::{CompileOptions, Ptx};

use crate::error::{Error, Result};

static FATBIN: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/samplex.fatbin"));
static SOURCE: &str = include_str!(concat!(env!("OUT_DIR"), "/samplex_kernels.cu"));

/// Where a sampler's kernels came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelOrigin {
    /// The fatbin nvcc built with the crate.
    Fatbin,
    /// The embedded sources, compiled by NVRTC at first use.
    Nvrtc,
}

/// True when the CUDA driver library (libcuda) can be loaded. Nothing else in cudarc may be
/// called before this is true: cudarc panics where the library is missing.
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the library; calls nothing in it.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// True when libnvrtc can be loaded.
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen the library; calls nothing in it.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// True when the crate was built with a fatbin (nvcc was found at build time).
pub fn has_fatbin() -> bool {
    !FATBIN.is_empty()
}

/// The embedded kernel sources (one translation unit), as NVRTC compiles them.
pub fn kernels_source() -> &'static str {
    SOURCE
}

/// The primary context of device `ordinal`, after checking that a driver and the device exist.
///
/// # Errors
/// [`Error::NoDriver`] where libcuda cannot be loaded, [`Error::NoDevice`] where the ordinal is
/// out of range, [`Error::Driver`] when the driver fails.
pub fn context(ordinal: usize) -> Result<Arc<CudaContext>> {
    if !driver_present() {
        return Err(Error::NoDriver);
    }
    // cuInit fails with CUDA_ERROR_NO_DEVICE where a driver is installed but no GPU is
    // visible (a container without devices): that is "no device", not a driver failure.
    let count = CudaContext::device_count().unwrap_or(0);
    if ordinal >= count.max(0) as usize {
        return Err(Error::NoDevice(ordinal));
    }
    Ok(CudaContext::new(ordinal)?)
}

/// Compiles the embedded sources to PTX with NVRTC for `arch` (e.g. "compute_90").
///
/// # Errors
/// [`Error::NoNvrtc`] where libnvrtc cannot be loaded; [`Error::Compile`] with NVRTC's log.
pub fn compile_with_nvrtc(arch: &str) -> Result<Ptx> {
    if !nvrtc_present() {
        return Err(Error::NoNvrtc);
    }
    let opts = CompileOptions {
        options: vec![
            format!("--gpu-architecture={arch}"),
            "--std=c++17".into(),
            "-default-device".into(),
        ],
        ..Default::default()
    };
    cudarc::nvrtc::compile_ptx_with_opts(SOURCE, opts).map_err(|e| Error::Compile(e.to_string()))
}

type ModuleCache = Mutex<HashMap<usize, (Arc<CudaModule>, KernelOrigin)>>;

/// Loads the kernels into `ctx`, once per context.
pub(crate) fn load(ctx: &Arc<CudaContext>) -> Result<(Arc<CudaModule>, KernelOrigin)> {
    static CACHE: OnceLock<ModuleCache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = ctx.cu_ctx() as usize;
    let mut guard = cache.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(hit) = guard.get(&key) {
        return Ok(hit.clone());
    }
    let loaded = if has_fatbin() {
        (
            ctx.load_module(Ptx::from_binary(FATBIN.to_vec()))?,
            KernelOrigin::Fatbin,
        )
    } else {
        let (major, minor) = ctx.compute_capability()?;
        let ptx = compile_with_nvrtc(&format!("compute_{major}{minor}"))?;
        (ctx.load_module(ptx)?, KernelOrigin::Nvrtc)
    };
    guard.insert(key, loaded.clone());
    Ok(loaded)
}
