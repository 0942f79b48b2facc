//! The DH config as the client caches it (`end-to-end.md`, "Sending a Request"): ask with the
//! cached version, keep the cache on `messages.dhConfigNotModified`, validate a new `(p, g)`
//! before use. The expensive safe-prime verdict is supplied by the caller (the engine keeps
//! verdicts per `p` in its store so each prime is checked once per database).

use std::sync::Arc;

use secretchat_schema::api::enums::messages::DhConfig;
use secretchat_schema::api::functions::messages::GetDhConfig;

use crate::crypto::dh::{DhError, DhParams};

/// Bytes of server randomness asked for (mixed into every secret exponent).
pub const RANDOM_LENGTH: i32 = 256;

/// Why a `messages.DhConfig` answer cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DhConfigError {
    /// `dhConfigNotModified` while nothing is cached (a confused or hostile server).
    #[error("server said not modified, but no config is cached")]
    NotModifiedWithoutCache,
    /// `p` or `g` failed validation.
    #[error(transparent)]
    Invalid(#[from] DhError),
    /// The server's `random` is longer than asked for.
    #[error("server random of {0} bytes")]
    RandomTooLong(usize),
}

/// A usable config: validated parameters, their version, and this answer's randomness.
#[derive(Debug, Clone)]
pub struct Fresh {
    /// The parameters (shared by every chat using this version).
    pub params: Arc<DhParams>,
    /// The server's `random` for this request.
    pub random: Vec<u8>,
    /// Whether `(p, g)` changed with this answer.
    pub changed: bool,
}

/// The cached config of one account.
#[derive(Debug, Default, Clone)]
pub struct DhConfigCache {
    current: Option<(i32, Arc<DhParams>)>,
}

impl DhConfigCache {
    /// The cached version (0 when nothing is cached).
    pub fn version(&self) -> i32 {
        self.current.as_ref().map_or(0, |(v, _)| *v)
    }

    /// The cached parameters.
    pub fn params(&self) -> Option<&Arc<DhParams>> {
        self.current.as_ref().map(|(_, p)| p)
    }

    /// Restores a cached config (e.g. from the store).
    pub fn restore(&mut self, version: i32, params: Arc<DhParams>) {
        self.current = Some((version, params));
    }

    /// The `messages.getDhConfig` call to make.
    pub fn request(&self) -> GetDhConfig {
        GetDhConfig {
            version: self.version(),
            random_length: RANDOM_LENGTH,
        }
    }

    /// Applies the server's answer. For a new `p`, `is_safe_prime(p)` is asked (cache its
    /// verdicts: it costs ~150 ms); the cache changes only when the answer is valid.
    ///
    /// # Errors
    /// [`DhConfigError`]; the cached config is unchanged then.
    pub fn apply(
        &mut self,
        answer: DhConfig,
        is_safe_prime: impl FnOnce(&[u8]) -> bool,
    ) -> Result<Fresh, DhConfigError> {
        self.apply_with(answer, is_safe_prime, |p| Arc::new(p.tuned()))
    }

    /// [`DhConfigCache::apply`], with `share` turning new validated parameters into the
    /// shared ones (an engine keeps one set, [`DhParams::tuned`], per `(p, g)` for all
    /// its accounts).
    ///
    /// # Errors
    /// As [`DhConfigCache::apply`].
    pub fn apply_with(
        &mut self,
        answer: DhConfig,
        is_safe_prime: impl FnOnce(&[u8]) -> bool,
        share: impl FnOnce(DhParams) -> Arc<DhParams>,
    ) -> Result<Fresh, DhConfigError> {
        match answer {
            DhConfig::NotModified(n) => {
                check_random(&n.random)?;
                let params = self
                    .params()
                    .cloned()
                    .ok_or(DhConfigError::NotModifiedWithoutCache)?;
                Ok(Fresh {
                    params,
                    random: n.random,
                    changed: false,
                })
            }
            DhConfig::DhConfig(c) => {
                check_random(&c.random)?;
                if let Some((v, params)) = &self.current {
                    if *v == c.version
                        && params.p_bytes()[..] == c.p[..]
                        && params.g() as i32 == c.g
                    {
                        return Ok(Fresh {
                            params: params.clone(),
                            random: c.random,
                            changed: false,
                        });
                    }
                }
                let params = DhParams::new(&c.p, i64::from(c.g))?;
                if !is_safe_prime(&c.p) {
                    return Err(DhError::NotSafePrime.into());
                }
                let params = share(params);
                self.current = Some((c.version, params.clone()));
                Ok(Fresh {
                    params,
                    random: c.random,
                    changed: true,
                })
            }
        }
    }
}

fn check_random(r: &[u8]) -> Result<(), DhConfigError> {
    if r.len() > RANDOM_LENGTH as usize {
        return Err(DhConfigError::RandomTooLong(r.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::prime::TELEGRAM_DH_PRIME;
    use secretchat_schema::api::types::messages as t;

    fn config(version: i32, p: &[u8], g: i32) -> DhConfig {
        DhConfig::DhConfig(t::DhConfig {
            g,
            p: p.to_vec(),
            version,
            random: vec![1; 256],
        })
    }

    #[test]
    fn not_modified_keeps_the_cache_and_primes_are_checked_once() {
        let mut cache = DhConfigCache::default();
        assert_eq!(cache.request().version, 0);
        let not_modified = || {
            DhConfig::NotModified(t::DhConfigNotModified {
                random: vec![2; 256],
            })
        };
        assert_eq!(
            cache.apply(not_modified(), |_| true).unwrap_err(),
            DhConfigError::NotModifiedWithoutCache
        );
        let mut checks = 0;
        let fresh = cache
            .apply(config(3, &TELEGRAM_DH_PRIME, 3), |_| {
                checks += 1;
                true
            })
            .unwrap();
        assert!(fresh.changed);
        assert_eq!(cache.request().version, 3);
        let again = cache
            .apply(not_modified(), |_| panic!("no re-check"))
            .unwrap();
        assert!(!again.changed && Arc::ptr_eq(&again.params, &fresh.params));
        assert_eq!(again.random, vec![2; 256]);
        let same = cache
            .apply(config(3, &TELEGRAM_DH_PRIME, 3), |_| panic!("no re-check"))
            .unwrap();
        assert!(!same.changed);
        assert_eq!(checks, 1);
    }

    #[test]
    fn invalid_configs_leave_the_cache_alone() {
        let mut cache = DhConfigCache::default();
        let _ = cache
            .apply(config(1, &TELEGRAM_DH_PRIME, 3), |_| true)
            .unwrap();
        assert_eq!(
            cache
                .apply(config(2, &TELEGRAM_DH_PRIME, 3), |_| false)
                .unwrap_err(),
            DhConfigError::Invalid(DhError::NotSafePrime)
        );
        assert!(matches!(
            cache.apply(config(2, &TELEGRAM_DH_PRIME, 9), |_| true),
            Err(DhConfigError::Invalid(DhError::GeneratorRange(9)))
        ));
        assert!(matches!(
            cache.apply(config(2, &TELEGRAM_DH_PRIME[1..], 3), |_| true),
            Err(DhConfigError::Invalid(DhError::PrimeSize))
        ));
        let mut long = config(2, &TELEGRAM_DH_PRIME, 3);
        if let DhConfig::DhConfig(c) = &mut long {
            c.random = vec![0; 257];
        }
        assert_eq!(
            cache.apply(long, |_| true).unwrap_err(),
            DhConfigError::RandomTooLong(257)
        );
        assert_eq!(cache.version(), 1);
    }
}
