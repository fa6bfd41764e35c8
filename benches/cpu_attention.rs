//! CPU: the op against candle's softmax-matmul attention (`naive::attention`, what candle-transformers'
//! llama does), f32, batch 1, 4 heads, seqlen 512 / 2k / 8k, head_dim 64 and 128, causal and not.
//! Throughput is reported in FLOP/s with the FlashAttention convention (4·b·h·s²·d, halved when causal).
//!
//!   cargo bench --bench cpu_attention            (all rows, a few minutes on 2 cores)
//!   cargo bench --bench cpu_attention -- 2048    (criterion filter: rows whose name contains 2048)

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

criterion_group!(benches, bench);
criterion_main!(benches);
