//! Rust names for TL names.

/// `decryptedMessageMediaEmpty` → `DecryptedMessageMediaEmpty`; `messages.dhConfig` keeps only
/// the last component.
pub fn type_name(tl: &str) -> String {
    let mut out = String::with_capacity(tl.len());
    let mut upper = true;
    for c in tl.chars() {
        if c == '_' || c == '.' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A field or module name, escaped when it is a Rust keyword.
pub fn field_name(tl: &str) -> String {
    const KEYWORDS: &[&str] = &[
        "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn",
        "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref",
        "return", "self", "Self", "static", "struct", "super", "trait", "true", "type", "unsafe",
        "use", "where", "while", "async", "await", "dyn", "abstract", "become", "box", "do",
        "final", "macro", "override", "priv", "typeof", "unsized", "virtual", "yield", "try",
        "gen",
    ];
    if KEYWORDS.contains(&tl) {
        format!("r#{tl}")
    } else {
        tl.to_owned()
    }
}

/// The variant name of constructor `ctor` (a Rust type name) in enum `ty`: the constructor name
/// with the type's name as prefix removed, unless that leaves nothing or a digit.
pub fn variant_name(ty: &str, ctor: &str) -> String {
    match ctor.strip_prefix(ty) {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_uppercase()) && rest != "Self" => {
            rest.to_owned()
        }
        _ => ctor.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            type_name("decryptedMessageMediaEmpty"),
            "DecryptedMessageMediaEmpty"
        );
        assert_eq!(type_name("dhConfigNotModified"), "DhConfigNotModified");
        assert_eq!(field_name("type"), "r#type");
        assert_eq!(field_name("long"), "long");
        assert_eq!(
            variant_name("DecryptedMessageAction", "DecryptedMessageActionNoop"),
            "Noop"
        );
        assert_eq!(
            variant_name("DecryptedMessage", "DecryptedMessage8"),
            "DecryptedMessage8"
        );
        assert_eq!(variant_name("DhConfig", "DhConfig"), "DhConfig");
        assert_eq!(variant_name("InputUser", "InputUserSelf"), "InputUserSelf");
        assert_eq!(
            variant_name("DhConfig", "DhConfigNotModified"),
            "NotModified"
        );
    }
}
