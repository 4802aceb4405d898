//! The real implementations of the domain's services.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use argon2_rust::params::Memory;
use argon2_rust::{Algorithm, Argon2, Hasher, Params, Version};
use authledger_aggregates::{
    Clock, Password, PasswordCheck, PasswordHash, PasswordHasher, Randomness, RecoveryCode,
    Reference, ServiceError, TotpSecret, RECOVERY_CODE_BYTES, TOTP_SECRET_BYTES,
};
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::rngs::OsRng;
use rand::RngCore;
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place the wall clock is read
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system clock moved by an offset that can be advanced: what the test
/// suite runs the server on, so a test moves time instead of sleeping.
/// With no offset it reads exactly as `SystemClock`.
#[derive(Default)]
pub struct AdjustableClock {
    offset_ms: std::sync::atomic::AtomicI64,
}

impl AdjustableClock {
    pub fn advance(&self, by: chrono::Duration) {
        self.offset_ms
            .fetch_add(by.num_milliseconds(), std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for AdjustableClock {
    fn now(&self) -> DateTime<Utc> {
        let offset = self.offset_ms.load(std::sync::atomic::Ordering::SeqCst);
        SystemClock.now() + chrono::Duration::milliseconds(offset)
    }
}

/// The OS CSPRNG.
pub struct OsRandomness;

impl Randomness for OsRandomness {
    fn reference(&self) -> Reference {
        let mut bytes = [0u8; 16];
        OsRng.fill_bytes(&mut bytes);
        Reference::from_bytes(bytes)
    }
}

pub fn new_totp_secret() -> TotpSecret {
    let mut bytes = [0u8; TOTP_SECRET_BYTES];
    OsRng.fill_bytes(&mut bytes);
    TotpSecret::from_bytes(bytes)
}

pub fn new_recovery_code() -> RecoveryCode {
    let mut bytes = [0u8; RECOVERY_CODE_BYTES];
    OsRng.fill_bytes(&mut bytes);
    RecoveryCode::from_random(bytes)
}

/// The hashing threads and the hashes waiting for one, shared by the
/// hasher, by the use cases that refuse work before it begins when no more
/// may wait, and by `/metrics`. Past the bound a hash is refused at once
/// (`ServiceError::Busy`): a queue that only grows makes every sign-in
/// slower, the owner's as much as a sprayer's.
#[derive(Clone)]
pub struct HashingQueue(Arc<Queue>);

struct Queue {
    threads: usize,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    /// How long hashes waited for a thread, for `/metrics`.
    wait: crate::metrics::Histogram,
}

impl HashingQueue {
    pub fn new(threads: usize, max_waiting: usize) -> Self {
        let threads = threads.max(1);
        Self(Arc::new(Queue {
            threads,
            permits: Arc::new(Semaphore::new(threads)),
            waiting: AtomicUsize::new(0),
            max_waiting,
            wait: crate::metrics::Histogram::default(),
        }))
    }

    pub fn threads(&self) -> usize {
        self.0.threads
    }

    /// Hashes waiting for a thread now.
    pub fn waiting(&self) -> usize {
        self.0.waiting.load(Ordering::SeqCst)
    }

    /// How long hashes waited for a thread.
    pub fn wait(&self) -> &crate::metrics::Histogram {
        &self.0.wait
    }

    /// Whether a hash asked for now would be refused.
    pub fn is_full(&self) -> bool {
        self.0.permits.available_permits() == 0 && self.waiting() >= self.0.max_waiting
    }

    /// A thread, at once or after the hashes ahead; `Busy` when as many
    /// wait as may.
    async fn thread(&self) -> Result<OwnedSemaphorePermit, ServiceError> {
        // Tokio's semaphore hands released permits to waiters first, so
        // this cannot jump the queue.
        if let Ok(permit) = self.0.permits.clone().try_acquire_owned() {
            self.0.wait.observe(std::time::Duration::ZERO);
            return Ok(permit);
        }
        let queued = std::time::Instant::now();
        let ahead = self.0.waiting.fetch_add(1, Ordering::SeqCst);
        // Also leaves the queue when the request is abandoned mid-wait.
        let _place = Place(&self.0.waiting);
        if ahead >= self.0.max_waiting {
            return Err(ServiceError::Busy);
        }
        let permit = self
            .0
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ServiceError::Failed("the hashing pool is closed".into()))?;
        self.0.wait.observe(queued.elapsed());
        Ok(permit)
    }
}

/// A place in the hashing queue, given up when dropped.
struct Place<'a>(&'a AtomicUsize);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// argon2id on the blocking pool, at most one hash per thread of `queue`
/// at once: a burst of sign-ins waits for a thread rather than allocating
/// argon2's memory for every request at the same time.
///
/// The kernel is `argon2-rust`, which picks its SIMD code (AVX-512, AVX2,
/// SSE2, NEON) from the CPU it runs on: the fastest of the kernels measured
/// in `benches/argon2.rs`. Its hashes are PHC strings the `argon2` crate
/// reads, and it reads theirs.
pub struct Argon2Hasher {
    params: Params,
    queue: HashingQueue,
    /// One hasher per thread, each keeping its work area between hashes.
    /// Freed after every hash instead, the allocator keeps those megabytes
    /// in per-thread arenas, so the process would grow with the number of
    /// threads that ever hashed rather than with the pool.
    hashers: Arc<Mutex<Vec<Hasher>>>,
    dummy: PasswordHash,
}

impl Argon2Hasher {
    pub fn new(
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        queue: HashingQueue,
    ) -> anyhow::Result<Self> {
        let params = argon2id_params(memory_kib, iterations, parallelism)?;
        let mut hashers = Vec::with_capacity(queue.threads());
        for _ in 0..queue.threads() {
            let mut hasher = argon2(params).hasher();
            // Its address space now, not at the first sign-in (the pages
            // are touched by the first hash).
            hasher
                .reserve()
                .map_err(|e| anyhow::anyhow!("argon2's work area: {e}"))?;
            hashers.push(hasher);
        }
        let dummy = hash_blocking("authledger dummy password, never anyone's", &mut hashers[0])
            .map_err(|e| anyhow::anyhow!(e))?;
        Ok(Self {
            params,
            queue,
            hashers: Arc::new(Mutex::new(hashers)),
            dummy,
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Params, &mut Hasher) -> T + Send + 'static,
    ) -> Result<T, ServiceError> {
        let permit = self.queue.thread().await?;
        let params = self.params;
        let pool = self.hashers.clone();
        tokio::task::spawn_blocking(move || {
            // A permit guarantees a free hasher; the fallback only guards
            // against a bug, at the cost of an allocation.
            let mut hasher = pool
                .lock()
                .ok()
                .and_then(|mut hashers| hashers.pop())
                .unwrap_or_else(|| argon2(params).hasher());
            let result = work(&params, &mut hasher);
            // A verify may have pointed it at a stored hash's parameters,
            // and grown its area for them: back to the configured ones, so
            // the memory kept stays one area per thread at today's cost.
            hasher.set_argon2(argon2(params));
            if hasher.reserved_blocks() > params.memory_blocks() as usize {
                hasher.clear();
                let _ = hasher.reserve();
            }
            if let Ok(mut hashers) = pool.lock() {
                hashers.push(hasher);
            }
            drop(permit);
            result
        })
        .await
        .map_err(|_| ServiceError::Failed("a hashing task failed".into()))
    }
}

fn argon2(params: Params) -> Argon2 {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// argon2id's parameters as the server's configuration names them.
fn argon2id_params(memory_kib: u32, iterations: u32, parallelism: u32) -> anyhow::Result<Params> {
    Params::builder()
        .memory(Memory::kib(u64::from(memory_kib)))
        .passes(iterations)
        .lanes(parallelism)
        .build()
        .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))
}

/// A hasher with the server's kernel and settings at these parameters, for
/// whoever measures what the server's hashing costs (the load generator).
pub fn argon2id_hasher(
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
) -> anyhow::Result<Hasher> {
    Ok(argon2(argon2id_params(memory_kib, iterations, parallelism)?).hasher())
}

/// A new hash of `password` at the hasher's parameters, with a salt of its
/// own, as a PHC string.
fn hash_blocking(password: &str, hasher: &mut Hasher) -> Result<PasswordHash, ServiceError> {
    let mut salt = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    let mut out = [0u8; 32];
    hasher
        .hash_into(password.as_bytes(), &salt, &mut out)
        .map_err(|e| ServiceError::Failed(format!("hashing failed: {e}")))?;
    let params = hasher.params();
    Ok(PasswordHash(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.memory_kib(),
        params.passes(),
        params.lanes(),
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(out)
    )))
}

