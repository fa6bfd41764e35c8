use rayon::prelude::*;
use std::time::Instant;
fn main() {
    let n = 64 << 20; // 256 MB f32
    let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
    for _ in 0..3 {
        let t = Instant::now();
        let s: f32 = a.par_chunks(1 << 16).map(|c| { let mut acc = [0f32; 8]; for x in c.chunks_exact(8) { for i in 0..8 { acc[i] += x[i]; } } acc.iter().sum::<f32>() }).sum();
        let dt = t.elapsed().as_secs_f64();
        println!("read 2 threads: {:.1} GB/s ({s})", (n * 4) as f64 / dt / 1e9);
        let t = Instant::now();
        let s: f32 = a.chunks(1 << 16).map(|c| { let mut acc = [0f32; 8]; for x in c.chunks_exact(8) { for i in 0..8 { acc[i] += x[i]; } } acc.iter().sum::<f32>() }).sum();
        let dt = t.elapsed().as_secs_f64();
        println!("read 1 thread: {:.1} GB/s ({s})", (n * 4) as f64 / dt / 1e9);
    }
}
