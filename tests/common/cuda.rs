//! Helpers of the GPU suites only (compiled with the `cuda` feature): the one device, pool poisoning, moving
//! options to the CPU, and the CPU op as the oracle.

use candle_core::{Device, Result, Tensor};
use candle_fa2::{reference, AttnOptions};

use super::tolerance;

/// One device for a whole GPU suite: tensors of two `Device::new_cuda(0)` instances cannot be mixed.
pub fn gpu() -> Device {
    static GPU: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
    GPU.get_or_init(|| Device::new_cuda(0).expect("a CUDA device")).clone()
}

/// One call each of a window, softcap with a scale and causal ALiBi (slopes for 4 query heads): the options
/// once more on top of another dimension of a suite (f32 inputs, say).
pub fn option_sample() -> Result<[AttnOptions; 3]> {
    let slopes = Tensor::new(&[0.5f32, 0.25, 0.125, 0.0625], &gpu())?;
    Ok([
        AttnOptions::default().with_window(Some(5), Some(70)),
        AttnOptions::default().with_softcap(5.0).with_softmax_scale(0.6),
        AttnOptions::causal().with_alibi_slopes(slopes),
    ])
}

/// The op on the GPU against the CPU op on the same (CPU) inputs, and two GPU runs against each other,
/// which must be bitwise equal. Returns the inputs on the GPU.
#[track_caller]
pub fn gpu_matches_cpu_and_repeats(q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttnOptions) -> Result<[Tensor; 3]> {
    let dev = gpu();
    let on_cpu = candle_fa2::flash_attn(q, k, v, opts)?;
    let (qg, kg, vg) = (q.to_device(&dev)?, k.to_device(&dev)?, v.to_device(&dev)?);
    let first = candle_fa2::flash_attn(&qg, &kg, &vg, opts)?;
    let second = candle_fa2::flash_attn(&qg, &kg, &vg, opts)?;
    assert_eq!(reference::max_abs_diff(&first, &second)?, 0.0, "two runs differ");
    let diff = reference::max_abs_diff(&first, &on_cpu)?;
    assert!(diff < tolerance::CUDA_VS_CPU, "cpu vs cuda: {diff}");
    Ok([qg, kg, vg])
}

/// Leaves NaN-filled memory in the device's pool, so an output element a kernel forgets to write shows up
/// as NaN (the checks reject non-finite outputs).
pub fn poison_pool(dev: &Device, elems: usize) -> Result<()> {
    let poison = Tensor::full(f32::NAN, elems, dev)?;
    dev.synchronize()?;
    drop(poison);
    Ok(())
}

/// The options with ALiBi slopes moved to the CPU, for the CPU op or the reference on the GPU test's inputs.
pub fn opts_on_cpu(opts: &AttnOptions) -> Result<AttnOptions> {
    let slopes = opts.alibi_slopes.as_ref().map(|s| s.to_device(&Device::Cpu)).transpose()?;
    Ok(AttnOptions { alibi_slopes: slopes, ..opts.clone() })
}
