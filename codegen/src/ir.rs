//! The intermediate representation: TL definitions resolved into Rust-shaped facts.

use std::collections::BTreeMap;

use grammers_tl_parser::errors::ParseError;
use grammers_tl_parser::tl::{Definition, ParameterType, Type};

use crate::CodegenError;
use crate::source::Statement;

/// A TL type as a field type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ty {
    /// `int`
    Int,
    /// `long`
    Long,
    /// `double`
    Double,
    /// `string`
    String,
    /// `bytes`
    Bytes,
    /// `int128`
    Int128,
    /// `int256`
    Int256,
    /// `Bool` (boxed boolTrue/boolFalse)
    Bool,
    /// `true` (only as `flags.N?true`)
    True,
    /// `Vector<T>` (boxed) or `vector<T>` (bare)
    Vector {
        /// Whether the `0x1cb5c415` id is written.
        boxed: bool,
        /// Item type.
        item: Box<Ty>,
    },
    /// A boxed schema type (an enum).
    Boxed {
        /// Namespace path.
        namespace: Vec<String>,
        /// Type name.
        name: String,
    },
    /// A bare constructor (`%Foo` or a lowercase constructor name).
    Bare {
        /// Namespace path.
        namespace: Vec<String>,
        /// Constructor name.
        name: String,
    },
    /// A generic `!X` parameter.
    Generic(String),
}

/// One parameter of a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// A `name:#` flags word.
    Flags {
        /// Its name (`flags`, `flags2`, ...).
        name: String,
    },
    /// A value field, maybe conditional.
    Field {
        /// TL name.
        name: String,
        /// Type.
        ty: Ty,
        /// `(flags word, bit)` when conditional.
        flag: Option<(String, u32)>,
    },
}

/// One constructor or function.
#[derive(Debug, Clone)]
pub struct Def {
    /// Namespace path (`["messages"]`).
    pub namespace: Vec<String>,
    /// TL name as written in the file (maybe with TDLib's layer suffix).
    pub name: String,
    /// TL name without the layer suffix.
    pub base_name: String,
    /// The layer, for constructors that exist at several layers.
    pub layer: Option<u32>,
    /// Constructor id.
    pub id: u32,
    /// Parameters in order.
    pub params: Vec<Param>,
    /// Generic parameters (`{X:Type}`).
    pub generics: Vec<String>,
    /// The result type.
    pub ty: Ty,
    /// Whether it is a function.
    pub is_function: bool,
    /// The source line, normalized whitespace.
    pub line: String,
}

impl Def {
    /// `ns.name` without suffix.
    pub fn full_base_name(&self) -> String {
        join(&self.namespace, &self.base_name)
    }
}

/// A whole schema.
#[derive(Debug, Default)]
pub struct Schema {
    /// Constructors and functions in file order.
    pub defs: Vec<Def>,
    /// Boxed type (namespace, name) → indices of its constructors.
    pub types: BTreeMap<(Vec<String>, String), Vec<usize>>,
}

fn join(ns: &[String], name: &str) -> String {
    ns.iter().map(|n| format!("{n}.")).collect::<String>() + name
}

/// Built-in definitions that map to Rust primitives rather than generated types.
const BUILTIN: &[&str] = &[
    "int",
    "long",
    "double",
    "string",
    "bytes",
    "int128",
    "int256",
    "vector",
    "boolFalse",
    "boolTrue",
    "true",
];

/// Builds the IR, verifying every id against its CRC.
///
/// # Errors
/// [`CodegenError::Parse`] for a line `grammers-tl-parser` rejects (other than the built-in
/// `int ? = Int`-style lines), [`CodegenError::IdMismatch`] for a wrong constructor id,
/// [`CodegenError::Unsupported`] for a shape the emitter cannot express.
pub fn build(statements: &[Statement]) -> Result<Schema, CodegenError> {
    let mut parsed = Vec::new();
    for st in statements {
        let def = match st.text.parse::<Definition>() {
            Ok(d) => d,
            // `int ? = Int`, `vector {t:Type} # [ t ] = Vector t`: built-in, nothing to generate.
            Err(ParseError::NotImplemented) => continue,
            Err(e) => {
                return Err(CodegenError::Parse {
                    line: st.text.clone(),
                    error: format!("{e:?}"),
                });
            }
        };
        parsed.push((st, def));
    }
    // Layered constructors: the same name with the trailing digits stripped appears more than once.
    let stem = |n: &str| n.trim_end_matches(|c: char| c.is_ascii_digit()).to_owned();
    let mut stems: BTreeMap<(Vec<String>, String), usize> = BTreeMap::new();
    for (st, d) in &parsed {
        if st.layer.is_some() && !st.is_function {
            *stems
                .entry((d.namespace.clone(), stem(&d.name)))
                .or_default() += 1;
        }
    }
    let mut schema = Schema::default();
    for (st, mut d) in parsed {
        if BUILTIN.contains(&d.name.as_str()) && d.namespace.is_empty() {
            let name = d.name.clone();
            verify_id(st, &mut d, &name)?;
            continue;
        }
        let s = stem(&d.name);
        let layered = st.layer.is_some()
            && stems
                .get(&(d.namespace.clone(), s.clone()))
                .copied()
                .unwrap_or(0)
                > 1;
        let (base_name, layer) = if layered {
            let suffix: Option<u32> = d.name[s.len()..].parse().ok();
            if let (Some(n), Some(l)) = (suffix, st.layer) {
                if n != l {
                    return Err(CodegenError::Unsupported {
                        line: st.text.clone(),
                        why: format!("name suffix {n} but listed under layer {l}"),
                    });
                }
            }
            (s, suffix.or(st.layer))
        } else {
            (d.name.clone(), None)
        };
        verify_id(st, &mut d, &base_name)?;
        let def = lower(st, &d, base_name, layer)?;
        if !def.is_function {
            if let Ty::Boxed { namespace, name } = &def.ty {
                schema
                    .types
                    .entry((namespace.clone(), name.clone()))
                    .or_default()
                    .push(schema.defs.len());
            }
        }
        schema.defs.push(def);
    }
    Ok(schema)
}

