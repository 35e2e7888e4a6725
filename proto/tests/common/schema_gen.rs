//! Arguments generated from a QAPI schema, and single mutations of them that
//! make them invalid by construction. Shared by the property tests
//! (`proto/tests/qmp_schema.rs`) and the differential test against QEMU
//! (`io-std/tests/qmp_schema.rs`).
#![allow(dead_code)]

use serde_json::{Map, Value as J, json};
use vmwire_proto::qmp::schema::{JsonType, MetaType, SchemaRef, Type};

/// One step of a path into generated arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A member.
    Key(String),
    /// An array element.
    Index(usize),
}

/// A path shown as the checker shows it: `a.b[0].c`.
pub fn show(path: &[Seg]) -> String {
    let mut out = String::new();
    for (i, seg) in path.iter().enumerate() {
        match seg {
            Seg::Key(k) if i > 0 => out.push_str(&format!(".{k}")),
            Seg::Key(k) => out.push_str(k),
            Seg::Index(n) => out.push_str(&format!("[{n}]")),
        }
    }
    out
}

/// The kinds of mutation, each invalid by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A required member removed.
    Missing,
    /// An unknown member added.
    Unknown,
    /// A value replaced by one of a wrong JSON type.
    WrongType,
    /// An enum value replaced by a string the enum does not have.
    BadEnum,
}

/// A place in generated arguments where a mutation makes them invalid.
#[derive(Debug, Clone)]
pub struct Site {
    /// What the mutation does.
    pub kind: Kind,
    /// The path the checker must name.
    pub path: Vec<Seg>,
    /// The value put there (for WrongType and BadEnum).
    pub value: J,
}

/// The member added by an Unknown mutation.
pub const BOGUS: &str = "vmwire-bogus";

/// A generator: `pick(n)` chooses in `0..n` (always 0: minimal arguments,
/// no optional members, first enum values and branches).
pub struct Gen<'p> {
    pick: &'p mut dyn FnMut(usize) -> usize,
    /// Mutation sites found while generating.
    pub sites: Vec<Site>,
}

/// A small deterministic random source (xorshift) for `Gen`.
pub fn rng(seed: u64) -> impl FnMut(usize) -> usize {
    let mut x = seed | 1;
    move |n| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if n == 0 { 0 } else { (x % n as u64) as usize }
    }
}

/// A value of the wrong JSON type for `ty` (`None`: every JSON type fits).
pub fn wrong_for(ty: Type<'_>) -> Option<J> {
    Some(match ty.meta() {
        MetaType::Builtin => match ty.json_type()? {
            JsonType::String => json!(1),
            JsonType::Int => json!(1.5),
            JsonType::Number => json!("1"),
            JsonType::Boolean => json!(1),
            JsonType::Null => json!(true),
            JsonType::Object | JsonType::Array => json!(1),
            _ => return None,
        },
        MetaType::Enum => json!(true),
        MetaType::Object => json!("x"),
        MetaType::Array => json!({}),
        _ => return None,
    })
}

impl<'p> Gen<'p> {
    /// A generator choosing with `pick`.
    pub fn new(pick: &'p mut dyn FnMut(usize) -> usize) -> Self {
        Gen { pick, sites: Vec::new() }
    }

