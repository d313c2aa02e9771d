//! An indented `key: value` view of one entry, for `stasis show FILE`.
//!
//! Entries are serialized to JSON text and read back here in a few lines rather than
//! through `serde_json::Value`, whose maps sort their keys: fields keep the order of the
//! `.proto` files, as `crit` shows them.

/// A JSON value with object members in document order. Scalars keep their JSON text.
#[derive(Debug, PartialEq)]
pub(super) enum Node {
    Scalar(String),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
}

/// Parses JSON text (as `serde_json` writes it); `None` if it is not valid.
pub(super) fn parse(text: &str) -> Option<Node> {
    let mut p = Parser { s: text, i: 0 };
    let node = p.value()?;
    p.ws();
    (p.i == text.len()).then_some(node)
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        self.ws();
        (self.peek()? == b).then(|| self.i += 1)
    }

    /// A string token, quotes and escapes included.
    fn string(&mut self) -> Option<&str> {
        self.ws();
        let start = self.i;
        self.eat(b'"')?;
        loop {
            match self.peek()? {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return self.s.get(start..self.i);
                }
                _ => self.i += 1,
            }
        }
    }

    fn value(&mut self) -> Option<Node> {
        self.ws();
        match self.peek()? {
            b'{' => {
                self.i += 1;
                let mut members = Vec::new();
                if self.eat(b'}').is_some() {
                    return Some(Node::Map(members));
                }
                loop {
                    let key: String = serde_json::from_str(self.string()?).ok()?;
                    self.eat(b':')?;
                    members.push((key, self.value()?));
                    if self.eat(b',').is_none() {
                        self.eat(b'}')?;
                        return Some(Node::Map(members));
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                if self.eat(b']').is_some() {
                    return Some(Node::List(items));
                }
                loop {
                    items.push(self.value()?);
                    if self.eat(b',').is_none() {
                        self.eat(b']')?;
                        return Some(Node::List(items));
                    }
                }
            }
            b'"' => Some(Node::Scalar(self.string()?.to_owned())),
            _ => {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|b| !b.is_ascii_whitespace() && !b",]}".contains(&b))
                {
                    self.i += 1;
                }
                let token = self.s.get(start..self.i)?;
                (!token.is_empty()).then(|| Node::Scalar(token.to_owned()))
            }
        }
    }
}

/// A scalar for people: numbers beyond 32 bits in hex, since they are addresses and masks.
fn scalar(text: &str) -> String {
    match text.parse::<u64>() {
        Ok(n) if n > u64::from(u32::MAX) => format!("{n:#x}"),
        _ => text.to_owned(),
    }
}

/// Appends the members of `node` as `key: value` lines indented by `depth` levels; `null`
/// members and empty lists are left out, lists of scalars stay on one line.
pub(super) fn write(out: &mut String, node: &Node, depth: usize) {
    let pad = "  ".repeat(depth);
    let members = match node {
        Node::Map(m) => m,
        Node::Scalar(s) => return out.push_str(&format!("{pad}{}\n", scalar(s))),
        Node::List(items) => return items.iter().for_each(|i| write(out, i, depth)),
    };
    for (k, v) in members {
        match v {
            Node::Scalar(s) if s == "null" => {}
            Node::Scalar(s) => out.push_str(&format!("{pad}{k}: {}\n", scalar(s))),
            Node::List(items) if items.is_empty() => {}
            Node::List(items) => {
                let flat: Option<Vec<String>> = items
                    .iter()
                    .map(|i| match i {
                        Node::Scalar(s) => Some(scalar(s)),
                        _ => None,
                    })
                    .collect();
                match flat {
                    Some(flat) => out.push_str(&format!("{pad}{k}: [{}]\n", flat.join(", "))),
                    None => {
                        for (n, item) in items.iter().enumerate() {
                            out.push_str(&format!("{pad}{k}[{n}]:\n"));
                            write(out, item, depth + 1);
                        }
                    }
                }
            }
            Node::Map(_) => {
                out.push_str(&format!("{pad}{k}:\n"));
                write(out, v, depth + 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_member_order_and_skips_nulls() {
        let json = r#"{"z":1,"a":{"s":"x\"y","n":null,"big":18446744073709551615},
            "l":[1,2],"e":[],"o":[{"k":true}]}"#;
        let mut out = String::new();
        write(&mut out, &parse(json).unwrap(), 0);
        assert_eq!(
            out,
            "z: 1\na:\n  s: \"x\\\"y\"\n  big: 0xffffffffffffffff\nl: [1, 2]\no[0]:\n  k: true\n"
        );
    }

    #[test]
    fn rejects_broken_text() {
        for bad in ["", "{", "[1,", r#"{"a" 1}"#, r#"{"a":1} x"#, "\"abc"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(parse(" 7 "), Some(Node::Scalar("7".into())));
    }
}
