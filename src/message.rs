//! Messages as an application handles them: [`Message`] (received, one type whatever layer
//! it came in) and [`InputMessage`] / [`InputFile`] (to send, built like grammers'
//! `InputMessage`).

use std::path::PathBuf;

use secretchat_engine::protocol::chat::Outgoing;
use secretchat_engine::runtime::files::{FileRef, FileToSend, MediaKind};
use secretchat_schema::api::enums as api;
use secretchat_schema::e2e::enums as e2e;

/// A message from the peer.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Message {
    /// The message's id, chosen by the sender (replies and deletions name it).
    pub random_id: i64,
    /// When the server took it (Unix seconds, `encryptedMessage.date`); 0 for a message
    /// stored by a version that did not keep it.
    pub date: i32,
    /// The text (for media: the caption).
    pub text: String,
    /// Formatting of the text (bold, links, mentions…).
    pub entities: Vec<e2e::MessageEntity>,
    /// What is attached, if anything.
    pub media: Option<Media>,
    /// The encrypted file to download with `Engine::download`, when the media has one.
    pub file: Option<FileRef>,
    /// The message this one answers.
    pub reply_to_random_id: Option<i64>,
    /// Self-destruct timer in seconds (0: none).
    pub ttl: i32,
    /// Sent without notification.
    pub silent: bool,
    /// Link previews were disabled by the sender.
    pub no_webpage: bool,
    /// Sent via this inline bot.
    pub via_bot_name: Option<String>,
    /// The album it belongs to.
    pub grouped_id: Option<i64>,
    /// The layer of the constructor it came as (8, 23, 46 or 73).
    pub layer: i32,
    /// The message exactly as decrypted, for whoever needs more.
    pub raw: Box<e2e::DecryptedMessage>,
}

/// What a message carries besides text.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Media {
    /// A photo.
    Photo {
        /// Width.
        width: i32,
        /// Height.
        height: i32,
    },
    /// A video.
    Video {
        /// Width.
        width: i32,
        /// Height.
        height: i32,
        /// Seconds.
        duration: i32,
        /// MIME type.
        mime_type: String,
    },
    /// An audio file (older layers; newer ones send documents with an audio attribute).
    Audio {
        /// Seconds.
        duration: i32,
        /// MIME type.
        mime_type: String,
    },
    /// A document (also stickers, voice notes, audio and video sent as files).
    Document {
        /// MIME type.
        mime_type: String,
        /// The file name, when the sender gave one.
        file_name: Option<String>,
        /// Its attributes (image size, audio, sticker…).
        attributes: Vec<e2e::DocumentAttribute>,
    },
    /// A location.
    Geo {
        /// Latitude.
        lat: f64,
        /// Longitude.
        long: f64,
    },
    /// A contact card.
    Contact {
        /// Phone number.
        phone_number: String,
        /// First name.
        first_name: String,
        /// Last name.
        last_name: String,
        /// Telegram user id (0: none).
        user_id: i32,
    },
    /// A place.
    Venue {
        /// Latitude.
        lat: f64,
        /// Longitude.
        long: f64,
        /// Name.
        title: String,
        /// Address.
        address: String,
    },
    /// A link preview.
    WebPage {
        /// The link.
        url: String,
    },
    /// A file stored on the server in the clear (a sticker by reference): see
    /// [`Message::raw`].
    External,
}

fn file_name(attributes: &[e2e::DocumentAttribute]) -> Option<String> {
    attributes.iter().find_map(|a| match a {
        e2e::DocumentAttribute::Filename(f) => Some(f.file_name.clone()),
        _ => None,
    })
}

