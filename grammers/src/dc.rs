//! Calls to another data center: encrypted files live on the DC their `encryptedFile.dc_id`
//! names, and the engine downloads them there ([`secretchat::ServerApi::invoke_in_dc`]).
//!
//! grammers' sender pool connects to any DC on demand and makes an auth key for it, but the
//! key is not logged in: as grammers-client does for its own media, the account's
//! authorization is copied there once — `auth.exportAuthorization` on the home DC,
//! `auth.importAuthorization` on the other.

use std::collections::HashSet;
use std::future::Future;

use grammers_tl_types as tl;
use grammers_tl_types::{Deserializable, Serializable};
use secretchat::RpcError;
use tokio::sync::Mutex;

/// The DCs this connection's authorization was copied to (one copy at a time).
#[derive(Debug, Default)]
pub struct CopiedAuth(Mutex<HashSet<i32>>);

/// Sends `request` to DC `dc` through `call(dc, bytes)`, copying the authorization from
/// `home` first if this is the first call there.
///
/// # Errors
/// The calls' own errors; `-503 BAD_RESPONSE` for an export answer that does not decode.
pub async fn invoke_in_dc<F, Fut>(
    copied: &CopiedAuth,
    home: i32,
    dc: i32,
    request: Vec<u8>,
    call: F,
) -> Result<Vec<u8>, RpcError>
where
    F: Fn(i32, Vec<u8>) -> Fut,
    Fut: Future<Output = Result<Vec<u8>, RpcError>>,
{
    if dc != home {
        let mut done = copied.0.lock().await;
        if !done.contains(&dc) {
            let export = tl::functions::auth::ExportAuthorization { dc_id: dc };
            let answer = call(home, export.to_bytes()).await?;
            let tl::enums::auth::ExportedAuthorization::Authorization(a) =
                tl::enums::auth::ExportedAuthorization::from_bytes(&answer)
                    .map_err(|_| RpcError::new(-503, "BAD_RESPONSE"))?;
            let import = tl::functions::auth::ImportAuthorization {
                id: a.id,
                bytes: a.bytes,
            };
            call(dc, import.to_bytes()).await?;
            done.insert(dc);
        }
    }
    call(dc, request).await
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use grammers_tl_types::Identifiable;

    use super::*;

    /// Records `(dc, constructor)` of each call; the export answers with an authorization,
    /// or fails while `fail_export` is set.
    #[derive(Default)]
    struct Dcs {
        calls: StdMutex<Vec<(i32, u32)>>,
        fail_export: StdMutex<bool>,
    }

    impl Dcs {
        async fn call(&self, dc: i32, request: Vec<u8>) -> Result<Vec<u8>, RpcError> {
            let id = u32::from_le_bytes(request[..4].try_into().unwrap());
            self.calls.lock().unwrap().push((dc, id));
            if id == tl::functions::auth::ExportAuthorization::CONSTRUCTOR_ID {
                if *self.fail_export.lock().unwrap() {
                    return Err(RpcError::new(-503, "IO"));
                }
                let a = tl::types::auth::ExportedAuthorization {
                    id: 77,
                    bytes: vec![5; 16],
                };
                return Ok(tl::enums::auth::ExportedAuthorization::Authorization(a).to_bytes());
            }
            Ok(vec![1, 2, 3, 4])
        }

        fn take(&self) -> Vec<(i32, u32)> {
            std::mem::take(&mut *self.calls.lock().unwrap())
        }
    }

    const GET_FILE: u32 = tl::functions::upload::GetFile::CONSTRUCTOR_ID;
    const EXPORT: u32 = tl::functions::auth::ExportAuthorization::CONSTRUCTOR_ID;
    const IMPORT: u32 = tl::functions::auth::ImportAuthorization::CONSTRUCTOR_ID;

    fn get_file() -> Vec<u8> {
        GET_FILE.to_le_bytes().to_vec()
    }

    #[tokio::test]
    async fn the_authorization_is_copied_once_per_dc() {
        let (dcs, copied) = (Dcs::default(), CopiedAuth::default());
        let call = |dc, r| dcs.call(dc, r);
        invoke_in_dc(&copied, 2, 4, get_file(), call).await.unwrap();
        assert_eq!(dcs.take(), [(2, EXPORT), (4, IMPORT), (4, GET_FILE)]);
        invoke_in_dc(&copied, 2, 4, get_file(), call).await.unwrap();
        assert_eq!(dcs.take(), [(4, GET_FILE)]);
        // The home DC needs no copy.
        invoke_in_dc(&copied, 2, 2, get_file(), call).await.unwrap();
        assert_eq!(dcs.take(), [(2, GET_FILE)]);
    }

    #[tokio::test]
    async fn a_failed_copy_is_tried_again_next_time() {
        let (dcs, copied) = (Dcs::default(), CopiedAuth::default());
        *dcs.fail_export.lock().unwrap() = true;
        let e = invoke_in_dc(&copied, 2, 5, get_file(), |dc, r| dcs.call(dc, r))
            .await
            .unwrap_err();
        assert_eq!(e.code, -503, "transient: the engine retries");
        assert_eq!(dcs.take(), [(2, EXPORT)], "nothing was asked of DC 5");
        *dcs.fail_export.lock().unwrap() = false;
        invoke_in_dc(&copied, 2, 5, get_file(), |dc, r| dcs.call(dc, r))
            .await
            .unwrap();
        assert_eq!(dcs.take(), [(2, EXPORT), (5, IMPORT), (5, GET_FILE)]);
    }
}
