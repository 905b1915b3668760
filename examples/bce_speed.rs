//! Single-thread throughput of the binary cross-entropy kernels on every instruction set the
//! CPU has: `cargo run --release --example bce_speed [n]`. For profiling the kernels without
//! Python in the way (`perf record`, `valgrind --tool=callgrind`).

use std::time::Instant;

use crossent::kernels::bce::{binary_cross_entropy_on, Inputs, Kind, Operands};
use crossent::kernels::float::{Bool, Float, Target};
use crossent::kernels::isa::{detected, Isa};
use crossent::kernels::nan::NanPolicy;
use crossent::kernels::reduce::Partial;
use crossent::kernels::strided::{Dst, Layout, Src};

fn ops<T: Float, Y: Target>(x: &[T], y: &[Y]) -> Operands<T, Y> {
    Operands {
        inputs: Inputs {
            input: Src::native(x.as_ptr()),
            target: Src::native(y.as_ptr()),
            weight: Src::native(T::one_ref()),
            pos_weight: Src::native(T::one_ref()),
        },
        out: Dst::null(),
        sample_weight: None,
        nan: NanPolicy::Propagate,
        layout: Layout::new(&[x.len()], [&[1], &[1], &[0], &[0], &[0], &[0]]),
    }
}

/// Best time of `reps` calls to `f`, in seconds.
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Thread scaling at size `n` (`THREADS=1,2,4,...`): BCE and BCE with logits on float32
/// 0/1 targets (what `peerbench` measures), BCE on float64, and the time to read both inputs
/// once (the memory floor), in Melem/s.
fn scaling(n: usize, threads: &str) {
    use rayon::prelude::*;
    let mut s = 0x9e37_79b9_u64;
    let mut u = move || {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let p: Vec<f32> = (0..n).map(|_| (u() * 0.999_998 + 1e-6) as f32).collect();
    let y: Vec<f32> = (0..n).map(|_| (u() < 0.5) as u8 as f32).collect();
    let x: Vec<f32> = p.iter().map(|&v| (v - 0.5) * 12.0).collect();
    let p64: Vec<f64> = p.iter().map(|&v| v as f64).collect();
    let y64: Vec<f64> = y.iter().map(|&v| v as f64).collect();
    println!("threads | bce f32 | logits f32 | bce f64 | read floor f32 (p, y)");
    for t in threads
        .split(',')
        .map(|t| t.trim().parse::<usize>().expect("THREADS"))
    {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .unwrap();
        let run = |o: &Operands<f32, f32>, kind| {
            // SAFETY: the operands are live slices of equal length.
            unsafe { binary_cross_entropy_on(Partial::EMPTY, o, kind, Some(&pool), detected()) }
        };
        let (op, ox) = (ops(&p, &y), ops(&x, &y));
        let o64 = ops(&p64, &y64);
        let reps = 7;
        let bce = best(reps, || {
            run(&op, Kind::Probabilities);
        });
        let logits = best(reps, || {
            run(&ox, Kind::Logits);
        });
        let bce64 = best(reps, || unsafe {
            binary_cross_entropy_on(
                Partial::EMPTY,
                &o64,
                Kind::Probabilities,
                Some(&pool),
                detected(),
            );
        });
        let floor = best(reps, || {
            let s: f32 = pool.install(|| {
                p.par_chunks(1 << 15)
                    .zip(y.par_chunks(1 << 15))
                    .map(|(a, b)| {
                        let mut acc = [0f32; 16];
                        for (ca, cb) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
                            for k in 0..16 {
                                acc[k] += ca[k] + cb[k];
                            }
                        }
                        acc.iter().sum::<f32>()
                    })
                    .sum()
            });
            std::hint::black_box(s);
        });
        let m = |t: f64| n as f64 / t / 1e6;
        println!(
            "{t:7} | {:7.0} | {:10.0} | {:7.0} | {:7.0}",
            m(bce),
            m(logits),
            m(bce64),
            m(floor)
        );
    }
}

fn time<T: Float, Y: Target>(name: &str, isa: Isa, kind: Kind, x: &[T], y: &[Y]) {
    if let Ok(only) = std::env::var("CASE") {
        if !format!("{} {name}", T::NAME).contains(&only) {
            return;
        }
    }
    let o = ops(x, y);
    let mut best = f64::INFINITY;
    let mut sum = 0.0;
    // Best of many runs: on a busy machine the minimum is the least disturbed.
    let reps = std::env::var("REPS").map_or((1 << 26) / x.len() + 5, |r| r.parse().expect("REPS"));
    for _ in 0..reps {
        let t = Instant::now();
        // SAFETY: the operands are live slices of equal length.
        sum = unsafe { binary_cross_entropy_on(Partial::EMPTY, &o, kind, None, isa) }.sum;
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{:7} {:7} {name:22} {:7.0} Melem/s  (sum {sum:.6e})",
        isa.name(),
        T::NAME,
        x.len() as f64 / best / 1e6
    );
}

fn run<T: Float + Target>(n: usize, isa: Isa) {
    let mut s = 0x1234_5678_u64;
    let mut u = move || {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    let p: Vec<T> = (0..n).map(|_| <T as Float>::from_f64(u())).collect();
    let soft: Vec<T> = (0..n).map(|_| <T as Float>::from_f64(u())).collect();
    let hard: Vec<T> = (0..n)
        .map(|_| <T as Float>::from_f64((u() < 0.5) as u8 as f64))
        .collect();
    let b: Vec<Bool> = hard
        .iter()
        .map(|&h| Bool((h.to_f64() != 0.0) as u8))
        .collect();
    let x: Vec<T> = p
        .iter()
        .map(|&v| <T as Float>::from_f64((v.to_f64() - 0.5) * 16.0))
        .collect();
    time("bce soft", isa, Kind::Probabilities, &p, &soft);
    time("bce hard (float 0/1)", isa, Kind::Probabilities, &p, &hard);
    time("bce hard (bool)", isa, Kind::Probabilities, &p, &b);
    time("logits soft", isa, Kind::Logits, &x, &soft);
    time("logits hard (bool)", isa, Kind::Logits, &x, &b);
}

fn main() {
    let n = std::env::args()
        .nth(1)
        .map_or(1 << 22, |a| a.parse::<f64>().expect("n") as usize);
    if let Ok(threads) = std::env::var("THREADS") {
        return scaling(n, &threads);
    }
    let only = std::env::var("CROSSENT_ISA")
        .ok()
        .and_then(|v| Isa::parse(&v));
    for isa in Isa::ALL.into_iter().rev().filter(|&i| i <= detected()) {
        if only.is_some_and(|o| o != isa) {
            continue;
        }
        run::<f32>(n, isa);
        run::<f64>(n, isa);
    }
}