/// Checks an explicit `#id`; without one, sets the id to the CRC32 of the normalized line
/// (computed here: the parser's own inference differs from the TL rules for `bytes`).
fn verify_id(st: &Statement, d: &mut Definition, base_name: &str) -> Result<(), CodegenError> {
    let full = join(&d.namespace, base_name);
    if !st
        .text
        .split_whitespace()
        .next()
        .is_some_and(|n| n.contains('#'))
    {
        d.id = crate::crc::compute(&st.text, &full);
        return Ok(());
    }
    let computed = crate::crc::compute(&st.text, &full);
    if !crate::crc::candidates(&st.text, &full).contains(&d.id) {
        return Err(CodegenError::IdMismatch {
            line: st.text.clone(),
            declared: d.id,
            computed,
            normalized: crate::crc::normalize(&st.text, &full),
        });
    }
    Ok(())
}

fn lower(
    st: &Statement,
    d: &Definition,
    base_name: String,
    layer: Option<u32>,
) -> Result<Def, CodegenError> {
    let unsupported = |why: &str| CodegenError::Unsupported {
        line: st.text.clone(),
        why: why.to_owned(),
    };
    let mut params = Vec::new();
    let mut generics = Vec::new();
    for p in &d.params {
        match &p.ty {
            ParameterType::Flags => params.push(Param::Flags {
                name: p.name.clone(),
            }),
            ParameterType::Normal { ty, flag } => {
                let ty = lower_ty(ty).ok_or_else(|| unsupported("unsupported parameter type"))?;
                if let Ty::Generic(g) = &ty {
                    if !generics.contains(g) {
                        generics.push(g.clone());
                    }
                }
                if ty == Ty::True && flag.is_none() {
                    return Err(unsupported("`true` outside a flag"));
                }
                let flag = match flag {
                    Some(f) => Some((
                        f.name.clone(),
                        u32::try_from(f.index)
                            .ok()
                            .filter(|&b| b < 32)
                            .ok_or_else(|| unsupported("flag bit above 31"))?,
                    )),
                    None => None,
                };
                params.push(Param::Field {
                    name: p.name.clone(),
                    ty,
                    flag,
                });
            }
        }
    }
    if matches!(params.last(), Some(Param::Flags { .. })) {
        return Err(unsupported("a flags word must be followed by a field"));
    }
    let ty = if d.ty.generic_ref {
        Ty::Generic(d.ty.name.clone())
    } else {
        lower_ty(&d.ty).ok_or_else(|| unsupported("unsupported result type"))?
    };
    if !st.is_function && !matches!(ty, Ty::Boxed { .. }) {
        return Err(unsupported("constructors must build a boxed type"));
    }
    Ok(Def {
        namespace: d.namespace.clone(),
        name: d.name.clone(),
        base_name,
        layer,
        id: d.id,
        params,
        generics,
        ty,
        is_function: st.is_function,
        line: st.text.clone(),
    })
}

fn lower_ty(t: &Type) -> Option<Ty> {
    if t.generic_ref {
        return Some(Ty::Generic(t.name.clone()));
    }
    let prim = match (t.namespace.is_empty(), t.name.as_str()) {
        (true, "int") => Some(Ty::Int),
        (true, "long") => Some(Ty::Long),
        (true, "double") => Some(Ty::Double),
        (true, "string") => Some(Ty::String),
        (true, "bytes") => Some(Ty::Bytes),
        (true, "int128") => Some(Ty::Int128),
        (true, "int256") => Some(Ty::Int256),
        (true, "Bool") => Some(Ty::Bool),
        (true, "true") => Some(Ty::True),
        (true, "Vector" | "vector") => {
            let item = lower_ty(t.generic_arg.as_deref()?)?;
            Some(Ty::Vector {
                boxed: t.name == "Vector",
                item: Box::new(item),
            })
        }
        _ => None,
    };
    if prim.is_some() {
        return prim;
    }
    if t.generic_arg.is_some() {
        return None;
    }
    let name = t.name.trim_start_matches('%').to_owned();
    Some(if t.bare {
        Ty::Bare {
            namespace: t.namespace.clone(),
            name,
        }
    } else {
        Ty::Boxed {
            namespace: t.namespace.clone(),
            name,
        }
    })
}
