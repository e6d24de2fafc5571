//! One walk over a parse tree that visits every node kind without copying the tree: the
//! protobuf types of `pg_query` derive `Serialize`, so [`Inspect`] is a `serde::Serializer`
//! that sees each node as it is visited and keeps only what the checks need (a path of
//! field and node names, the function names of the call being visited, the `$n` found).
//! Nothing is built per node, so the walk's memory is its path (bounded by
//! [`MAX_TREE_DEPTH`]) plus what it returns, and it stops at the first refusal or once the
//! tree has more than [`MAX_TREE_NODES`] nodes.
//!
//! (Turning the tree into a `serde_json::Value` first, as this once did, cost hundreds of
//! bytes per node and grew faster than the text: a 220 KB query took 528 MB.)

use std::fmt;

use serde::Serialize;
use serde::ser::{self, Impossible};

use super::SqlError;
use super::denylist;

/// Most nodes a parse tree may have. A 64 KiB text (the longest `query` or `where`) of the
/// densest SQL (`1+1+1...`) parses to about 100,000; anything larger is refused, so the walk
/// and what follows it (regeneration, a second parse) stay bounded whatever the text.
pub const MAX_TREE_NODES: usize = 200_000;

/// Deepest path (field and node names from the root) the walk follows. The protobuf
/// decoder already refuses messages nested more than 100 deep; this is the walk's own guard.
pub const MAX_TREE_DEPTH: usize = 1_000;

/// What one walk found in a tree that passed the checks.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Inspection {
    /// Nodes visited (messages of the tree, the root included).
    pub nodes: usize,
    /// Each `$n` as (location in the parsed text, number), in visiting order.
    pub params: Vec<(i64, i64)>,
}

/// Walks `tree` once: refuses statements other than SELECT anywhere (data-modifying CTEs),
/// locking clauses, SELECT INTO and calls of denied functions, and a tree beyond the
/// budget; returns the node count and the `$n` it holds.
pub(crate) fn inspect(tree: &pg_query::protobuf::ParseResult) -> Result<Inspection, SqlError> {
    let mut walk = Inspect::default();
    match tree.serialize(&mut walk) {
        Ok(()) => Ok(Inspection {
            nodes: walk.nodes,
            params: walk.params,
        }),
        Err(Stop::Refused(e)) => Err(e),
        Err(Stop::Found(_)) => Err(SqlError("could not be inspected".into())),
        Err(Stop::Serde(m)) => Err(SqlError(format!("could not be inspected: {m}"))),
    }
}

/// The kind of the top node (`SelectStmt`, `InsertStmt`...), found without walking below it.
pub(crate) fn top_kind(node: &pg_query::NodeEnum) -> String {
    let mut walk = Inspect {
        first_kind_only: true,
        ..Inspect::default()
    };
    match node.serialize(&mut walk) {
        Err(Stop::Found(kind)) => kind.to_string(),
        _ => "another statement".into(),
    }
}

#[derive(Default)]
struct Inspect {
    /// Field and node-kind names from the root to the value being visited.
    path: Vec<&'static str>,
    nodes: usize,
    params: Vec<(i64, i64)>,
    /// The name parts of each function call being visited (innermost last).
    calls: Vec<Vec<String>>,
    /// Stop at the first node kind and report it ([`top_kind`]).
    first_kind_only: bool,
}

/// Why the walk stopped early.
#[derive(Debug)]
enum Stop {
    Refused(SqlError),
    Found(&'static str),
    Serde(String),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Refused(e) => write!(f, "{e}"),
            Stop::Found(kind) => write!(f, "{kind}"),
            Stop::Serde(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Stop {}

impl ser::Error for Stop {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Stop::Serde(msg.to_string())
    }
}

fn refuse<T>(message: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Refused(SqlError(message.into())))
}

const LOCKING: &str = "a locking clause (FOR UPDATE / FOR SHARE) is not allowed";
const INTO: &str = "SELECT INTO is not allowed";

impl Inspect {
    fn enter(&mut self, name: &'static str) -> Result<(), Stop> {
        if self.path.len() >= MAX_TREE_DEPTH {
            return refuse(format!(
                "is nested too deeply (more than {MAX_TREE_DEPTH} levels); simplify it"
            ));
        }
        self.path.push(name);
        Ok(())
    }

    fn leave(&mut self) {
        self.path.pop();
    }

    fn tail_is(&self, tail: &[&str]) -> bool {
        self.path.ends_with(tail)
    }

