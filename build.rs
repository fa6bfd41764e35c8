//! With feature `cuda`: compiles kernels/ with nvcc (through bindgen_cuda) into a static library holding
//! sm_80 and sm_90a machine code, so no PTX is JIT-compiled at first launch on an A100 or H100. Without it:
//! nothing.
//!
//! `CANDLE_FA2_HDIMS` (e.g. `CANDLE_FA2_HDIMS=64,128`), for development builds: compile only the
//! instantiations of those head dims (kernels/generated/*_hdim<d>*.cu) and every file that is not per
//! head_dim, a fraction of nvcc's time. The head-dim dispatch (kernels/generated/dispatch_head_dim.h) then
//! returns cudaErrorNotSupported for the others instead of failing to link (this script defines
//! CANDLE_FA2_HDIMS_FILTER and CANDLE_FA2_HAS_HDIM_<d> for each one compiled), and the Rust side turns that
//! into an error naming the head_dim, before it launches (`candle_fa2_has_head_dim`). Unset or empty: all.

fn main() {
    #[cfg(feature = "cuda")]
    cuda::build();
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    pub fn build() {
        println!("cargo:rerun-if-changed=build.rs");
        println!("cargo:rerun-if-changed=kernels");
        // Extra nvcc flags (e.g. a -D switch between tile configurations, to measure two builds side by side).
        println!("cargo:rerun-if-env-changed=CANDLE_FA2_NVCC_FLAGS");
        let extra_flags = std::env::var("CANDLE_FA2_NVCC_FLAGS").unwrap_or_default();
        println!("cargo:rerun-if-env-changed=CANDLE_FA2_HDIMS");
        let hdims_filter = std::env::var("CANDLE_FA2_HDIMS").unwrap_or_default();
        let mut kernels = Vec::new();
        let mut headers = Vec::new();
        walk(Path::new("kernels"), &mut kernels, &mut headers);
        let hdims = head_dim_filter(&hdims_filter, &kernels);
        if let Some(dims) = &hdims {
            kernels.retain(|k| head_dim_of(k).is_none_or(|d| dims.contains(&d)));
        }
        kernels.sort();
        headers.sort();
        // bindgen_cuda asks nvidia-smi for the local GPU unless CUDA_COMPUTE_CAP is set; our targets are
        // fixed (below), so a machine without a GPU must not need one.
        if std::env::var_os("CUDA_COMPUTE_CAP").is_none() {
            std::env::set_var("CUDA_COMPUTE_CAP", "90");
        }
        let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
        // The library does not depend on this crate's features or profile, yet cargo runs this script once
        // per combination (CI's `clippy --features cuda` here and the crates that depend on candle-fa2 with
        // other profile settings): each run would spend nvcc's 4 minutes (2 cores) again. So the objects
        // live beside the build dirs of this profile, <target>/<profile>/build/, in a folder named by what
        // they are built from: this source tree, the toolkit, the extra flags, the head-dim filter (each filter
        // its own library, so switching back and forth costs no rebuild). bindgen_cuda rebuilds when a kernel
        // or header is newer than the library.
        let nvcc_env = ["NVCC", "CUDA_ROOT", "CUDA_PATH", "CUDA_TOOLKIT_ROOT_DIR"].map(|v| {
            println!("cargo:rerun-if-env-changed={v}");
            std::env::var(v).unwrap_or_default()
        });
        let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        // Without a filter the key is what it was before there was one, so existing libraries stay valid.
        let hdims_key = hdims.as_ref().map(|d| format!("hdims {d:?}"));
        let key = fnv1a(
            [manifest_dir.as_str(), extra_flags.as_str()]
                .into_iter()
                .chain(nvcc_env.iter().map(String::as_str))
                .chain(hdims_key.as_deref()),
        );
        let kernels_dir = match out_dir.ancestors().nth(2) {
            Some(build_dir) if build_dir.ends_with("build") => build_dir.join(format!("candle-fa2-kernels-{key:016x}")),
            _ => out_dir.clone(),
        };
        std::fs::create_dir_all(&kernels_dir).expect("the target dir is writable");
        let lib = kernels_dir.join("libcandle_fa2_kernels.a");
        let mut builder = bindgen_cuda::Builder::default()
            .kernel_paths(kernels)
            .watch(headers)
            .out_dir(&kernels_dir)
            // bindgen_cuda adds --gpu-architecture=sm_<cap>: sm_80 machine code and compute_80 PTX (which
            // later GPUs compile at load time).
            .compute_cap(80)
            // Machine code for A100 (sm_80) and H100/H200 (sm_90a: sm_90 plus wgmma, which the Hopper
            // forward needs; a plain sm_90 image beside it would leave the choice between the two to the
            // loader, so there is none).
            .arg("-gencode=arch=compute_80,code=sm_80")
            .arg("-gencode=arch=compute_90a,code=sm_90a")
            .arg("-std=c++17")
            .arg("-O3")
            .arg("--use_fast_math")
            // Includes name their file from kernels/ ("common/ptx.cuh"), whichever folder includes them.
            .arg(Box::leak(format!("-I{manifest_dir}/kernels").into_boxed_str()));
        if let Some(dims) = &hdims {
            // For the Rust side's error message.
            let list: Vec<String> = dims.iter().map(u32::to_string).collect();
            println!("cargo:rustc-env=CANDLE_FA2_HDIMS_BUILT={}", list.join(","));
            builder = builder.arg("-DCANDLE_FA2_HDIMS_FILTER");
            for d in dims {
                builder = builder.arg(Box::leak(format!("-DCANDLE_FA2_HAS_HDIM_{d}").into_boxed_str()));
            }
        }
        // -fPIC and libstdc++ are the GNU toolchain's; MSVC builds position-independent code and links its
        // C++ runtime itself.
        let msvc = std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|env| env == "msvc");
        if !msvc {
            builder = builder.arg("-Xcompiler").arg("-fPIC");
        }
        for flag in extra_flags.split_whitespace() {
            // bindgen_cuda takes &'static str; a build script runs once, so leaking is fine.
            builder = builder.arg(Box::leak(flag.to_string().into_boxed_str()));
        }
        builder.build_lib(lib);
        println!("cargo:rustc-link-search=native={}", kernels_dir.display());
        println!("cargo:rustc-link-lib=static=candle_fa2_kernels");
        println!("cargo:rustc-link-lib=dylib=cudart");
        if !msvc {
            println!("cargo:rustc-link-lib=dylib=stdc++");
        }
    }

    /// The .cu files (kernels) and headers under `dir`, recursively.
    fn walk(dir: &Path, kernels: &mut Vec<PathBuf>, headers: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())) {
            let path = entry.expect("readable kernels/ entry").path();
            match path.extension().and_then(|e| e.to_str()) {
                _ if path.is_dir() => walk(&path, kernels, headers),
                Some("cu") => kernels.push(path),
                Some("cuh" | "h") => headers.push(path),
                _ => {}
            }
        }
    }

    /// The head_dim of a generated instantiation, from its name (`fwd_hdim128_bf16.cu`: 128); None for the
    /// files every build compiles.
    fn head_dim_of(kernel: &Path) -> Option<u32> {
        let name = kernel.file_stem()?.to_str()?;
        let digits: String = name.split_once("_hdim")?.1.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    }

    /// The head dims CANDLE_FA2_HDIMS names, checked against those the generated files instantiate; None
    /// when it is unset or empty (all of them).
    fn head_dim_filter(value: &str, kernels: &[PathBuf]) -> Option<BTreeSet<u32>> {
        if value.trim().is_empty() {
            return None;
        }
        let known: BTreeSet<u32> = kernels.iter().filter_map(|k| head_dim_of(k)).collect();
        let dims = value
            .split(',')
            .map(|d| match d.trim().parse::<u32>() {
                Ok(d) if known.contains(&d) => d,
                _ => panic!("CANDLE_FA2_HDIMS={value}: {d:?} is not an instantiated head_dim ({known:?})"),
            })
            .collect();
        Some(dims)
    }

    /// FNV-1a over the parts (each followed by a 0 byte): a stable name for the kernels' folder.
    fn fnv1a<'a>(parts: impl Iterator<Item = &'a str>) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for part in parts {
            for b in part.bytes().chain([0]) {
                h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }
}
