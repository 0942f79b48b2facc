//! What the engine logs (through `tracing`): chat events and actions at `trace`, server calls
//! at `debug`, failures at `warn`. Lines name what happened — event kinds, lengths, ids,
//! message numbers — never plaintext or key material: keys, DH exponents and file keys appear
//! only through their redacting `Debug` impls, and `tests/key_hygiene.rs` scans a full run's
//! trace-level log for every chat key to prove it.

use crate::protocol::chat::{Action, AppEvent, Call, Command, Event};

/// A loggable summary of an event (no message content).
pub(crate) struct EventLine<'a>(pub(crate) &'a Event);

impl std::fmt::Debug for EventLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Event::DhConfig { params, random } => {
                write!(f, "DhConfig({params:?}, random: {} bytes)", random.len())
            }
            Event::DhConfigFailed(e) => write!(f, "DhConfigFailed({e:?})"),
            Event::DhDone(out) => write!(f, "DhDone({out:?})"),
            Event::ChatUpdate(c) => write!(f, "ChatUpdate({})", chat_kind(c)),
            Event::AlreadyAccepted => f.write_str("AlreadyAccepted"),
            Event::Incoming { wire, file, .. } => write!(
                f,
                "Incoming({} bytes{})",
                wire.len(),
                if file.is_some() { ", file" } else { "" }
            ),
            Event::Command(Command::Send(m)) => write!(f, "Command(Send #{})", m.random_id),
            Event::Command(c) => write!(f, "Command({})", command_kind(c)),
            Event::Timer(t) => write!(f, "Timer({t:?})"),
        }
    }
}

/// A loggable summary of an action (no message content).
pub(crate) struct ActionLine<'a>(pub(crate) &'a Action);

impl std::fmt::Debug for ActionLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Action::Persist(p) => write!(
                f,
                "Persist(outbox +{} -{}, waiting +{} -{}, closed: {})",
                p.outbox_put.len(),
                p.outbox_done.len(),
                p.waiting_put.len(),
                p.waiting_done.len(),
                p.closed
            ),
            Action::NeedDhConfig => f.write_str("NeedDhConfig"),
            Action::Compute(job) => write!(f, "Compute({job:?})"),
            Action::Call(c) => write!(
                f,
                "Call({}, {} bytes)",
                call_name(c),
                c.data().map_or(0, <[u8]>::len)
            ),
            Action::Deliver(e) => write!(f, "Deliver({})", app_kind(e)),
            Action::ArmTimer { timer, at } => write!(f, "ArmTimer({timer:?} at {at})"),
            Action::Rejected(e) => write!(f, "Rejected({e:?})"),
        }
    }
}

/// The server method a call invokes.
pub(crate) fn call_name(c: &Call) -> &'static str {
    match c {
        Call::RequestEncryption(_) => "messages.requestEncryption",
        Call::AcceptEncryption(_) => "messages.acceptEncryption",
        Call::DiscardEncryption(_) => "messages.discardEncryption",
        Call::SendEncrypted(_) => "messages.sendEncrypted",
        Call::SendEncryptedService(_) => "messages.sendEncryptedService",
        Call::SendEncryptedFile(_) => "messages.sendEncryptedFile",
    }
}

fn chat_kind(c: &secretchat_schema::api::enums::EncryptedChat) -> &'static str {
    use secretchat_schema::api::enums::EncryptedChat as C;
    match c {
        C::Empty(_) => "empty",
        C::Waiting(_) => "waiting",
        C::Requested(_) => "requested",
        C::EncryptedChat(_) => "accepted",
        C::Discarded(_) => "discarded",
    }
}

fn command_kind(c: &Command) -> &'static str {
    match c {
        Command::Accept => "Accept",
        Command::Decline => "Decline",
        Command::Send(_) => "Send",
        Command::Service(_) => "Service",
        Command::Rekey => "Rekey",
        Command::Close { .. } => "Close",
    }
}

fn app_kind(e: &AppEvent) -> &'static str {
    match e {
        AppEvent::ChatRequested { .. } => "ChatRequested",
        AppEvent::ChatReady { .. } => "ChatReady",
        AppEvent::Message { .. } => "Message",
        AppEvent::MessagesDeleted { .. } => "MessagesDeleted",
        AppEvent::Service { .. } => "Service",
        AppEvent::PeerLayer(_) => "PeerLayer",
        AppEvent::PeerNewerThanUs(_) => "PeerNewerThanUs",
        AppEvent::Rekeyed(_) => "Rekeyed",
        AppEvent::ChatUnhealthy { .. } => "ChatUnhealthy",
        AppEvent::ChatClosed(_) => "ChatClosed",
    }
}
