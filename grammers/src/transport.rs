//! The engine's server calls on a grammers connection: [`GrammersApi`] sends the engine's
//! serialized requests with `raw_invoke_in_dc` (bytes in, bytes out: no re-encoding through
//! grammers' types) and gives errors back in the engine's terms. The one exception is the
//! engine's `updates.getDifference`, which [`crate::catch_up`] completes for a real server.

use std::sync::Arc;

use grammers_mtsender::{InvocationError, SenderPoolHandle};
use secretchat::{BoxFuture, RpcError, ServerApi};

use crate::catch_up::{CatchUpState, engine_difference, is_get_difference};
use crate::dc::{CopiedAuth, invoke_in_dc};

/// One account's [`ServerApi`] over grammers' sender pool, on the account's home DC.
#[derive(Clone)]
pub struct GrammersApi {
    handle: SenderPoolHandle,
    dc_id: i32,
    catch_up: Arc<CatchUpState>,
    copied: Arc<CopiedAuth>,
}

impl std::fmt::Debug for GrammersApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrammersApi")
            .field("dc_id", &self.dc_id)
            .finish_non_exhaustive()
    }
}

impl GrammersApi {
    /// Calls go through `handle` to DC `dc_id` (the session's home DC).
    pub fn new(handle: SenderPoolHandle, dc_id: i32) -> Self {
        GrammersApi {
            handle,
            dc_id,
            catch_up: Arc::default(),
            copied: Arc::default(),
        }
    }
}

impl ServerApi for GrammersApi {
    fn invoke(&self, request: Vec<u8>) -> BoxFuture<'static, Result<Vec<u8>, RpcError>> {
        let (handle, dc, catch_up) = (self.handle.clone(), self.dc_id, self.catch_up.clone());
        Box::pin(async move {
            let call = |request| raw(handle.clone(), dc, request);
            if is_get_difference(&request) {
                engine_difference(&catch_up, &request, call).await
            } else {
                call(request).await
            }
        })
    }

    /// To another DC (a file download), with the authorization copied there first.
    fn invoke_in_dc(
        &self,
        dc_id: i32,
        request: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, RpcError>> {
        let (handle, home, copied) = (self.handle.clone(), self.dc_id, self.copied.clone());
        Box::pin(async move {
            let call = |dc, request| raw(handle.clone(), dc, request);
            invoke_in_dc(&copied, home, dc_id, request, call).await
        })
    }
}

/// One raw call on DC `dc`, its error in the engine's terms.
async fn raw(handle: SenderPoolHandle, dc: i32, request: Vec<u8>) -> Result<Vec<u8>, RpcError> {
    // grammers asserts a body of at least a constructor id.
    if request.len() < 4 {
        return Err(RpcError::new(400, "REQUEST_TOO_SHORT"));
    }
    handle
        .raw_invoke_in_dc(dc, request)
        .await
        .map_err(|e| rpc_error(&e))
}

/// grammers' error as the server sent it, for the engine's classification: an RPC error
/// with its name rebuilt (grammers splits `FLOOD_WAIT_31` into `FLOOD_WAIT` and 31), and
/// everything about the connection — I/O, transport, a dropped request, a response that did
/// not parse — as a transient `-503`, which the engine retries.
pub fn rpc_error(e: &InvocationError) -> RpcError {
    match e {
        InvocationError::Rpc(r) => RpcError::new(r.code, error_name(&r.name, r.value)),
        InvocationError::Io(_) => RpcError::new(-503, "IO"),
        InvocationError::Transport(_) => RpcError::new(-503, "TRANSPORT"),
        InvocationError::Dropped(_) => RpcError::new(-503, "DROPPED"),
        InvocationError::Deserialize(_) => RpcError::new(-503, "BAD_RESPONSE"),
        InvocationError::InvalidDc => RpcError::new(-503, "INVALID_DC"),
        InvocationError::Authentication(_) => RpcError::new(-503, "AUTHENTICATION"),
        InvocationError::Session(_) => RpcError::new(-503, "SESSION"),
    }
}

/// The error's name as the server wrote it: grammers moved the first run of digits into
/// `value`. They sit at the end (`FLOOD_WAIT_31`, `FILE_MIGRATE_2`) except in
/// `INTERDC_2_CALL_ERROR` and `INTERDC_2_CALL_RICH_ERROR`.
fn error_name(name: &str, value: Option<u32>) -> String {
    let Some(v) = value else {
        return name.to_owned();
    };
    match name.strip_prefix("INTERDC_") {
        Some(rest) => format!("INTERDC_{v}_{rest}"),
        None => format!("{name}_{v}"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use secretchat::ErrorClass;

    use super::*;

    fn rpc(code: i32, name: &str, value: Option<u32>) -> InvocationError {
        InvocationError::Rpc(grammers_mtsender::RpcError {
            code,
            name: name.to_owned(),
            value,
            caused_by: None,
        })
    }

    #[test]
    fn errors_come_back_as_the_server_sent_them() {
        let e = rpc_error(&rpc(420, "FLOOD_WAIT", Some(31)));
        assert_eq!((e.code, e.message.as_str()), (420, "FLOOD_WAIT_31"));
        assert_eq!(e.class(), ErrorClass::RetryAfter(Duration::from_secs(31)));
        let e = rpc_error(&rpc(500, "INTERDC_CALL_ERROR", Some(2)));
        assert_eq!(e.message, "INTERDC_2_CALL_ERROR");
        let e = rpc_error(&rpc(400, "ENCRYPTION_DECLINED", None));
        assert_eq!((e.code, e.message.as_str()), (400, "ENCRYPTION_DECLINED"));
        assert_eq!(e.class(), ErrorClass::ChatGone);
    }

    #[test]
    fn connection_failures_are_transient() {
        for e in [
            InvocationError::Io(std::io::Error::other("reset")),
            InvocationError::Dropped("runner gone"),
            InvocationError::InvalidDc,
        ] {
            let r = rpc_error(&e);
            assert_eq!(r.code, -503, "{e:?}");
            assert!(r.retry_delay(0).is_some(), "{e:?} is retried");
        }
    }
}
