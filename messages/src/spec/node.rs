//! A YAML document as a tree that remembers where each value was written.
//!
//! serde stops at the first error and forgets positions; users fixing a spec want every problem
//! at once with its line and column, so specs are first read into this tree and then decoded by
//! hand in [`super::decode`].

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::limits::SpecLimits;

/// 1-based line and column of a value in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string: quoted scalars always, plain ones that are not null, bool or a number —
    /// so `"30"` stays a string while a plain `30` is an integer.
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Pos, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub pos: Option<Pos>,
}

impl Node {
    pub fn describe(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    /// The value as the user wrote it, for error messages.
    pub fn show(&self) -> String {
        match &self.kind {
            Kind::Null => "null".into(),
            Kind::Bool(b) => b.to_string(),
            Kind::Int(i) => i.to_string(),
            Kind::Float(f) => f.to_string(),
            Kind::Str(s) => format!("{s:?}"),
            Kind::Seq(_) => "a list".into(),
            Kind::Map(_) => "a mapping".into(),
        }
    }
}

/// Why a document could not be read into a tree.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadError {
    /// The document is not YAML/JSON at all.
    Syntax { pos: Pos, message: String },
    /// It is, but reading it would pass a [`SpecLimits`] `yaml_*` limit (alias expansion,
    /// nesting); reading stopped there.
    Limit { pos: Option<Pos>, message: String },
}

/// Reads the first YAML document of `src`, within `limits`' `yaml_nodes`, `yaml_bytes` and
/// `yaml_depth`. Events are pulled one by one (yaml-rust2's own `load` recurses once per
/// nesting level), so a deep document ends in an error, not a stack overflow, and an alias
/// bomb ends at the budget, before the clone that would pass it.
pub fn parse_yaml(src: &str, limits: &SpecLimits) -> Result<Node, ReadError> {
    let mut builder = Builder::new(limits);
    let mut parser = Parser::new_from_str(src);
    loop {
        let (ev, mark) = parser.next_token().map_err(|e| ReadError::Syntax {
            pos: Pos {
                line: e.marker().line(),
                col: e.marker().col() + 1,
            },
            message: e.info().to_string(),
        })?;
        match ev {
            // Only the first document is read.
            Event::StreamEnd | Event::DocumentEnd => break,
            ev => builder.on_event(ev, pos_of(&mark))?,
        }
    }
    Ok(builder.root.unwrap_or(Node {
        kind: Kind::Null,
        pos: Some(Pos { line: 1, col: 1 }),
    }))
}

/// Converts a JSON value (no positions) into a node, for JSON that YAML cannot read; within
/// the same `yaml_*` limits as YAML (serde_json itself stops at 128 levels).
pub fn from_json(v: &serde_json::Value, limits: &SpecLimits) -> Result<Node, ReadError> {
    let n = json_node(v);
    let size = Size::of(&n);
    let (nodes, bytes) = (size.nodes, size.bytes);
    let message = if nodes > limits.yaml_nodes {
        nodes_message(limits)
    } else if bytes > limits.yaml_bytes {
        bytes_message(limits)
    } else if size.height > limits.yaml_depth {
        depth_message(limits)
    } else {
        return Ok(n);
    };
    Err(ReadError::Limit { pos: None, message })
}

fn json_node(v: &serde_json::Value) -> Node {
    let kind = match v {
        serde_json::Value::Null => Kind::Null,
        serde_json::Value::Bool(b) => Kind::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Kind::Int(i),
            None => Kind::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Kind::Str(s.clone()),
        serde_json::Value::Array(a) => Kind::Seq(a.iter().map(json_node).collect()),
        serde_json::Value::Object(o) => Kind::Map(
            o.iter()
                .map(|(k, v)| (k.clone(), Pos::default(), json_node(v)))
                .collect(),
        ),
    };
    Node { kind, pos: None }
}

fn nodes_message(l: &SpecLimits) -> String {
    format!(
        "the document expands to more than {} YAML values (each use of an alias counts its anchor's values again; raise [limits] yaml_nodes in the serve config)",
        l.yaml_nodes
    )
}

