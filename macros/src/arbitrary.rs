//! `TlArbitrary`: random values for property tests and fuzzing.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{DataEnum, DataStruct, DeriveInput, Fields};

use crate::attrs::{field_attrs, type_attrs};

pub fn on_struct(input: &DeriveInput, data: &DataStruct) -> syn::Result<TokenStream> {
    let krate = type_attrs(&input.attrs)?.krate;
    let name = &input.ident;
    let mut g = input.generics.clone();
    for p in g.type_params_mut() {
        p.bounds
            .push(syn::parse_quote!(#krate::arbitrary::TlArbitrary));
    }
    let (impl_g, ty_g, where_c) = g.split_for_impl();
    let mut inits = Vec::new();
    if let Fields::Named(named) = &data.fields {
        for f in &named.named {
            let ident = &f.ident;
            let a = field_attrs(&f.attrs)?;
            inits.push(if a.flag.is_some() {
                quote! { #ident: if g.coin() { Some(#krate::arbitrary::TlArbitrary::arbitrary(g)) } else { None } }
            } else {
                quote! { #ident: #krate::arbitrary::TlArbitrary::arbitrary(g) }
            });
        }
    }
    Ok(quote! {
        impl #impl_g #krate::arbitrary::TlArbitrary for #name #ty_g #where_c {
            fn arbitrary(g: &mut #krate::arbitrary::Gen) -> Self {
                g.descend();
                let v = Self { #(#inits),* };
                g.ascend();
                v
            }
        }
    })
}

pub fn on_enum(input: &DeriveInput, data: &DataEnum) -> syn::Result<TokenStream> {
    let krate = type_attrs(&input.attrs)?.krate;
    let name = &input.ident;
    let n = data.variants.len();
    let arms = data.variants.iter().enumerate().map(|(i, v)| {
        let ident = &v.ident;
        quote! { #i => Self::#ident(#krate::arbitrary::TlArbitrary::arbitrary(g)), }
    });
    let last = data.variants.last().map(|v| &v.ident);
    Ok(quote! {
        impl #krate::arbitrary::TlArbitrary for #name {
            fn arbitrary(g: &mut #krate::arbitrary::Gen) -> Self {
                match g.below(#n) {
                    #(#arms)*
                    _ => Self::#last(#krate::arbitrary::TlArbitrary::arbitrary(g)),
                }
            }
        }
    })
}
