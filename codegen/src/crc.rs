//! Constructor ids: the CRC32 of the normalized TL line, per <https://core.telegram.org/mtproto/TL-abstract-types>
//! ("the name of the combinator ... CRC32 of the string obtained from the combinator description
//! by deleting the id, `{`/`}`, `flags.N?true` parameters, replacing `bytes` with `string`,
//! `<`/`>` with spaces").
//!
//! Telegram's own tooling stopped replacing `bytes` with `string` at some point: the layer-143
//! `decryptedMessageMediaDocument#6abd9782` only matches without that step. So an id is accepted
//! when it matches either form ([`candidates`]); anything else is a mismatch.

/// The normalized form of a statement: `name params = Type` without the `#id`, with TDLib's
/// layer suffix replaced by `base_name`.
pub fn normalize(text: &str, base_name: &str) -> String {
    normalize_with(text, base_name, true)
}

/// [`normalize`], choosing whether `bytes` becomes `string`.
pub fn normalize_with(text: &str, base_name: &str, bytes_as_string: bool) -> String {
    let mut tokens = text.split_whitespace();
    let mut out: Vec<String> = Vec::new();
    if tokens.next().is_some() {
        out.push(base_name.to_owned());
    }
    for tok in tokens {
        if tok.ends_with("?true") && tok.contains(':') {
            continue;
        }
        let tok = tok.replace(['{', '}'], "");
        let tok = match tok.split_once(':') {
            Some((name, ty)) if bytes_as_string => format!("{name}:{}", bytes_to_string(ty)),
            None if bytes_as_string => bytes_to_string(&tok),
            _ => tok,
        };
        out.push(tok.replace('<', " ").replace('>', ""));
    }
    out.join(" ")
}

fn bytes_to_string(ty: &str) -> String {
    // `bytes` anywhere as a whole type word: `bytes`, `flags.2?bytes`, `Vector<bytes>`.
    let mut s = String::with_capacity(ty.len());
    let mut word = String::new();
    for c in ty.chars().chain(std::iter::once('\0')) {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            s.push_str(if word == "bytes" { "string" } else { &word });
            word.clear();
            if c != '\0' {
                s.push(c);
            }
        }
    }
    s
}

/// CRC32 of the normalized line (classic form, `bytes` as `string`).
pub fn compute(text: &str, base_name: &str) -> u32 {
    crc32fast::hash(normalize(text, base_name).as_bytes())
}

/// The ids a line may legitimately have: classic and modern normalization.
pub fn candidates(text: &str, base_name: &str) -> [u32; 2] {
    [true, false].map(|b| crc32fast::hash(normalize_with(text, base_name, b).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_ids() {
        // Ids as published in secret_api.tl / the TL docs.
        let cases = [
            (
                "decryptedMessageLayer#1be31789 random_bytes:bytes layer:int in_seq_no:int out_seq_no:int message:DecryptedMessage = DecryptedMessageLayer",
                "decryptedMessageLayer",
                0x1be31789,
            ),
            ("boolFalse = Bool", "boolFalse", 0xbc799737),
            (
                "decryptedMessageActionReadMessages#c4f40be random_ids:Vector<long> = DecryptedMessageAction",
                "decryptedMessageActionReadMessages",
                0x0c4f40be,
            ),
            (
                "documentAttributeAudio#9852f9c6 flags:# voice:flags.10?true duration:int title:flags.0?string performer:flags.1?string waveform:flags.2?bytes = DocumentAttribute",
                "documentAttributeAudio",
                0x9852f9c6,
            ),
            (
                "invokeAfterMsgs#3dc4b4f0 {X:Type} msg_ids:Vector<long> query:!X = X",
                "invokeAfterMsgs",
                0x3dc4b4f0,
            ),
            (
                "decryptedMessage8#1f814f1f random_id:long random_bytes:bytes message:string media:DecryptedMessageMedia = DecryptedMessage",
                "decryptedMessage",
                0x1f814f1f,
            ),
        ];
        for (text, base, id) in cases {
            assert_eq!(compute(text, base), id, "{}", normalize(text, base));
        }
        let modern = "decryptedMessageMediaDocument#6abd9782 thumb:bytes thumb_w:int thumb_h:int mime_type:string size:long key:bytes iv:bytes attributes:Vector<DocumentAttribute> caption:string = DecryptedMessageMedia";
        let c = candidates(modern, "decryptedMessageMediaDocument");
        assert_ne!(c[0], 0x6abd9782);
        assert_eq!(c[1], 0x6abd9782);
    }
}
