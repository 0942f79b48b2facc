//! Derives for enums: one enum is one boxed TL type, one variant per constructor.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{DataEnum, DeriveInput, Fields, Ident, Type};

use crate::attrs::type_attrs;

fn variants(data: &DataEnum) -> syn::Result<Vec<(Ident, Type)>> {
    data.variants
        .iter()
        .map(|v| match &v.fields {
            Fields::Unnamed(u) if u.unnamed.len() == 1 => {
                let ty = u.unnamed.iter().map(|f| f.ty.clone()).next();
                ty.map(|ty| (v.ident.clone(), ty)).ok_or_else(|| {
                    syn::Error::new_spanned(v, "expected one field holding the constructor")
                })
            }
            _ => Err(syn::Error::new_spanned(
                v,
                "TL enum variants hold exactly one constructor struct",
            )),
        })
        .collect()
}

pub fn serialize(input: &DeriveInput, data: &DataEnum) -> syn::Result<TokenStream> {
    let krate = type_attrs(&input.attrs)?.krate;
    let name = &input.ident;
    let arms = variants(data)?.into_iter().map(|(v, _)| {
        quote! { Self::#v(x) => #krate::Serialize::serialize(x, out), }
    });
    Ok(quote! {
        impl #krate::Serialize for #name {
            fn serialize(&self, out: &mut ::std::vec::Vec<u8>)
                -> ::core::result::Result<(), #krate::EncodeError> {
                match self { #(#arms)* }
            }
        }
        impl #krate::VectorItem for #name {}
    })
}

pub fn deserialize(input: &DeriveInput, data: &DataEnum) -> syn::Result<TokenStream> {
    let krate = type_attrs(&input.attrs)?.krate;
    let name = &input.ident;
    let type_name = name.to_string();
    let arms = variants(data)?.into_iter().map(|(v, ty)| {
        quote! {
            if id == <#ty as #krate::Identifiable>::CONSTRUCTOR_ID {
                return r.nested(|r| {
                    <#ty as #krate::BareDeserialize>::deserialize_bare(r).map(Self::#v)
                });
            }
        }
    });
    Ok(quote! {
        impl #krate::Deserialize for #name {
            fn deserialize(r: &mut #krate::Reader<'_>)
                -> ::core::result::Result<Self, #krate::DecodeError> {
                let id = r.read_u32()?;
                #(#arms)*
                Err(#krate::DecodeError::UnexpectedConstructor { expected: #type_name, id })
            }
        }
    })
}

pub fn json(input: &DeriveInput, data: &DataEnum) -> syn::Result<TokenStream> {
    let krate = type_attrs(&input.attrs)?.krate;
    let j = quote!(#krate::json);
    let name = &input.ident;
    let type_name = name.to_string();
    let vs = variants(data)?;
    let to = vs
        .iter()
        .map(|(v, _)| quote! { Self::#v(x) => #krate::TlJson::to_json(x), });
    let from = vs.iter().map(|(v, ty)| {
        quote! {
            if #j::names::<#ty>(&header) {
                return <#ty as #krate::TlJson>::from_json(value).map(Self::#v);
            }
        }
    });
    let layers = vs.iter().map(|(_, ty)| {
        quote! { (<#ty as #krate::Identifiable>::TL_NAME, <#ty as #krate::Identifiable>::LAYER) }
    });
    Ok(quote! {
        impl #krate::TlJson for #name {
            fn to_json(&self) -> #j::Value {
                match self { #(#to)* }
            }
            fn from_json(value: &#j::Value) -> ::core::result::Result<Self, #krate::JsonError> {
                let header = #j::header(value, &[#(#layers),*])?;
                #(#from)*
                Err(#krate::JsonError::WrongConstructor {
                    expected: #type_name,
                    found: header.name.to_owned(),
                })
            }
        }
    })
}