fn bytes_message(l: &SpecLimits) -> String {
    format!(
        "the document expands to more than {} bytes of text (each use of an alias counts its anchor's text again; raise [limits] yaml_bytes in the serve config)",
        l.yaml_bytes
    )
}

fn depth_message(l: &SpecLimits) -> String {
    format!(
        "lists and mappings are nested more than {} deep (raise [limits] yaml_depth in the serve config)",
        l.yaml_depth
    )
}

/// Converts a node back into JSON (used for `json:` request bodies and `equals:` checks).
pub fn to_json(n: &Node) -> serde_json::Value {
    match &n.kind {
        Kind::Null => serde_json::Value::Null,
        Kind::Bool(b) => serde_json::Value::Bool(*b),
        Kind::Int(i) => serde_json::Value::from(*i),
        Kind::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Kind::Str(s) => serde_json::Value::String(s.clone()),
        Kind::Seq(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Kind::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(k, _, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
    }
}

/// What a value costs to keep: values in it, bytes of scalars and keys in it, and how many
/// lists and mappings deep it goes (a scalar is 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Size {
    nodes: usize,
    bytes: usize,
    height: usize,
}

impl Size {
    fn scalar(text: &str) -> Size {
        Size {
            nodes: 1,
            bytes: text.len(),
            height: 0,
        }
    }

    /// Adds a child's size to its container's (whose own node is already counted).
    fn add_child(&mut self, child: Size) {
        self.nodes = self.nodes.saturating_add(child.nodes);
        self.bytes = self.bytes.saturating_add(child.bytes);
        self.height = self.height.max(child.height.saturating_add(1));
    }

    /// Measures a finished tree (JSON input). Recursive: callers bound its depth.
    fn of(n: &Node) -> Size {
        let mut size = match &n.kind {
            Kind::Str(s) => return Size::scalar(s),
            Kind::Seq(_) | Kind::Map(_) => Size {
                nodes: 1,
                bytes: 0,
                height: 1,
            },
            _ => return Size::scalar(""),
        };
        match &n.kind {
            Kind::Seq(items) => items.iter().for_each(|c| size.add_child(Size::of(c))),
            Kind::Map(entries) => entries.iter().for_each(|(k, _, v)| {
                size.add_child(Size::scalar(k));
                size.add_child(Size::of(v));
            }),
            _ => {}
        }
        size
    }
}

/// A list or mapping being read: its items so far, where it started, its anchor id (0: none)
/// and its size so far.
enum Frame {
    Seq(Vec<Node>, Pos, usize, Size),
    Map(
        Vec<(String, Pos, Node)>,
        Option<(String, Pos)>,
        Pos,
        usize,
        Size,
    ),
}

struct Builder<'l> {
    limits: &'l SpecLimits,
    stack: Vec<Frame>,
    root: Option<Node>,
    anchors: HashMap<usize, (Node, Size)>,
    /// Everything made so far, alias expansions and kept anchors included.
    made: Size,
}

fn pos_of(m: &Marker) -> Pos {
    Pos {
        line: m.line(),
        col: m.col() + 1,
    }
}

fn resolve_plain(s: &str) -> Kind {
    match s {
        "~" | "null" | "Null" | "NULL" | "" => return Kind::Null,
        "true" | "True" | "TRUE" => return Kind::Bool(true),
        "false" | "False" | "FALSE" => return Kind::Bool(false),
        _ => {}
    }
    if let Ok(i) = s.parse::<i64>() {
        return Kind::Int(i);
    }
    let looks_numeric = s
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && s.chars().any(|c| c.is_ascii_digit());
    if looks_numeric {
        if let Ok(f) = s.parse::<f64>() {
            return Kind::Float(f);
        }
    }
    Kind::Str(s.to_string())
}