    /// A node of kind `kind` (a variant of the protobuf `Node` oneof, or of another oneof).
    fn node_kind(&mut self, kind: &'static str) -> Result<(), Stop> {
        if self.first_kind_only {
            return Err(Stop::Found(kind));
        }
        match kind {
            "LockingClause" => return refuse(LOCKING),
            "IntoClause" => return refuse(INTO),
            k if k.ends_with("Stmt") && k != "SelectStmt" && k != "CopyStmt" => {
                return refuse(format!(
                    "only SELECT is allowed, found {} (data-modifying statements are refused, \
                     also inside WITH)",
                    k.trim_end_matches("Stmt").to_uppercase()
                ));
            }
            "FuncCall" => self.calls.push(Vec::new()),
            "ParamRef" => self.params.push((0, 0)),
            _ => {}
        }
        Ok(())
    }

    /// After a node of kind `kind` and everything beneath it.
    fn node_done(&mut self, kind: &'static str) -> Result<(), Stop> {
        if kind == "FuncCall" {
            let parts = self.calls.pop().unwrap_or_default();
            let Some(name) = parts.last() else {
                return refuse("a function call without a name");
            };
            if denylist::is_denied(name) {
                return refuse(format!(
                    "function {} is not allowed (side effects)",
                    name.to_lowercase()
                ));
            }
        }
        Ok(())
    }

    fn count_node(&mut self) -> Result<(), Stop> {
        self.nodes += 1;
        if self.nodes > MAX_TREE_NODES {
            return refuse(format!(
                "is too large: its parse tree has more than {MAX_TREE_NODES} nodes; \
                 simplify it (e.g. a list of values as an IN list or a join)"
            ));
        }
        Ok(())
    }

    fn integer(&mut self, v: i64) {
        if self.tail_is(&["ParamRef", "number"]) {
            if let Some(p) = self.params.last_mut() {
                p.1 = v;
            }
        } else if self.tail_is(&["ParamRef", "location"])
            && let Some(p) = self.params.last_mut()
        {
            p.0 = v;
        }
    }
}

impl ser::Serializer for &mut Inspect {
    type Ok = ();
    type Error = Stop;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Impossible<(), Stop>;
    type SerializeMap = Impossible<(), Stop>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), Stop>;

    fn serialize_bool(self, _: bool) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Stop> {
        self.integer(v.into());
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<(), Stop> {
        self.integer(v.into());
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Stop> {
        self.integer(v.into());
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), Stop> {
        self.integer(v);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), Stop> {
        self.integer(v.into());
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Stop> {
        self.integer(v.into());
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Stop> {
        self.integer(v.into());
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Stop> {
        self.integer(i64::try_from(v).unwrap_or(i64::MAX));
        Ok(())
    }
    fn serialize_f32(self, _: f32) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_f64(self, _: f64) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_char(self, _: char) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Stop> {
        // A part of a called function's name: FuncCall.funcname[i] is a Node holding a String.
        if self.tail_is(&["FuncCall", "funcname", "node", "String", "sval"])
            && let Some(parts) = self.calls.last_mut()
        {
            parts.push(v.to_string());
        }
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), Stop> {
        if self.tail_is(&["into_clause"]) {
            return refuse(INTO);
        }
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Stop> {
        self.count_node()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        kind: &'static str,
    ) -> Result<(), Stop> {
        self.node_kind(kind)?;
        self.node_done(kind)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        kind: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        self.node_kind(kind)?;
        self.enter(kind)?;
        value.serialize(&mut *self)?;
        self.leave();
        self.node_done(kind)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self, Stop> {
        if self.tail_is(&["locking_clause"]) && len.is_some_and(|n| n > 0) {
            return refuse(LOCKING);
        }
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, Stop> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, Stop> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        kind: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Stop> {
        Err(Stop::Serde(format!("unexpected tuple variant {kind}")))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Stop> {
        Err(Stop::Serde("unexpected map".into()))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Stop> {
        self.count_node()?;
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        kind: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Stop> {
        Err(Stop::Serde(format!("unexpected struct variant {kind}")))
    }
}

impl ser::SerializeSeq for &mut Inspect {
    type Ok = ();
    type Error = Stop;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Stop> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Stop> {
        Ok(())
    }
}

impl ser::SerializeTuple for &mut Inspect {
    type Ok = ();
    type Error = Stop;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Stop> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Stop> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for &mut Inspect {
    type Ok = ();
    type Error = Stop;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Stop> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), Stop> {
        Ok(())
    }
}

impl ser::SerializeStruct for &mut Inspect {
    type Ok = ();
    type Error = Stop;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        self.enter(key)?;
        value.serialize(&mut **self)?;
        self.leave();
        Ok(())
    }
    fn end(self) -> Result<(), Stop> {
        Ok(())
    }
}
