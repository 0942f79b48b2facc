//! Derive macros for TL (Type Language) serialization.
//!
//! The generated schema types in `secretchat-schema` use these derives, and so can hand-written
//! TL types elsewhere, so that every TL object is encoded and decoded by one code path:
//!
//! - [`TlSerialize`]: `Serialize` (boxed: constructor id, then the fields) and `BareSerialize`.
//! - [`TlDeserialize`]: `Deserialize` (checks the constructor id) and `BareDeserialize`.
//! - [`TlJson`]: `TlJson`, the JSON form used by `secretchat tl decode|encode`.
//! - [`Identifiable`]: the constructor id, TL name and layer.
//!
//! # Attributes
//! On a struct (one TL constructor or function):
//! `#[tl(id = 0x1be31789, name = "decryptedMessageLayer", layer = 23)]`; `layer` is given only
//! for constructors that exist at several layers. `#[tl(krate = path)]` overrides the runtime
//! crate path (default `::secretchat_schema`).
//!
//! On a field: `#[tl(flags_before = "flags")]` writes/reads the flags word named `flags` right
//! before this field; `#[tl(flag = "flags.9")]` makes an `Option<T>` field conditional on bit 9;
//! `#[tl(true_flag = "flags.5")]` makes a `bool` field a pure flag bit (TL `flags.5?true`).
//!
//! On an enum (one boxed TL type): every variant is a one-field tuple variant holding the
//! constructor's struct.

#![forbid(unsafe_code)]

mod arbitrary;
mod attrs;
mod enums;
mod structs;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Derives `Serialize` and `BareSerialize` (structs) or `Serialize` (enums).
#[proc_macro_derive(TlSerialize, attributes(tl))]
pub fn derive_tl_serialize(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    dispatch(&input, structs::serialize, enums::serialize)
}

/// Derives `Deserialize` and `BareDeserialize` (structs) or `Deserialize` (enums).
#[proc_macro_derive(TlDeserialize, attributes(tl))]
pub fn derive_tl_deserialize(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    dispatch(&input, structs::deserialize, enums::deserialize)
}

/// Derives `TlJson`: the `{"_": name, ...}` JSON form of a TL object.
#[proc_macro_derive(TlJson, attributes(tl))]
pub fn derive_tl_json(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    dispatch(&input, structs::json, enums::json)
}

/// Derives `arbitrary::TlArbitrary`: random values for property tests and fuzzing.
#[proc_macro_derive(TlArbitrary, attributes(tl))]
pub fn derive_tl_arbitrary(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    dispatch(&input, arbitrary::on_struct, arbitrary::on_enum)
}

/// Derives `Identifiable` from the struct's `#[tl(id, name, layer)]` attribute.
#[proc_macro_derive(Identifiable, attributes(tl))]
pub fn derive_identifiable(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    dispatch(&input, structs::identifiable, |_, _| {
        Err(syn::Error::new(
            proc_macro2::Span::call_site(),
            "Identifiable is derived for structs (TL constructors) only",
        ))
    })
}

type Gen<T> = fn(&DeriveInput, &T) -> syn::Result<proc_macro2::TokenStream>;

fn dispatch(
    input: &DeriveInput,
    on_struct: Gen<syn::DataStruct>,
    on_enum: Gen<syn::DataEnum>,
) -> TokenStream {
    let out = match &input.data {
        syn::Data::Struct(s) => on_struct(input, s),
        syn::Data::Enum(e) => on_enum(input, e),
        syn::Data::Union(_) => Err(syn::Error::new_spanned(
            &input.ident,
            "TL derives support structs and enums only",
        )),
    };
    out.unwrap_or_else(syn::Error::into_compile_error).into()
}
