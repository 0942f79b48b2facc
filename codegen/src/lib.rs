//! TL → Rust code generation for secretchat.
//!
//! Pure pipeline: [`source::statements`] splits a `.tl` file (keeping layer headings and the
//! original lines), [`ir::build`] parses each statement with `grammers-tl-parser`, verifies its
//! constructor id against the CRC32 of the normalized line, and resolves types; [`emit::emit`]
//! writes Rust source that relies on the derives of `secretchat-macros` and the runtime of
//! `secretchat-schema`.
//!
//! ```
//! let rust = secretchat_codegen::generate(
//!     "inputStickerSetEmpty#ffb62b95 = InputStickerSet;",
//!     "crate::demo",
//!     None,
//! ).unwrap();
//! assert!(rust.contains("pub struct InputStickerSetEmpty"));
//! assert!(rust.contains("pub enum InputStickerSet"));
//! ```

#![forbid(unsafe_code)]

pub mod crc;
pub mod emit;
pub mod ir;
pub mod naming;
pub mod source;

/// Why generation failed. Any error fails the build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodegenError {
    /// `grammers-tl-parser` rejected a line.
    #[error("cannot parse `{line}`: {error}")]
    Parse {
        /// The statement.
        line: String,
        /// The parser's error.
        error: String,
    },
    /// The declared id is not the CRC32 of the normalized line.
    #[error(
        "constructor id mismatch in `{line}`: declared {declared:#010x}, CRC32 of `{normalized}` is {computed:#010x}"
    )]
    IdMismatch {
        /// The statement.
        line: String,
        /// The id written after `#`.
        declared: u32,
        /// The CRC32.
        computed: u32,
        /// The normalized text hashed.
        normalized: String,
    },
    /// A construct the generator does not express.
    #[error("unsupported `{line}`: {why}")]
    Unsupported {
        /// The statement.
        line: String,
        /// Why.
        why: String,
    },
}

/// Generates the Rust module body for one `.tl` file.
///
/// `root` is the Rust path the output will be included at (`crate::e2e`); `initial_layer` is
/// the layer of the statements before the first `// layer N` heading, or `None` for schemas
/// without layers.
///
/// # Errors
/// Any [`CodegenError`].
pub fn generate(tl: &str, root: &str, initial_layer: Option<u32>) -> Result<String, CodegenError> {
    let statements = source::statements(tl, initial_layer);
    let schema = ir::build(&statements)?;
    emit::emit(&schema, root)
}