fn verify_blocking(
    params: &Params,
    phc: &str,
    password: &str,
    hasher: &mut Hasher,
) -> Result<PasswordCheck, ServiceError> {
    // Verification uses the algorithm, version and parameters recorded in
    // the hash itself.
    let stored = argon2_rust::decode_phc(phc)
        .map_err(|e| ServiceError::Failed(format!("a stored hash does not parse: {e}")))?;
    if !stored.ad.is_empty() {
        return Err(ServiceError::Failed(
            "a stored hash carries associated data".into(),
        ));
    }
    // Ours are 32 bytes; a tag this short could be matched by chance.
    if stored.hash.len() < 16 {
        return Err(ServiceError::Failed(
            "a stored hash's tag is too short".into(),
        ));
    }
    hasher.set_argon2(Argon2::new(stored.algorithm, stored.version, stored.params));
    let mut out = vec![0u8; stored.hash.len()];
    hasher
        .hash_into(password.as_bytes(), &stored.salt, &mut out)
        .map_err(|e| ServiceError::Failed(format!("hashing failed: {e}")))?;
    if !bool::from(out.as_slice().ct_eq(&stored.hash)) {
        return Ok(PasswordCheck::Mismatch);
    }
    let current = stored.algorithm == Algorithm::Argon2id
        && stored.version == Version::V0x13
        && stored.params.memory_kib() == params.memory_kib()
        && stored.params.passes() == params.passes()
        && stored.params.lanes() == params.lanes();
    Ok(PasswordCheck::Match {
        needs_rehash: !current,
    })
}

