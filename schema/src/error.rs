//! The error types of TL encoding, decoding and JSON conversion.

/// Why bytes could not be decoded. Offsets are byte positions in the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended early.
    #[error("unexpected end of input at offset {offset} (needed {needed} more bytes)")]
    UnexpectedEof {
        /// Where the read started.
        offset: usize,
        /// How many bytes it needed.
        needed: usize,
    },
    /// A constructor id that does not belong to the expected type.
    #[error("unexpected constructor {id:#010x} for {expected}")]
    UnexpectedConstructor {
        /// The TL type or constructor expected.
        expected: &'static str,
        /// The id found.
        id: u32,
    },
    /// An id no schema knows.
    #[error("unknown constructor {id:#010x}")]
    UnknownConstructor {
        /// The id found.
        id: u32,
    },
    /// Bytes left after a complete object.
    #[error("{extra} trailing bytes after the object")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// A vector count larger than the remaining input could hold.
    #[error("vector of {count} items cannot fit in {remaining} remaining bytes")]
    VectorTooLong {
        /// The declared count.
        count: usize,
        /// Bytes left.
        remaining: usize,
    },
    /// Objects nested deeper than [`crate::MAX_DEPTH`].
    #[error("nesting deeper than {max}")]
    TooDeep {
        /// The limit.
        max: u32,
    },
    /// A `string` that is not UTF-8.
    #[error("string at offset {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Where the string starts.
        offset: usize,
    },
    /// Non-zero padding after `bytes`/`string` data.
    #[error("non-zero padding at offset {offset}")]
    NonZeroPadding {
        /// Where the padding starts.
        offset: usize,
    },
    /// A `bytes` length prefix of 0xff (not a TL length form).
    #[error("invalid length prefix at offset {offset}")]
    BadLengthPrefix {
        /// Where the prefix is.
        offset: usize,
    },
    /// Well-formed TL whose value the record type does not allow.
    #[error("invalid value in {0}")]
    Invalid(&'static str),
}

/// Why a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A `string`/`bytes` or vector longer than TL can express.
    #[error("{len} bytes/items exceed the TL length limit")]
    TooLong {
        /// The length.
        len: usize,
    },
}

/// Why JSON could not be turned into a TL object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// Expected a JSON object.
    #[error("expected a JSON object")]
    NotAnObject,
    /// The object has no `"_"` string.
    #[error("missing \"_\" (constructor name)")]
    MissingName,
    /// No schema has a constructor by that name (and layer).
    #[error("unknown constructor {name:?}")]
    UnknownConstructor {
        /// The name given.
        name: String,
    },
    /// The name exists at several layers and `"_layer"` is missing.
    #[error("{name:?} exists at several layers: add \"_layer\"")]
    AmbiguousLayer {
        /// The name given.
        name: String,
    },
    /// A constructor of another type.
    #[error("expected {expected}, found {found:?}")]
    WrongConstructor {
        /// The type expected.
        expected: &'static str,
        /// The name found.
        found: String,
    },
    /// A required field is missing.
    #[error("missing field {field:?}")]
    MissingField {
        /// The field.
        field: String,
    },
    /// A key that is not a field of the constructor.
    #[error("unknown field {field:?}")]
    UnknownField {
        /// The key.
        field: String,
    },
    /// A value of the wrong JSON type or out of range.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What was expected.
        expected: &'static str,
        /// What was found (truncated).
        found: String,
    },
    /// An error inside a field.
    #[error("in {field:?}: {source}")]
    Field {
        /// The field name or array index.
        field: String,
        /// The error.
        source: Box<JsonError>,
    },
    /// The object could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl DecodeError {
    /// A stable snake_case name for the variant (used by the CLI's `{"error": kind}`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnexpectedEof { .. } => "unexpected_eof",
            Self::UnexpectedConstructor { .. } => "unexpected_constructor",
            Self::UnknownConstructor { .. } => "unknown_constructor",
            Self::TrailingBytes { .. } => "trailing_bytes",
            Self::VectorTooLong { .. } => "vector_too_long",
            Self::TooDeep { .. } => "too_deep",
            Self::InvalidUtf8 { .. } => "invalid_utf8",
            Self::NonZeroPadding { .. } => "non_zero_padding",
            Self::BadLengthPrefix { .. } => "bad_length_prefix",
            Self::Invalid(_) => "invalid",
        }
    }
}

impl JsonError {
    /// A stable snake_case name for the variant; [`JsonError::Field`] reports its innermost cause.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotAnObject => "not_an_object",
            Self::MissingName => "missing_name",
            Self::UnknownConstructor { .. } => "unknown_constructor",
            Self::AmbiguousLayer { .. } => "ambiguous_layer",
            Self::WrongConstructor { .. } => "wrong_constructor",
            Self::MissingField { .. } => "missing_field",
            Self::UnknownField { .. } => "unknown_field",
            Self::WrongType { .. } => "wrong_type",
            Self::Field { source, .. } => source.kind(),
            Self::Encode(_) => "too_long",
        }
    }
}
