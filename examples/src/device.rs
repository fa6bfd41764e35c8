//! Device and dtype choice shared by the examples' command lines.

use candle_core::{DType, Device};

/// CUDA device 0 when built with the `cuda` feature and one is present, else the CPU.
pub fn pick_device(cpu: bool) -> Device {
    if cpu || !candle_core::utils::cuda_is_available() {
        return Device::Cpu;
    }
    Device::new_cuda(0).unwrap_or_else(|e| {
        eprintln!("no usable CUDA device ({e}): running on the CPU");
        Device::Cpu
    })
}

/// A clap `value_parser` for `--dtype`.
pub fn parse_dtype(s: &str) -> Result<DType, String> {
    match s {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        other => Err(format!("unknown dtype '{other}': expected f32, f16 or bf16")),
    }
}

/// f32 on the CPU; bf16 on CUDA, where the kernels take f16 or bf16 only.
pub fn default_dtype(device: &Device) -> DType {
    if device.is_cuda() {
        DType::BF16
    } else {
        DType::F32
    }
}
