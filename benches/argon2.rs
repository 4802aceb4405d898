//! The argon2id kernels a Rust build can use, at the service's parameters
//! (m=19456 KiB, t=2, p=1): `cargo bench --bench argon2`.
//!
//! Each kernel hashes the same password and salt, and must give the same
//! output as the others (checked before anything is timed). For each one,
//! alternately, twice: the median of one thread's hashes, and how many hashes
//! two threads finish at once in a few seconds (argon2id is bound by memory
//! bandwidth, so two threads rarely give twice one). Every kernel reuses one
//! work area per thread, as the service does.
//!
//! Left out: `argon2-kdf` (the C reference through bindgen, which needs
//! libclang, and whose SIMD is chosen when it is compiled, not at run time)
//! and `rust-argon2` (no SIMD at all).
#![allow(clippy::unwrap_used, clippy::expect_used)] // setup failures end the benchmark

use std::time::{Duration, Instant};

const MEMORY_KIB: u32 = 19_456;
const PASSES: u32 = 2;
const PASSWORD: &[u8] = b"violet-tangerine-harbour-42";
const SALT: &[u8] = b"sixteen byte slt";
const SINGLE_SAMPLES: usize = 41;
const PAIR_SECONDS: u64 = 4;

/// Hashes the benchmark's password and salt into its argument.
type Hash = Box<dyn FnMut(&mut [u8; 32])>;

/// One kernel: makes a hasher that owns its work area, for one thread.
struct Kernel {
    name: &'static str,
    hasher: fn() -> Hash,
}

fn argon2_05() -> Hash {
    use argon2::{Algorithm, Argon2, Block, Params, Version};
    let params = Params::new(MEMORY_KIB, PASSES, 1, None).unwrap();
    let mut area = vec![Block::default(); params.block_count()];
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    Box::new(move |out| {
        argon2
            .hash_password_into_with_memory(PASSWORD, SALT, out, &mut area)
            .unwrap()
    })
}

fn argon2_06() -> Hash {
    use argon2_06::{Algorithm, Argon2, Block, Params, Version};
    let params = Params::new(MEMORY_KIB, PASSES, 1, None).unwrap();
    let mut area = vec![Block::default(); params.block_count()];
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    Box::new(move |out| {
        argon2
            .hash_password_into_with_memory(PASSWORD, SALT, out, &mut area)
            .unwrap()
    })
}

fn argon2_rust() -> Hash {
    use argon2_rust::params::Memory;
    use argon2_rust::{Algorithm, Argon2, Params, Version};
    let params = Params::builder()
        .memory(Memory::kib(u64::from(MEMORY_KIB)))
        .passes(PASSES)
        .lanes(1)
        .build()
        .unwrap();
    let mut hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params).hasher();
    Box::new(move |out| hasher.hash_into(PASSWORD, SALT, out).unwrap())
}

const KERNELS: &[Kernel] = &[
    Kernel {
        name: "argon2 0.5.3",
        hasher: argon2_05,
    },
    Kernel {
        name: "argon2 0.6.0",
        hasher: argon2_06,
    },
    Kernel {
        name: "argon2-rust 1.1.0",
        hasher: argon2_rust,
    },
];

fn single_thread_median(kernel: &Kernel) -> Duration {
    let mut hash = (kernel.hasher)();
    let mut out = [0u8; 32];
    hash(&mut out); // the work area's first touch is not a verify's cost
    let mut samples: Vec<Duration> = (0..SINGLE_SAMPLES)
        .map(|_| {
            let start = Instant::now();
            hash(&mut out);
            start.elapsed()
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn two_threads_rate(kernel: &Kernel) -> f64 {
    let hasher = kernel.hasher;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(PAIR_SECONDS);
    let done: usize = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(move || {
                    let mut hash = hasher();
                    let mut out = [0u8; 32];
                    let mut count = 0;
                    while Instant::now() < deadline {
                        hash(&mut out);
                        count += 1;
                    }
                    count
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    });
    done as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; a filter narrows the kernels.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let kernels: Vec<&Kernel> = KERNELS
        .iter()
        .filter(|k| filter.as_deref().is_none_or(|f| k.name.contains(f)))
        .collect();

    let outputs: Vec<[u8; 32]> = kernels
        .iter()
        .map(|k| {
            let mut out = [0u8; 32];
            (k.hasher)()(&mut out);
            out
        })
        .collect();
    assert!(
        outputs.windows(2).all(|w| w[0] == w[1]),
        "the kernels disagree on argon2id's output"
    );

    println!(
        "argon2id m={MEMORY_KIB} KiB, t={PASSES}, p=1; {} CPUs; one thread: median of {SINGLE_SAMPLES}; two threads: {PAIR_SECONDS} s; argon2-rust's backend here: {:?}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        argon2_rust::detected_backend(),
    );
    println!("| kernel | round | one thread | ceiling (2 ÷ one) | two threads at once | of the ceiling |");
    println!("|---|---|---|---|---|---|");
    for round in 1..=2 {
        for kernel in &kernels {
            let one = single_thread_median(kernel);
            let ceiling = 2.0 / one.as_secs_f64();
            let pair = two_threads_rate(kernel);
            println!(
                "| {} | {round} | {:.2} ms | {ceiling:.1}/s | {pair:.1}/s | {:.0} % |",
                kernel.name,
                one.as_secs_f64() * 1e3,
                100.0 * pair / ceiling
            );
        }
    }
}
