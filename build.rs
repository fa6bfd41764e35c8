//! With feature `cuda`: compiles kernels/ with nvcc (through bindgen_cuda) into a static library holding
//! sm_80 and sm_90a machine code, so no PTX is JIT-compiled at first launch on an A100 or H100. Without it:
//! nothing.

fn main() {
    #[cfg(feature = "cuda")]
    cuda::build();
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::path::PathBuf;

    pub fn build() {
        println!("cargo:rerun-if-changed=build.rs");
        println!("cargo:rerun-if-changed=kernels");
        // Extra nvcc flags (e.g. a -D switch between tile configurations, to measure two builds side by side).
        println!("cargo:rerun-if-env-changed=CANDLE_FA2_NVCC_FLAGS");
        let extra_flags = std::env::var("CANDLE_FA2_NVCC_FLAGS").unwrap_or_default();
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
        // they are built from: this source tree, the toolkit, the extra flags. bindgen_cuda rebuilds when a
        // kernel or header is newer than the library.
        let nvcc_env = ["NVCC", "CUDA_ROOT", "CUDA_PATH", "CUDA_TOOLKIT_ROOT_DIR"].map(|v| {
            println!("cargo:rerun-if-env-changed={v}");
            std::env::var(v).unwrap_or_default()
        });
        let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        let key =
            fnv1a([manifest_dir.as_str(), extra_flags.as_str()].into_iter().chain(nvcc_env.iter().map(String::as_str)));
        let kernels_dir = match out_dir.ancestors().nth(2) {
            Some(build_dir) if build_dir.ends_with("build") => build_dir.join(format!("candle-fa2-kernels-{key:016x}")),
            _ => out_dir.clone(),
        };
        std::fs::create_dir_all(&kernels_dir).expect("the target dir is writable");
        let lib = kernels_dir.join("libcandle_fa2_kernels.a");
        let mut kernels: Vec<PathBuf> = std::fs::read_dir("kernels")
            .expect("kernels/ exists")
            .map(|e| e.expect("readable kernels/ entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "cu"))
            .collect();
        kernels.sort();
        let headers: Vec<PathBuf> = std::fs::read_dir("kernels")
            .expect("kernels/ exists")
            .map(|e| e.expect("readable kernels/ entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "cuh" || e == "h"))
            .collect();
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
            .arg("--use_fast_math");
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