    fn choose(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.pick)(n) % n }
    }

    /// Arguments for `command`, or `None` if the generator gave up (a
    /// required recursion too deep).
    pub fn arguments(&mut self, schema: SchemaRef<'_>, command: &str) -> Option<J> {
        let ty = schema.command(command)?.arguments()?;
        let mut map = Map::new();
        self.object(ty, &mut Vec::new(), 0, &mut map)?;
        Some(J::Object(map))
    }

    fn value(&mut self, ty: Type<'_>, path: &mut Vec<Seg>, depth: usize) -> Option<J> {
        if depth > 12 {
            return None;
        }
        Some(match ty.meta() {
            MetaType::Builtin => match ty.json_type()? {
                JsonType::String => json!(["x", "vmwire", "é\"\\"][self.choose(3)]),
                // Introspection says `int` for every integer type (uint8 to int64): small
                // non-negative values fit them all.
                JsonType::Int => json!([0, 1, 2][self.choose(3)]),
                JsonType::Number => [json!(0), json!(1.5)][self.choose(2)].clone(),
                JsonType::Boolean => json!([false, true][self.choose(2)]),
                JsonType::Null => J::Null,
                JsonType::Object => json!({}),
                JsonType::Array => json!([]),
                _ => [json!(0), json!("x"), json!({"a": [1]})][self.choose(3)].clone(),
            },
            MetaType::Enum => {
                let values: Vec<String> = ty.values().map(|v| v.name().to_string()).collect();
                let v = values.get(self.choose(values.len()))?.clone();
                self.sites.push(Site { kind: Kind::BadEnum, path: path.clone(), value: json!(BOGUS) });
                J::String(v)
            }
            MetaType::Array => {
                let element = ty.element()?;
                let n = if depth > 3 { 0 } else { self.choose(3) };
                let mut out = Vec::new();
                for i in 0..n {
                    path.push(Seg::Index(i));
                    let v = self.value(element, path, depth + 1);
                    path.pop();
                    out.push(v?);
                }
                J::Array(out)
            }
            MetaType::Object => {
                let mut map = Map::new();
                self.object(ty, path, depth + 1, &mut map)?;
                J::Object(map)
            }
            MetaType::Alternate => {
                let branches: Vec<Type<'_>> = ty.branches().filter_map(|b| b.ty()).collect();
                // Deep down, prefer a branch that does not nest.
                let flat = branches.iter().position(|b| b.meta() == MetaType::Builtin);
                let i = match flat {
                    Some(i) if depth > 3 => i,
                    _ => self.choose(branches.len()),
                };
                let branch = *branches.get(i)?;
                // Sites inside the value stay valid mutations only where the
                // branch is still chosen: keep those of objects and arrays.
                let mark = self.sites.len();
                let v = self.value(branch, path, depth + 1)?;
                if !matches!(branch.meta(), MetaType::Object | MetaType::Array) {
                    self.sites.truncate(mark);
                }
                v
            }
            _ => J::Null,
        })
    }

    /// Members of `ty` into `map` (a union's variant members too).
    fn object(&mut self, ty: Type<'_>, path: &mut Vec<Seg>, depth: usize, map: &mut Map<String, J>) -> Option<()> {
        let tag = ty.tag().map(|t| t.name().to_string());
        for m in ty.members() {
            let name = m.name().to_string();
            let member_ty = m.ty()?;
            if Some(&name) == tag.as_ref() {
                continue;
            }
            if m.optional() && (depth > 4 || self.choose(2) == 0) {
                continue;
            }
            path.push(Seg::Key(name.clone()));
            let v = self.value(member_ty, path, depth);
            if let (Some(wrong), false) = (wrong_for(member_ty), v.is_none()) {
                self.sites.push(Site { kind: Kind::WrongType, path: path.clone(), value: wrong });
            }
            if !m.optional() {
                self.sites.push(Site { kind: Kind::Missing, path: path.clone(), value: J::Null });
            }
            path.pop();
            map.insert(name, v?);
        }
        if let Some(tag) = ty.tag() {
            let name = tag.name().to_string();
            let tag_ty = tag.ty()?;
            let cases: Vec<String> = tag_ty.values().map(|v| v.name().to_string()).collect();
            let case = cases.get(self.choose(cases.len()))?.clone();
            path.push(Seg::Key(name.clone()));
            self.sites.push(Site { kind: Kind::BadEnum, path: path.clone(), value: json!(BOGUS) });
            self.sites.push(Site { kind: Kind::WrongType, path: path.clone(), value: json!(true) });
            self.sites.push(Site { kind: Kind::Missing, path: path.clone(), value: J::Null });
            path.pop();
            map.insert(name, J::String(case.clone()));
            if let Some(variant) = ty.variants().find(|v| v.name() == case.as_str()).and_then(|v| v.ty()) {
                self.object(variant, path, depth, map)?;
            }
        }
        self.sites.push(Site { kind: Kind::Unknown, path: path.clone(), value: json!(1) });
        Some(())
    }
}

/// `args` with the mutation at `site` applied.
pub fn mutate(args: &J, site: &Site) -> J {
    let mut out = args.clone();
    let (last, parents) = match site.path.split_last() {
        Some((last, parents)) => (Some(last), parents),
        None => (None, &[][..]),
    };
    let mut at = &mut out;
    let target = if site.kind == Kind::Unknown { &site.path[..] } else { parents };
    for seg in target {
        at = match seg {
            Seg::Key(k) => &mut at[k.as_str()],
            Seg::Index(i) => &mut at[*i],
        };
    }
    match site.kind {
        Kind::Unknown => {
            at.as_object_mut().map(|m| m.insert(BOGUS.into(), site.value.clone()));
        }
        Kind::Missing => {
            if let (Some(Seg::Key(k)), Some(m)) = (last, at.as_object_mut()) {
                m.remove(k);
            }
        }
        Kind::WrongType | Kind::BadEnum => {
            let slot = match last {
                Some(Seg::Key(k)) => &mut at[k.as_str()],
                Some(Seg::Index(i)) => &mut at[*i],
                None => at,
            };
            *slot = site.value.clone();
        }
    }
    out
}

/// The path the checker names for the mutation at `site`.
pub fn expected_path(site: &Site) -> String {
    match site.kind {
        Kind::Unknown => {
            let mut p = site.path.clone();
            p.push(Seg::Key(BOGUS.into()));
            show(&p)
        }
        _ => show(&site.path),
    }
}
