//! With feature `cuda`: compiles kernels/ with nvcc (through bindgen_cuda) into a static library holding
//! sm_80 and sm_90 machine code, so no PTX is JIT-compiled at first launch. Without it: nothing.

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
        // bindgen_cuda asks nvidia-smi for the local GPU unless CUDA_COMPUTE_CAP is set; our targets are
        // fixed (below), so a machine without a GPU must not need one.
        if std::env::var_os("CUDA_COMPUTE_CAP").is_none() {
            std::env::set_var("CUDA_COMPUTE_CAP", "90");
        }
        let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
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
        bindgen_cuda::Builder::default()
            .kernel_paths(kernels)
            .watch(headers)
            .out_dir(&out_dir)
            .compute_cap(90)
            // Machine code for A100 (sm_80) and H100 (sm_90); bindgen_cuda adds --gpu-architecture=sm_90.
            .arg("-gencode=arch=compute_80,code=sm_80")
            .arg("-gencode=arch=compute_90,code=sm_90")
            .arg("-std=c++17")
            .arg("-O3")
            .arg("--use_fast_math")
            .arg("-Xcompiler")
            .arg("-fPIC")
            .build_lib(out_dir.join("libcandle_fa2_kernels.a"));
        println!("cargo:rustc-link-search=native={}", out_dir.display());
        println!("cargo:rustc-link-lib=static=candle_fa2_kernels");
        println!("cargo:rustc-link-lib=dylib=cudart");
        println!("cargo:rustc-link-lib=dylib=stdc++");
    }
}
