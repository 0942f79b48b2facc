//! Splits a `.tl` file into statements, keeping what the parser drops: the original text (for
//! doc comments and the CRC check), the `// layer N` section each statement is in, and whether
//! it is a type or a function.

/// One `...;` statement of a TL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The statement with comments removed and whitespace collapsed, without the `;`.
    pub text: String,
    /// The `// layer N` section it is in (`initial_layer` before the first heading).
    pub layer: Option<u32>,
    /// Whether it is after `---functions---`.
    pub is_function: bool,
}

/// Splits `contents` into statements.
///
/// `initial_layer` is the layer of statements before the first `// layer N` heading (8 for the
/// end-to-end schema); with `None`, headings are ignored and no statement has a layer.
pub fn statements(contents: &str, initial_layer: Option<u32>) -> Vec<Statement> {
    let mut out = Vec::new();
    let mut layer = initial_layer;
    let mut is_function = false;
    let mut pending = String::new();
    for line in contents.lines() {
        let (code, comment) = match line.find("//") {
            Some(i) => (&line[..i], Some(&line[i + 2..])),
            None => (line, None),
        };
        if let (Some(c), Some(_)) = (comment, initial_layer) {
            if let Some(n) = c
                .trim()
                .strip_prefix("layer ")
                .and_then(|n| n.trim().parse().ok())
            {
                layer = Some(n);
            }
        }
        let mut rest = code;
        while let Some(i) = rest.find(';') {
            pending.push(' ');
            pending.push_str(&rest[..i]);
            push(&mut out, &mut pending, layer, &mut is_function);
            rest = &rest[i + 1..];
        }
        pending.push(' ');
        pending.push_str(rest);
        // Separators need no `;`.
        let t = pending.trim();
        if t == "---functions---" || t == "---types---" {
            is_function = t == "---functions---";
            pending.clear();
        }
    }
    out
}

fn push(
    out: &mut Vec<Statement>,
    pending: &mut String,
    layer: Option<u32>,
    is_function: &mut bool,
) {
    let mut text = pending.split_whitespace().collect::<Vec<_>>().join(" ");
    pending.clear();
    for (sep, f) in [("---functions---", true), ("---types---", false)] {
        if let Some(rest) = text.strip_prefix(sep) {
            *is_function = f;
            text = rest.trim().to_owned();
        }
    }
    if !text.is_empty() {
        out.push(Statement {
            text,
            layer,
            is_function: *is_function,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_functions_and_comments() {
        let tl =
            "a = A;\n// layer 23\nb x:int\n  y:long = B; // trailing\n---functions---\nf = B;\n";
        let s = statements(tl, Some(8));
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[0].text.as_str(), s[0].layer, s[0].is_function),
            ("a = A", Some(8), false)
        );
        assert_eq!(
            (s[1].text.as_str(), s[1].layer),
            ("b x:int y:long = B", Some(23))
        );
        assert_eq!((s[2].text.as_str(), s[2].is_function), ("f = B", true));
        assert!(statements(tl, None).iter().all(|s| s.layer.is_none()));
    }
}