/// The normalized media and its caption.
fn media_of(m: &e2e::DecryptedMessageMedia) -> Option<(Media, &str)> {
    use e2e::DecryptedMessageMedia as M;
    Some(match m {
        M::Empty(_) => return None,
        M::Photo8(p) => (
            Media::Photo {
                width: p.w,
                height: p.h,
            },
            "",
        ),
        M::Photo46(p) => (
            Media::Photo {
                width: p.w,
                height: p.h,
            },
            p.caption.as_str(),
        ),
        M::Video8(v) => (
            Media::Video {
                width: v.w,
                height: v.h,
                duration: v.duration,
                mime_type: String::new(),
            },
            "",
        ),
        M::Video23(v) => (
            Media::Video {
                width: v.w,
                height: v.h,
                duration: v.duration,
                mime_type: v.mime_type.clone(),
            },
            "",
        ),
        M::Video46(v) => (
            Media::Video {
                width: v.w,
                height: v.h,
                duration: v.duration,
                mime_type: v.mime_type.clone(),
            },
            v.caption.as_str(),
        ),
        M::Audio8(a) => (
            Media::Audio {
                duration: a.duration,
                mime_type: String::new(),
            },
            "",
        ),
        M::Audio23(a) => (
            Media::Audio {
                duration: a.duration,
                mime_type: a.mime_type.clone(),
            },
            "",
        ),
        M::Document8(d) => (
            Media::Document {
                mime_type: d.mime_type.clone(),
                file_name: Some(d.file_name.clone()),
                attributes: Vec::new(),
            },
            "",
        ),
        M::Document46(d) => (
            Media::Document {
                mime_type: d.mime_type.clone(),
                file_name: file_name(&d.attributes),
                attributes: d.attributes.clone(),
            },
            d.caption.as_str(),
        ),
        M::Document143(d) => (
            Media::Document {
                mime_type: d.mime_type.clone(),
                file_name: file_name(&d.attributes),
                attributes: d.attributes.clone(),
            },
            d.caption.as_str(),
        ),
        M::GeoPoint(g) => (
            Media::Geo {
                lat: g.lat,
                long: g.long,
            },
            "",
        ),
        M::Contact(c) => (
            Media::Contact {
                phone_number: c.phone_number.clone(),
                first_name: c.first_name.clone(),
                last_name: c.last_name.clone(),
                user_id: c.user_id,
            },
            "",
        ),
        M::Venue(v) => (
            Media::Venue {
                lat: v.lat,
                long: v.long,
                title: v.title.clone(),
                address: v.address.clone(),
            },
            "",
        ),
        M::WebPage(w) => (Media::WebPage { url: w.url.clone() }, ""),
        M::ExternalDocument(_) => (Media::External, ""),
    })
}

impl Message {
    /// The normalized form of a decrypted message and the encrypted file of its update. (The
    /// engine delivers service messages as other updates; one given here has no text.) `date`
    /// is the server's date of the update that brought it.
    pub fn from_raw(
        raw: e2e::DecryptedMessage,
        file: Option<&api::EncryptedFile>,
        date: i32,
    ) -> Self {
        use e2e::DecryptedMessage as D;
        let fref = FileRef::from_message(&raw, file);
        let mut m = Message {
            random_id: 0,
            date,
            text: String::new(),
            entities: Vec::new(),
            media: None,
            file: fref,
            reply_to_random_id: None,
            ttl: 0,
            silent: false,
            no_webpage: false,
            via_bot_name: None,
            grouped_id: None,
            layer: 0,
            raw: Box::new(raw),
        };
        let media = match &*m.raw {
            D::DecryptedMessage8(d) => {
                (m.random_id, m.text, m.layer) = (d.random_id, d.message.clone(), 8);
                Some(&d.media)
            }
            D::DecryptedMessage23(d) => {
                (m.random_id, m.text, m.ttl, m.layer) = (d.random_id, d.message.clone(), d.ttl, 23);
                Some(&d.media)
            }
            D::DecryptedMessage46(d) => {
                (m.random_id, m.text, m.ttl, m.layer) = (d.random_id, d.message.clone(), d.ttl, 46);
                m.entities = d.entities.clone().unwrap_or_default();
                m.via_bot_name = d.via_bot_name.clone();
                m.reply_to_random_id = d.reply_to_random_id;
                d.media.as_ref()
            }
            D::DecryptedMessage73(d) => {
                (m.random_id, m.text, m.ttl, m.layer) = (d.random_id, d.message.clone(), d.ttl, 73);
                m.entities = d.entities.clone().unwrap_or_default();
                m.via_bot_name = d.via_bot_name.clone();
                m.reply_to_random_id = d.reply_to_random_id;
                m.silent = d.silent;
                m.no_webpage = d.no_webpage;
                m.grouped_id = d.grouped_id;
                d.media.as_ref()
            }
            D::Service8(s) => {
                m.random_id = s.random_id;
                None
            }
            D::Service23(s) => {
                m.random_id = s.random_id;
                None
            }
        };
        if let Some((media, caption)) = media.and_then(media_of) {
            if m.text.is_empty() {
                m.text = caption.to_owned();
            }
            m.media = Some(media);
        }
        m
    }
}

/// A fresh message id: random and never 0 (0 is what an unset id looks like).
pub(crate) fn random_id() -> i64 {
    loop {
        let id = rand::random::<i64>();
        if id != 0 {
            return id;
        }
    }
}

/// A message to send: text with optional formatting, reply, self-destruct timer and flags.
///
/// ```
/// use secretchat::InputMessage;
/// let m = InputMessage::text("see you at 8").reply_to(42).ttl(30).silent(true);
/// assert_ne!(m.random_id(), 0);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct InputMessage(pub(crate) Outgoing);

