//! CPU: the op against candle's softmax-matmul attention (`naive::attention`, what candle-transformers'
//! llama does).
//! - Prefill: f32, batch 1, 4 heads, seqlen 512 / 2k / 8k, head_dim 64 and 128, causal and not; FLOP/s with
//!   the FlashAttention convention (4·b·h·s²·d, halved when causal).
//! - Decode: one query row per sequence against a KV cache narrowed from a larger buffer (as a model's
//!   preallocated cache hands it out), causal, in the shapes of SmolLM2-135M (9 / 3 heads, d64, f32) and
//!   Llama-3-8B (32 / 8 heads, d128, bf16); bytes/s of K and V read. `CANDLE_FA2_NO_DECODE=1` times the
//!   prefill path on the same rows.
//!
//!   cargo bench --bench cpu_attention            (all rows, a few minutes on 2 cores)
//!   cargo bench --bench cpu_attention -- 2048    (criterion filter: rows whose name contains 2048)
//!   cargo bench --bench cpu_attention -- decode  (the decode rows)

use candle_core::{DType, Device, Tensor};
use candle_fa2::{flash_attn, naive, AttnOptions};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const HEADS: usize = 4;

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    for seqlen in [512, 2048, 8192] {
        for head_dim in [64, 128] {
            for causal in [false, true] {
                let make = || Tensor::randn(0f32, 1.0, (1, seqlen, HEADS, head_dim), &dev).unwrap();
                let (q, k, v) = (make(), make(), make());
                assert_eq!(q.dtype(), DType::F32);
                let opts = AttnOptions::default().with_causal(causal);
                let flops = 4 * HEADS * seqlen * seqlen * head_dim / if causal { 2 } else { 1 };
                let mut group = c.benchmark_group(format!("d{head_dim}/{}", if causal { "causal" } else { "full" }));
                group.throughput(Throughput::Elements(flops as u64));
                group.sample_size(10);
                if seqlen >= 8192 {
                    group.measurement_time(std::time::Duration::from_secs(20));
                }
                group.bench_with_input(BenchmarkId::new("flash", seqlen), &seqlen, |b, _| {
                    b.iter(|| flash_attn(&q, &k, &v, &opts).unwrap())
                });
                group.bench_with_input(BenchmarkId::new("naive", seqlen), &seqlen, |b, _| {
                    b.iter(|| naive::attention(&q, &k, &v, &opts).unwrap())
                });
                group.finish();
            }
        }
    }
}

fn bench_decode(c: &mut Criterion) {
    let dev = Device::Cpu;
    // (name, batch, cache length, heads_q, heads_kv, head_dim, dtype)
    let rows = [
        ("smollm2", 1, 2048, 9, 3, 64, DType::F32),
        ("smollm2", 1, 8192, 9, 3, 64, DType::F32),
        ("llama3-8b", 1, 8192, 32, 8, 128, DType::BF16),
        ("llama3-8b", 1, 32768, 32, 8, 128, DType::BF16),
        ("llama3-8b", 4, 8192, 32, 8, 128, DType::BF16),
    ];
    let mut group = c.benchmark_group("decode");
    group.sample_size(10);
    for (name, batch, len, heads_q, heads_kv, head_dim, dtype) in rows {
        let buffer = |rows| Tensor::randn(0f32, 1.0, (batch, rows, heads_kv, head_dim), &dev)?.to_dtype(dtype);
        let (k, v) = (buffer(len + 256).unwrap(), buffer(len + 256).unwrap());
        let (k, v) = (k.narrow(1, 0, len).unwrap(), v.narrow(1, 0, len).unwrap());
        let q = Tensor::randn(0f32, 1.0, (batch, 1, heads_q, head_dim), &dev).unwrap().to_dtype(dtype).unwrap();
        let opts = AttnOptions::causal();
        let id = format!("{name}/b{batch}/{dtype:?}");
        group.throughput(Throughput::Bytes((2 * batch * len * heads_kv * head_dim * dtype.size_in_bytes()) as u64));
        group.bench_with_input(BenchmarkId::new(format!("flash/{id}"), len), &len, |b, _| {
            b.iter(|| flash_attn(&q, &k, &v, &opts).unwrap())
        });
        group.bench_with_input(BenchmarkId::new(format!("naive/{id}"), len), &len, |b, _| {
            b.iter(|| naive::attention(&q, &k, &v, &opts).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench, bench_decode);
criterion_main!(benches);
