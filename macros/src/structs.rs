//! Derives for structs: one struct is one TL constructor (or function).

use proc_macro2::TokenStream;
use quote::quote;
use syn::{DataStruct, DeriveInput, Fields, Generics, Ident, Path};

use crate::attrs::{FieldAttrs, TypeAttrs, field_attrs, type_attrs};

struct Field {
    ident: Ident,
    attrs: FieldAttrs,
}

fn fields(data: &DataStruct) -> syn::Result<Vec<Field>> {
    match &data.fields {
        Fields::Named(named) => named
            .named
            .iter()
            .map(|f| {
                Ok(Field {
                    ident: f.ident.clone().ok_or_else(|| {
                        syn::Error::new_spanned(f, "TL structs need named fields")
                    })?,
                    attrs: field_attrs(&f.attrs)?,
                })
            })
            .collect(),
        Fields::Unit => Ok(Vec::new()),
        Fields::Unnamed(u) => Err(syn::Error::new_spanned(
            u,
            "TL structs need named fields (or none)",
        )),
    }
}

/// Adds `bound` to every type parameter.
fn bounded(generics: &Generics, bound: TokenStream) -> Generics {
    let mut g = generics.clone();
    for p in g.type_params_mut() {
        p.bounds.push(syn::parse_quote!(#bound));
    }
    g
}

fn require_id(input: &DeriveInput, t: &TypeAttrs) -> syn::Result<syn::LitInt> {
    t.id.clone().ok_or_else(|| {
        syn::Error::new_spanned(&input.ident, "missing #[tl(id = 0x...)] on a TL struct")
    })
}

/// Code computing the flags word `word` from the fields bound to it.
fn flags_word(all: &[Field], word: &str) -> TokenStream {
    let bits = all.iter().map(|f| {
        let ident = &f.ident;
        if let Some(r) = f.attrs.flag.as_ref().filter(|r| r.word == word) {
            let bit = r.bit;
            quote! { if self.#ident.is_some() { flags |= 1u32 << #bit; } }
        } else if let Some(r) = f.attrs.true_flag.as_ref().filter(|r| r.word == word) {
            let bit = r.bit;
            quote! { if self.#ident { flags |= 1u32 << #bit; } }
        } else {
            quote! {}
        }
    });
    quote! {{
        let mut flags: u32 = 0;
        #(#bits)*
        flags
    }}
}

pub fn serialize(input: &DeriveInput, data: &DataStruct) -> syn::Result<TokenStream> {
    let t = type_attrs(&input.attrs)?;
    let krate = &t.krate;
    let id = require_id(input, &t)?;
    let all = fields(data)?;
    let g = bounded(&input.generics, quote!(#krate::Serialize));
    let (impl_g, ty_g, where_c) = g.split_for_impl();
    let name = &input.ident;
    let writes = all.iter().map(|f| {
        let ident = &f.ident;
        let flags = f.attrs.flags_before.as_deref().map(|w| {
            let compute = flags_word(&all, w);
            quote! { #krate::Serialize::serialize(&#compute, out)?; }
        });
        let body = if f.attrs.true_flag.is_some() {
            quote! {}
        } else if f.attrs.flag.is_some() {
            quote! { if let Some(v) = &self.#ident { #krate::Serialize::serialize(v, out)?; } }
        } else {
            quote! { #krate::Serialize::serialize(&self.#ident, out)?; }
        };
        quote! { #flags #body }
    });
    Ok(quote! {
        impl #impl_g #krate::BareSerialize for #name #ty_g #where_c {
            fn serialize_bare(&self, out: &mut ::std::vec::Vec<u8>)
                -> ::core::result::Result<(), #krate::EncodeError> {
                #(#writes)*
                Ok(())
            }
        }
        impl #impl_g #krate::Serialize for #name #ty_g #where_c {
            fn serialize(&self, out: &mut ::std::vec::Vec<u8>)
                -> ::core::result::Result<(), #krate::EncodeError> {
                out.extend_from_slice(&(#id as u32).to_le_bytes());
                #krate::BareSerialize::serialize_bare(self, out)
            }
        }
        impl #impl_g #krate::VectorItem for #name #ty_g #where_c {}
    })
}

pub fn deserialize(input: &DeriveInput, data: &DataStruct) -> syn::Result<TokenStream> {
    let t = type_attrs(&input.attrs)?;
    let krate = &t.krate;
    let id = require_id(input, &t)?;
    let all = fields(data)?;
    let g = bounded(&input.generics, quote!(#krate::Deserialize));
    let (impl_g, ty_g, where_c) = g.split_for_impl();
    let name = &input.ident;
    let tl_name = t.name.as_ref().map(|n| n.value()).unwrap_or_default();
    let reads = all.iter().map(|f| {
        let ident = &f.ident;
        let flags = f.attrs.flags_before.as_deref().map(|w| {
            let w = quote::format_ident!("__flags_{}", w);
            quote! { let #w = r.read_u32()?; }
        });
        let body = if let Some(fr) = &f.attrs.true_flag {
            let (w, bit) = (quote::format_ident!("__flags_{}", fr.word), fr.bit);
            quote! { let #ident = #w & (1u32 << #bit) != 0; }
        } else if let Some(fr) = &f.attrs.flag {
            let (w, bit) = (quote::format_ident!("__flags_{}", fr.word), fr.bit);
            quote! {
                let #ident = if #w & (1u32 << #bit) != 0 {
                    Some(#krate::Deserialize::deserialize(r)?)
                } else {
                    None
                };
            }
        } else {
            quote! { let #ident = #krate::Deserialize::deserialize(r)?; }
        };
        quote! { #flags #body }
    });
    let idents = all.iter().map(|f| &f.ident);
    Ok(quote! {
        impl #impl_g #krate::BareDeserialize for #name #ty_g #where_c {
            fn deserialize_bare(r: &mut #krate::Reader<'_>)
                -> ::core::result::Result<Self, #krate::DecodeError> {
                #(#reads)*
                Ok(Self { #(#idents),* })
            }
        }
        impl #impl_g #krate::Deserialize for #name #ty_g #where_c {
            fn deserialize(r: &mut #krate::Reader<'_>)
                -> ::core::result::Result<Self, #krate::DecodeError> {
                let id = r.read_u32()?;
                if id != #id as u32 {
                    return Err(#krate::DecodeError::UnexpectedConstructor {
                        expected: #tl_name,
                        id,
                    });
                }
                r.nested(|r| <Self as #krate::BareDeserialize>::deserialize_bare(r))
            }
        }
    })
}

pub fn identifiable(input: &DeriveInput, _data: &DataStruct) -> syn::Result<TokenStream> {
    let t = type_attrs(&input.attrs)?;
    let krate = &t.krate;
    let id = require_id(input, &t)?;
    let name = t
        .name
        .clone()
        .ok_or_else(|| syn::Error::new_spanned(&input.ident, "missing #[tl(name = \"...\")]"))?;
    let layer = match &t.layer {
        Some(l) => quote!(Some(#l)),
        None => quote!(None),
    };
    let ident = &input.ident;
    let (impl_g, ty_g, where_c) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_g #krate::Identifiable for #ident #ty_g #where_c {
            const CONSTRUCTOR_ID: u32 = #id as u32;
            const TL_NAME: &'static str = #name;
            const LAYER: ::core::option::Option<u32> = #layer;
        }
    })
}

pub fn json(input: &DeriveInput, data: &DataStruct) -> syn::Result<TokenStream> {
    let t = type_attrs(&input.attrs)?;
    let krate: &Path = &t.krate;
    let all = fields(data)?;
    let g = bounded(&input.generics, quote!(#krate::TlJson));
    let (impl_g, ty_g, where_c) = g.split_for_impl();
    let name = &input.ident;
    let j = quote!(#krate::json);
    let to = all.iter().map(|f| {
        let ident = &f.ident;
        let key = ident.to_string().trim_start_matches("r#").to_owned();
        if f.attrs.true_flag.is_some() {
            quote! { if self.#ident { map.insert(#key.into(), #j::Value::Bool(true)); } }
        } else if f.attrs.flag.is_some() {
            quote! { if let Some(v) = &self.#ident { map.insert(#key.into(), #krate::TlJson::to_json(v)); } }
        } else {
            quote! { map.insert(#key.into(), #krate::TlJson::to_json(&self.#ident)); }
        }
    });
    let keys: Vec<String> = all
        .iter()
        .map(|f| f.ident.to_string().trim_start_matches("r#").to_owned())
        .collect();
    let from = all.iter().zip(&keys).map(|(f, key)| {
        let ident = &f.ident;
        if f.attrs.true_flag.is_some() {
            quote! { let #ident = #j::true_flag(map, #key)?; }
        } else if f.attrs.flag.is_some() {
            quote! { let #ident = #j::optional(map, #key)?; }
        } else {
            quote! { let #ident = #j::required(map, #key)?; }
        }
    });
    let idents = all.iter().map(|f| &f.ident);
    Ok(quote! {
        impl #impl_g #krate::TlJson for #name #ty_g #where_c {
            fn to_json(&self) -> #j::Value {
                let mut map = #j::Map::new();
                #j::put_header::<Self>(&mut map);
                #(#to)*
                #j::Value::Object(map)
            }
            fn from_json(value: &#j::Value) -> ::core::result::Result<Self, #krate::JsonError> {
                let map = #j::object_of::<Self>(value, &[#(#keys),*])?;
                #(#from)*
                Ok(Self { #(#idents),* })
            }
        }
    })
}
