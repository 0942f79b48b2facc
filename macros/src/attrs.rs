//! Parsing of the `#[tl(...)]` attributes.

use syn::{Attribute, Expr, ExprLit, Lit, LitInt, LitStr, Path};

/// Struct-level attributes.
pub struct TypeAttrs {
    pub id: Option<LitInt>,
    pub name: Option<LitStr>,
    pub layer: Option<LitInt>,
    pub krate: Path,
}

/// A `flags.N` reference.
pub struct FlagRef {
    pub word: String,
    pub bit: u32,
}

/// Field-level attributes.
#[derive(Default)]
pub struct FieldAttrs {
    /// Write the flags word with this name before the field.
    pub flags_before: Option<String>,
    /// `Option<T>` field present when the bit is set.
    pub flag: Option<FlagRef>,
    /// `bool` field that is only the bit.
    pub true_flag: Option<FlagRef>,
}

pub fn type_attrs(attrs: &[Attribute]) -> syn::Result<TypeAttrs> {
    let mut out = TypeAttrs {
        id: None,
        name: None,
        layer: None,
        krate: syn::parse_quote!(::secretchat_schema),
    };
    for attr in attrs.iter().filter(|a| a.path().is_ident("tl")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("id") {
                out.id = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("name") {
                out.name = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("layer") {
                out.layer = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("krate") {
                out.krate = meta.value()?.parse()?;
            } else {
                return Err(meta.error("unknown tl attribute"));
            }
            Ok(())
        })?;
    }
    Ok(out)
}

pub fn field_attrs(attrs: &[Attribute]) -> syn::Result<FieldAttrs> {
    let mut out = FieldAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("tl")) {
        attr.parse_nested_meta(|meta| {
            let value: Expr = meta.value()?.parse()?;
            let Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) = &value
            else {
                return Err(meta.error("expected a string"));
            };
            if meta.path.is_ident("flags_before") {
                out.flags_before = Some(s.value());
            } else if meta.path.is_ident("flag") {
                out.flag = Some(flag_ref(s)?);
            } else if meta.path.is_ident("true_flag") {
                out.true_flag = Some(flag_ref(s)?);
            } else {
                return Err(meta.error("unknown tl field attribute"));
            }
            Ok(())
        })?;
    }
    if out.flag.is_some() && out.true_flag.is_some() {
        return Err(syn::Error::new(
            proc_macro2::Span::call_site(),
            "a field is either `flag` or `true_flag`, not both",
        ));
    }
    Ok(out)
}

fn flag_ref(s: &LitStr) -> syn::Result<FlagRef> {
    let v = s.value();
    let (word, bit) = v
        .split_once('.')
        .ok_or_else(|| syn::Error::new_spanned(s, "expected `flags.N`"))?;
    let bit: u32 = bit
        .parse()
        .map_err(|_| syn::Error::new_spanned(s, "flag bit must be a number"))?;
    if bit > 31 {
        return Err(syn::Error::new_spanned(s, "flag bit must be 0..=31"));
    }
    Ok(FlagRef {
        word: word.to_owned(),
        bit,
    })
}
