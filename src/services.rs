//! The real implementations of the domain's services.
use std::sync::Arc;

use argon2::password_hash::{
    PasswordHash as Phc, PasswordHasher as _, PasswordVerifier as _, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use authledger_aggregates::{
    Clock, Password, PasswordCheck, PasswordHash, PasswordHasher, Randomness, RecoveryCode,
    Reference, ServiceError, TotpSecret, RECOVERY_CODE_BYTES, TOTP_SECRET_BYTES,
};
use chrono::{DateTime, Utc};
use rand::rngs::OsRng;
use rand::RngCore;
use tokio::sync::Semaphore;

pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place the wall clock is read
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
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

/// argon2id on the blocking pool, at most `threads` hashes at once: a burst
/// of sign-ins waits for a permit rather than allocating argon2's memory
/// for every request at the same time.
pub struct Argon2Hasher {
    params: Params,
    permits: Arc<Semaphore>,
    dummy: PasswordHash,
}

impl Argon2Hasher {
    pub fn new(
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
        threads: usize,
    ) -> anyhow::Result<Self> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))?;
        let dummy = hash_blocking(&params, "authledger dummy password, never anyone's")
            .map_err(|e| anyhow::anyhow!(e.0))?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(threads.max(1))),
            dummy,
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(Params) -> T + Send + 'static,
    ) -> Result<T, ServiceError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ServiceError("the hashing pool is closed".into()))?;
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || {
            let result = work(params);
            drop(permit);
            result
        })
        .await
        .map_err(|_| ServiceError("a hashing task failed".into()))
    }
}

fn argon2(params: Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(params: &Params, password: &str) -> Result<PasswordHash, ServiceError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2(params.clone())
        .hash_password(password.as_bytes(), &salt)
        .map(|phc| PasswordHash(phc.to_string()))
        .map_err(|e| ServiceError(format!("hashing failed: {e}")))
}

fn verify_blocking(
    params: &Params,
    phc: &str,
    password: &str,
) -> Result<PasswordCheck, ServiceError> {
    let parsed =
        Phc::new(phc).map_err(|e| ServiceError(format!("a stored hash does not parse: {e}")))?;
    // Verification uses the parameters recorded in the hash itself.
    if argon2(params.clone())
        .verify_password(password.as_bytes(), &parsed)
        .is_err()
    {
        return Ok(PasswordCheck::Mismatch);
    }
    let current = parsed.algorithm == Algorithm::Argon2id.ident()
        && parsed.version == Some(Version::V0x13.into())
        && Params::try_from(&parsed).is_ok_and(|used| {
            used.m_cost() == params.m_cost()
                && used.t_cost() == params.t_cost()
                && used.p_cost() == params.p_cost()
        });
    Ok(PasswordCheck::Match {
        needs_rehash: !current,
    })
}

#[async_trait::async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<PasswordHash, ServiceError> {
        let password = password.expose().to_owned();
        self.run(move |params| hash_blocking(&params, &password))
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
            .run(move |params| verify_blocking(&params, &phc, &password))
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
        Argon2Hasher::new(memory_kib, 1, 1, 2).unwrap()
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