#[async_trait::async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, ServiceError> {
        let password = password.expose().to_owned();
        self.run(move |_, hasher| hash_blocking(&password, hasher))
            .await?
    }

    async fn verify(
        &self,
        hash: Option<&PasswordHash>,
        password: &Password,
    ) -> Result<PasswordCheck, ServiceError> {
        let known = hash.is_some();
        let phc = hash.unwrap_or(&self.dummy).0.clone();
        let password = password.expose().to_owned();
        let check = self
            .run(move |params, hasher| verify_blocking(params, &phc, &password, hasher))
            .await??;
        Ok(if known {
            check
        } else {
            PasswordCheck::Mismatch
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher(memory_kib: u32) -> Argon2Hasher {
        Argon2Hasher::new(memory_kib, 1, 1, HashingQueue::new(2, 16)).unwrap()
    }

    fn password(s: &str) -> Password {
        Password::parse(s).unwrap()
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_no_other() {
        let hasher = hasher(1024);
        let hash = hasher.hash(&password("right password")).await.unwrap();
        assert!(hash.0.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert_eq!(
            hasher
                .verify(Some(&hash), &password("right password"))
                .await
                .unwrap(),
            PasswordCheck::Match {
                needs_rehash: false
            }
        );
        assert_eq!(
            hasher
                .verify(Some(&hash), &password("wrong password"))
                .await
                .unwrap(),
            PasswordCheck::Mismatch
        );
    }

    /// The `argon2` crate (RustCrypto) reads our hashes and we read its,
    /// so hashes stored before the kernel changed still verify.
    #[tokio::test]
    async fn hashes_agree_with_the_argon2_crate_both_ways() {
        use argon2::password_hash::{
            PasswordHash as Phc, PasswordHasher as _, PasswordVerifier as _, SaltString,
        };
        let rustcrypto = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(1024, 1, 1, None).unwrap(),
        );
        let ours = hasher(1024)
            .hash(&password("right password"))
            .await
            .unwrap();
        let parsed = Phc::new(&ours.0).unwrap();
        assert!(rustcrypto
            .verify_password(b"right password", &parsed)
            .is_ok());
        assert!(rustcrypto
            .verify_password(b"wrong password", &parsed)
            .is_err());
        let salt = SaltString::generate(&mut OsRng);
        let theirs = rustcrypto
            .hash_password(b"right password", &salt)
            .unwrap()
            .to_string();
        assert_eq!(
            hasher(1024)
                .verify(
                    Some(&PasswordHash(theirs.clone())),
                    &password("right password")
                )
                .await
                .unwrap(),
            PasswordCheck::Match {
                needs_rehash: false
            }
        );
        assert_eq!(
            hasher(1024)
                .verify(Some(&PasswordHash(theirs)), &password("wrong password"))
                .await
                .unwrap(),
            PasswordCheck::Mismatch
        );
    }

    /// A hash of another variant or version still verifies, and asks to be
    /// made again as argon2id v19.
    #[tokio::test]
    async fn an_older_variant_verifies_and_asks_for_a_rehash() {
        use argon2::password_hash::{PasswordHasher as _, SaltString};
        let salt = SaltString::generate(&mut OsRng);
        let argon2i_v16 = argon2::Argon2::new(
            argon2::Algorithm::Argon2i,
            argon2::Version::V0x10,
            argon2::Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"right password", &salt)
        .unwrap()
        .to_string();
        assert_eq!(
            hasher(1024)
                .verify(
                    Some(&PasswordHash(argon2i_v16)),
                    &password("right password")
                )
                .await
                .unwrap(),
            PasswordCheck::Match { needs_rehash: true }
        );
    }

    #[tokio::test]
    async fn each_hash_has_its_own_salt() {
        let hasher = hasher(1024);
        let a = hasher.hash(&password("same password")).await.unwrap();
        let b = hasher.hash(&password("same password")).await.unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn a_hash_made_with_other_parameters_asks_for_a_rehash() {
        let old = hasher(1024)
            .hash(&password("right password"))
            .await
            .unwrap();
        assert_eq!(
            hasher(2048)
                .verify(Some(&old), &password("right password"))
                .await
                .unwrap(),
            PasswordCheck::Match { needs_rehash: true }
        );
    }

    #[tokio::test]
    async fn past_the_bound_a_hash_is_refused_at_once_and_a_place_freed_is_taken_again() {
        let queue = HashingQueue::new(1, 1);
        let running = queue.thread().await.unwrap();
        assert!(!queue.is_full(), "one more may still wait");
        let waiting = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.thread().await.map(drop) })
        };
        while queue.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(queue.is_full());
        assert_eq!(queue.thread().await.unwrap_err(), ServiceError::Busy);
        assert_eq!(queue.waiting(), 1, "the refused hash took no place");

        drop(running);
        waiting.await.unwrap().unwrap();
        assert_eq!(queue.waiting(), 0);
        assert!(!queue.is_full());
    }

    #[tokio::test]
    async fn a_hash_abandoned_while_it_waits_leaves_the_queue() {
        let queue = HashingQueue::new(1, 4);
        let _running = queue.thread().await.unwrap();
        let abandoned = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.thread().await.map(drop) })
        };
        while queue.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        abandoned.abort();
        let _ = abandoned.await;
        assert_eq!(queue.waiting(), 0);
    }

    #[tokio::test]
    async fn without_a_hash_the_answer_is_a_mismatch() {
        let hasher = hasher(1024);
        assert_eq!(
            hasher
                .verify(None, &password("authledger dummy password, never anyone's"))
                .await
                .unwrap(),
            PasswordCheck::Mismatch
        );
    }
}
