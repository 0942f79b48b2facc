//! The API calls the endpoint answers itself — the connection's wrappers, `help.getConfig`,
//! `updates.getState`, the authorization's export and import — and the rule that DC 2 takes
//! calls only once the account's authorization was imported there; everything else goes to
//! the simulated server as the account's device.

use std::sync::Mutex;

use grammers_tl_types as tl;
use grammers_tl_types::{Identifiable, Serializable};
use secretchat::ServerApi;

use super::session::Conn;
use super::wire::Reader;
use super::*;

impl Conn {
    /// One API call (wrappers removed); `None` for bytes that do not parse.
    pub(super) async fn call(
        &mut self,
        shared: &Mutex<Shared>,
        body: &[u8],
    ) -> Option<Result<Vec<u8>, (i32, String)>> {
        let mut r = Reader { buf: body };
        let id = r.u32()?;
        if id == INVOKE_WITH_LAYER {
            let layer = r.u32()? as i32;
            shared.lock().ok()?.stats.layers.insert(layer);
            return Box::pin(self.call(shared, r.buf)).await;
        }
        if id == INIT_CONNECTION {
            let flags = r.u32()?;
            r.u32()?; // api_id
            for _ in 0..6 {
                r.string()?; // device_model … lang_code
            }
            if flags & 1 != 0 {
                r.u32()?; // inputClientProxy
                r.string()?;
                r.u32()?;
            }
            if flags & 2 != 0 {
                return Some(Err((400, "INPUT_FETCH_FAIL".into())));
            }
            shared.lock().ok()?.stats.init_connections += 1;
            return Box::pin(self.call(shared, r.buf)).await;
        }
        let (device, user, imported) = {
            let s = shared.lock().ok()?;
            let a = &s.accounts[self.account];
            (a.device.clone(), a.user, a.imported.contains(&self.dc))
        };
        let answer = match id {
            tl::functions::help::GetConfig::CONSTRUCTOR_ID => Ok(config(self.dc)),
            tl::functions::updates::GetState::CONSTRUCTOR_ID => {
                Ok(tl::enums::updates::State::State(tl::types::updates::State {
                    pts: 1,
                    qts: 0,
                    date: 1_700_000_000,
                    seq: 0,
                    unread_count: 0,
                })
                .to_bytes())
            }
            tl::functions::auth::ExportAuthorization::CONSTRUCTOR_ID if self.dc == HOME_DC => {
                let token: Vec<u8> = (0..32).map(|_| rand::random()).collect();
                shared.lock().ok()?.accounts[self.account]
                    .exported
                    .push(token.clone());
                Ok(tl::enums::auth::ExportedAuthorization::Authorization(
                    tl::types::auth::ExportedAuthorization {
                        id: user,
                        bytes: token,
                    },
                )
                .to_bytes())
            }
            tl::functions::auth::ImportAuthorization::CONSTRUCTOR_ID if self.dc != HOME_DC => {
                let mut rr = Reader { buf: r.buf };
                let (who, token) = (rr.i64()?, rr.string()?);
                let mut s = shared.lock().ok()?;
                let a = &mut s.accounts[self.account];
                if who != user || !a.exported.iter().any(|t| t == token) {
                    Err((400, "AUTH_BYTES_INVALID".into()))
                } else {
                    a.imported.insert(self.dc);
                    let (account, dc) = (self.account, self.dc);
                    s.stats.imports.push((account, dc));
                    Ok(tl::enums::auth::Authorization::Authorization(
                        tl::types::auth::Authorization {
                            setup_password_required: false,
                            otherwise_relogin_days: None,
                            tmp_sessions: None,
                            future_auth_token: None,
                            user: tl::enums::User::Empty(tl::types::UserEmpty { id: user }),
                        },
                    )
                    .to_bytes())
                }
            }
            _ if self.dc != HOME_DC && !imported => {
                shared.lock().ok()?.stats.unauthorized += 1;
                Err((401, "AUTH_KEY_UNREGISTERED".into()))
            }
            _ => {
                let answer = device.invoke(body.to_vec()).await;
                let mut s = shared.lock().ok()?;
                *s.stats.calls.entry(self.dc).or_default() += 1;
                *s.stats.methods.entry((self.account, id)).or_default() += 1;
                if s.accounts[self.account].lose_reply_of == Some(id) {
                    s.accounts[self.account].lose_reply_of = None;
                    s.stats.lost_replies += 1;
                    return None;
                }
                answer.map_err(|e| (e.code, e.message))
            }
        };
        Some(answer)
    }
}

/// `help.getConfig`'s answer: no DC options (the session's stay as the test set them).
fn config(this_dc: i32) -> Vec<u8> {
    tl::enums::Config::Config(tl::types::Config {
        default_p2p_contacts: false,
        preload_featured_stickers: false,
        revoke_pm_inbox: false,
        blocked_mode: false,
        force_try_ipv6: false,
        date: 1_700_000_000,
        expires: 1_700_003_600,
        test_mode: true,
        this_dc,
        dc_options: Vec::new(),
        dc_txt_domain_name: String::new(),
        chat_size_max: 200,
        megagroup_size_max: 200_000,
        forwarded_count_max: 100,
        online_update_period_ms: 210_000,
        offline_blur_timeout_ms: 5_000,
        offline_idle_timeout_ms: 30_000,
        online_cloud_timeout_ms: 300_000,
        notify_cloud_delay_ms: 30_000,
        notify_default_delay_ms: 1_500,
        push_chat_period_ms: 60_000,
        push_chat_limit: 2,
        edit_time_limit: 172_800,
        revoke_time_limit: i32::MAX,
        revoke_pm_time_limit: i32::MAX,
        rating_e_decay: 2_419_200,
        stickers_recent_limit: 200,
        channels_read_media_period: 604_800,
        tmp_sessions: None,
        call_receive_timeout_ms: 20_000,
        call_ring_timeout_ms: 90_000,
        call_connect_timeout_ms: 30_000,
        call_packet_timeout_ms: 10_000,
        me_url_prefix: "https://t.me/".into(),
        autoupdate_url_prefix: None,
        gif_search_username: None,
        venue_search_username: None,
        img_search_username: None,
        static_maps_provider: None,
        caption_length_max: 1024,
        message_length_max: 4096,
        webfile_dc_id: 4,
        suggested_lang_code: None,
        lang_pack_version: None,
        base_lang_pack_version: None,
        reactions_default: None,
        autologin_token: None,
    })
    .to_bytes()
}