impl InputMessage {
    /// A text message with a fresh random id.
    pub fn text(text: impl Into<String>) -> Self {
        InputMessage(Outgoing::text(random_id(), text))
    }

    /// Formatting entities for the text.
    pub fn entities(mut self, entities: Vec<e2e::MessageEntity>) -> Self {
        self.0.entities = entities;
        self
    }

    /// Answers the message with this id.
    pub fn reply_to(mut self, random_id: i64) -> Self {
        self.0.reply_to_random_id = Some(random_id);
        self
    }

    /// Self-destruct timer in seconds (0: none).
    pub fn ttl(mut self, seconds: i32) -> Self {
        self.0.ttl = seconds.max(0);
        self
    }

    /// Send without notification.
    pub fn silent(mut self, silent: bool) -> Self {
        self.0.silent = silent;
        self
    }

    /// Disable link previews.
    pub fn no_webpage(mut self, no_webpage: bool) -> Self {
        self.0.no_webpage = no_webpage;
        self
    }

    /// Part of this album.
    pub fn grouped_id(mut self, id: i64) -> Self {
        self.0.grouped_id = Some(id);
        self
    }

    /// Use this id instead of the random one (an application that names its messages
    /// itself, e.g. to deduplicate). Sending an id of 0 is refused.
    pub fn with_random_id(mut self, random_id: i64) -> Self {
        self.0.random_id = random_id;
        self
    }

    /// The message's id.
    pub fn random_id(&self) -> i64 {
        self.0.random_id
    }
}

/// A file to send: a document, photo or video from a path, with caption, reply and timer.
///
/// ```
/// use secretchat::InputFile;
/// let f = InputFile::document("report.pdf", "application/pdf").caption("Q3").ttl(60);
/// assert_ne!(f.random_id(), 0);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct InputFile(pub(crate) FileToSend);

impl InputFile {
    /// A document (any file) at `path`; its file name goes along.
    pub fn document(path: impl Into<PathBuf>, mime_type: impl Into<String>) -> Self {
        let path: PathBuf = path.into();
        let mut f = FileToSend::document(&path, mime_type);
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            f.attributes.push(e2e::DocumentAttribute::Filename(
                secretchat_schema::e2e::types::DocumentAttributeFilename {
                    file_name: name.to_owned(),
                },
            ));
        }
        f.random_id = random_id();
        InputFile(f)
    }

    /// A photo of `width × height` at `path`.
    pub fn photo(path: impl Into<PathBuf>, width: i32, height: i32) -> Self {
        let mut f = FileToSend::document(path, "image/jpeg");
        f.kind = MediaKind::Photo {
            w: width,
            h: height,
        };
        f.random_id = random_id();
        InputFile(f)
    }

    /// A video of `width × height`, `duration` seconds, at `path`.
    pub fn video(
        path: impl Into<PathBuf>,
        mime_type: impl Into<String>,
        width: i32,
        height: i32,
        duration: i32,
    ) -> Self {
        let mut f = FileToSend::document(path, mime_type);
        f.kind = MediaKind::Video {
            w: width,
            h: height,
            duration,
        };
        f.random_id = random_id();
        InputFile(f)
    }

    /// The caption (sent as the message's text too).
    pub fn caption(mut self, caption: impl Into<String>) -> Self {
        self.0.caption = caption.into();
        self
    }

    /// A small thumbnail (it travels inside the message) of `width × height`.
    pub fn thumbnail(mut self, bytes: Vec<u8>, width: i32, height: i32) -> Self {
        self.0.thumb = bytes;
        self.0.thumb_w = width;
        self.0.thumb_h = height;
        self
    }

    /// Document attributes (audio, video, sticker details; the file name is already set).
    pub fn attributes(mut self, attributes: Vec<e2e::DocumentAttribute>) -> Self {
        self.0.attributes.extend(attributes);
        self
    }

    /// Answers the message with this id.
    pub fn reply_to(mut self, random_id: i64) -> Self {
        self.0.reply_to_random_id = Some(random_id);
        self
    }

    /// Self-destruct timer in seconds (0: none).
    pub fn ttl(mut self, seconds: i32) -> Self {
        self.0.ttl = seconds.max(0);
        self
    }

    /// Send without notification.
    pub fn silent(mut self, silent: bool) -> Self {
        self.0.silent = silent;
        self
    }

    /// Use this id instead of the random one (0 is refused).
    pub fn with_random_id(mut self, random_id: i64) -> Self {
        self.0.random_id = random_id;
        self
    }

    /// The message's id.
    pub fn random_id(&self) -> i64 {
        self.0.random_id
    }
}