impl<'l> Builder<'l> {
    fn new(limits: &'l SpecLimits) -> Builder<'l> {
        Builder {
            limits,
            stack: Vec::new(),
            root: None,
            anchors: HashMap::new(),
            made: Size::default(),
        }
    }

    /// Charges `cost` to the document's budget, before anything is made.
    fn spend(&mut self, cost: Size, pos: Pos) -> Result<(), ReadError> {
        let nodes = self.made.nodes.saturating_add(cost.nodes);
        let bytes = self.made.bytes.saturating_add(cost.bytes);
        let message = if nodes > self.limits.yaml_nodes {
            nodes_message(self.limits)
        } else if bytes > self.limits.yaml_bytes {
            bytes_message(self.limits)
        } else if self.stack.len().saturating_add(cost.height) > self.limits.yaml_depth {
            depth_message(self.limits)
        } else {
            self.made.nodes = nodes;
            self.made.bytes = bytes;
            return Ok(());
        };
        Err(ReadError::Limit {
            pos: Some(pos),
            message,
        })
    }

    fn push_value(
        &mut self,
        node: Node,
        size: Size,
        anchor: usize,
        pos: Pos,
    ) -> Result<(), ReadError> {
        if anchor > 0 {
            // Keeping the anchor is a copy too.
            self.spend(Size { height: 0, ..size }, pos)?;
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Frame::Seq(items, _, _, total)) => {
                total.add_child(size);
                items.push(node);
            }
            Some(Frame::Map(entries, pending, _, _, total)) => {
                total.add_child(size);
                match pending.take() {
                    None => {
                        let key = match &node.kind {
                            Kind::Str(s) => s.clone(),
                            Kind::Int(i) => i.to_string(),
                            Kind::Bool(b) => b.to_string(),
                            Kind::Float(f) => f.to_string(),
                            Kind::Null => "null".to_string(),
                            _ => {
                                return Err(ReadError::Syntax {
                                    pos: node.pos.unwrap_or_default(),
                                    message: "mapping keys must be plain scalars".into(),
                                })
                            }
                        };
                        *pending = Some((key, node.pos.unwrap_or_default()));
                    }
                    Some((key, kpos)) => entries.push((key, kpos, node)),
                }
            }
        }
        Ok(())
    }

    fn on_event(&mut self, ev: Event, pos: Pos) -> Result<(), ReadError> {
        let open = Size {
            nodes: 1,
            bytes: 0,
            height: 1,
        };
        match ev {
            Event::Scalar(value, style, anchor, _tag) => {
                let size = Size::scalar(&value);
                self.spend(size, pos)?;
                let kind = if style == TScalarStyle::Plain {
                    resolve_plain(&value)
                } else {
                    Kind::Str(value)
                };
                let node = Node {
                    kind,
                    pos: Some(pos),
                };
                self.push_value(node, size, anchor, pos)?;
            }
            Event::SequenceStart(anchor, _) => {
                self.spend(open, pos)?;
                self.stack.push(Frame::Seq(Vec::new(), pos, anchor, open));
            }
            Event::MappingStart(anchor, _) => {
                self.spend(open, pos)?;
                self.stack
                    .push(Frame::Map(Vec::new(), None, pos, anchor, open));
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(items, p, anchor, size)) = self.stack.pop() {
                    let node = Node {
                        kind: Kind::Seq(items),
                        pos: Some(p),
                    };
                    self.push_value(node, size, anchor, pos)?;
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(entries, _, p, anchor, size)) = self.stack.pop() {
                    let node = Node {
                        kind: Kind::Map(entries),
                        pos: Some(p),
                    };
                    self.push_value(node, size, anchor, pos)?;
                }
            }
            Event::Alias(id) => {
                let (node, size) = match self.anchors.get(&id) {
                    Some((_, size)) => {
                        // Charged before the copy is made.
                        self.spend(*size, pos)?;
                        let (node, size) = &self.anchors[&id];
                        (node.clone(), *size)
                    }
                    None => {
                        let size = Size::scalar("");
                        self.spend(size, pos)?;
                        let node = Node {
                            kind: Kind::Null,
                            pos: Some(pos),
                        };
                        (node, size)
                    }
                };
                self.push_value(node, size, 0, pos)?;
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
        Ok(())
    }
}
