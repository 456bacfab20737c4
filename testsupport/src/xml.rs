//! Parses a GameStream reply with a real XML parser (quick-xml), so every
//! reply a test reads is proven well-formed, not just searched for a
//! substring. The host's renderer (`punktfunk_gamestream::xml`) stays
//! hand-written; this is its independent check.
//!
//! A GameStream reply is one `<root status_code="…" [status_message="…"]>`
//! element, after an XML declaration, with child elements that hold text
//! (`<paired>1</paired>`) or more elements (`/applist`'s `<App>`).

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Why a body is not a well-formed GameStream reply.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    /// The XML itself is broken (quick-xml's words, with the position).
    #[error("not well-formed XML: {0}")]
    Syntax(String),
    /// Well-formed, but not the shape every GameStream reply has.
    #[error("not a GameStream reply: {0}")]
    Shape(&'static str),
}

/// One element: its name, attributes, text and child elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The tag name.
    pub name: String,
    /// Attributes in document order, values unescaped.
    pub attrs: Vec<(String, String)>,
    /// The element's own text, unescaped (empty when it has none).
    pub text: String,
    /// Child elements in document order.
    pub children: Vec<Element>,
}

impl Element {
    /// The value of attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The text of the first element called `name` below this one (depth
    /// first, document order).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.find(name).map(|e| e.text.as_str())
    }

    /// The first element called `name` below this one.
    pub fn find(&self, name: &str) -> Option<&Element> {
        self.children.iter().find_map(|c| {
            if c.name == name {
                Some(c)
            } else {
                c.find(name)
            }
        })
    }

    /// Every element called `name` below this one, in document order.
    pub fn find_all<'a>(&'a self, name: &'a str) -> Vec<&'a Element> {
        let mut found = Vec::new();
        for c in &self.children {
            if c.name == name {
                found.push(c);
            }
            found.extend(c.find_all(name));
        }
        found
    }
}

/// A parsed GameStream reply: its `<root>` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The `<root>` element.
    pub root: Element,
}

impl Reply {
    /// `status_code` of `<root>` (present in every parsed reply).
    pub fn status_code(&self) -> &str {
        self.root.attr("status_code").unwrap_or_default()
    }

    /// `status_message` of `<root>`.
    pub fn status_message(&self) -> Option<&str> {
        self.root.attr("status_message")
    }

    /// An attribute of `<root>`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.root.attr(name)
    }

    /// The text of the first element called `name` (see [`Element::field`]).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.root.field(name)
    }
}

fn syntax(e: impl std::fmt::Display) -> XmlError {
    XmlError::Syntax(e.to_string())
}

fn element(start: &BytesStart<'_>) -> Result<Element, XmlError> {
    let name = String::from_utf8(start.name().as_ref().to_vec()).map_err(syntax)?;
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(syntax)?;
        let key = String::from_utf8(attr.key.as_ref().to_vec()).map_err(syntax)?;
        let value = attr.unescape_value().map_err(syntax)?.into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        text: String::new(),
        children: Vec::new(),
    })
}

/// Adds text to the open element; outside `<root>` only white space may stand.
fn push_text(open: &mut [Element], text: &str) -> Result<(), XmlError> {
    match open.last_mut() {
        Some(e) => e.text.push_str(text),
        None if text.trim().is_empty() => {}
        None => return Err(XmlError::Shape("text outside <root>")),
    }
    Ok(())
}

/// Parses `body` as a GameStream reply: an XML declaration, then exactly
/// one `<root>` element with a `status_code`, end tags matching, nothing
/// but white space after it.
pub fn parse(body: &str) -> Result<Reply, XmlError> {
    let mut reader = Reader::from_str(body);
    let mut declared = false;
    let mut open: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader.read_event().map_err(syntax)?;
        // Anything but white space after `</root>` is a second document.
        if root.is_some() && !matches!(&event, Event::Eof) {
            let blank = matches!(&event, Event::Text(t) if t.iter().all(u8::is_ascii_whitespace));
            if !blank {
                return Err(XmlError::Shape("content after </root>"));
            }
            continue;
        }
        match event {
            Event::Decl(_) => {
                if declared || !open.is_empty() {
                    return Err(XmlError::Shape("a misplaced XML declaration"));
                }
                declared = true;
            }
            Event::Start(start) => {
                if !declared {
                    return Err(XmlError::Shape("no XML declaration"));
                }
                open.push(element(&start)?);
            }
            Event::Empty(start) => {
                if !declared {
                    return Err(XmlError::Shape("no XML declaration"));
                }
                let e = element(&start)?;
                match open.last_mut() {
                    Some(parent) => parent.children.push(e),
                    None => root = Some(e),
                }
            }
            Event::End(_) => {
                // quick-xml has checked that the name matches the start tag.
                let e = open
                    .pop()
                    .ok_or(XmlError::Shape("an end tag without a start"))?;
                match open.last_mut() {
                    Some(parent) => parent.children.push(e),
                    None => root = Some(e),
                }
            }
            Event::Text(t) => {
                let text = t.decode().map_err(syntax)?;
                push_text(&mut open, &text)?;
            }
            // quick-xml reports each `&…;` on its own: a character
            // reference or one of XML's five predefined entities; any other
            // name is undeclared, so the document is not well-formed.
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(syntax)? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = r.decode().map_err(syntax)?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| XmlError::Syntax(format!("undeclared entity &{name};")))?
                            .to_owned()
                    }
                };
                push_text(&mut open, &resolved)?;
            }
            Event::CData(c) => match open.last_mut() {
                Some(e) => e.text.push_str(&String::from_utf8_lossy(&c)),
                None => return Err(XmlError::Shape("CDATA outside <root>")),
            },
            Event::Eof => break,
            Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !open.is_empty() {
        return Err(XmlError::Syntax(format!(
            "<{}> is never closed",
            open[0].name
        )));
    }
    let root = root.ok_or(XmlError::Shape("no root element"))?;
    if root.name != "root" {
        return Err(XmlError::Shape("the root element is not <root>"));
    }
    if root.attr("status_code").is_none() {
        return Err(XmlError::Shape("<root> has no status_code"));
    }
    Ok(Reply { root })
}

/// [`parse`], for tests: a body that is not a well-formed GameStream reply
/// fails the test, with the body in the message.
pub fn reply(body: &str) -> Reply {
    parse(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECL: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n";

    #[test]
    fn reads_attributes_fields_and_nested_elements() {
        let r = reply(&format!(
            "{DECL}<root status_code=\"200\" status_message=\"a &amp; b\"><paired>1</paired>\
             <App><AppTitle>Desk &lt;top&gt;</AppTitle><ID>1</ID></App><App><ID>2</ID></App></root>"
        ));
        assert_eq!(r.status_code(), "200");
        assert_eq!(r.status_message(), Some("a & b"));
        assert_eq!(r.field("paired"), Some("1"));
        assert_eq!(r.field("AppTitle"), Some("Desk <top>"));
        let ids: Vec<_> = r
            .root
            .find_all("ID")
            .iter()
            .map(|e| e.text.as_str())
            .collect();
        assert_eq!(ids, ["1", "2"]);
        assert_eq!(r.field("missing"), None);
    }

    #[test]
    fn an_empty_root_is_a_reply() {
        let r = reply(&format!("{DECL}<root status_code=\"200\"/>"));
        assert!(r.root.children.is_empty());
    }

    #[test]
    fn refuses_what_is_not_a_well_formed_reply() {
        for body in [
            "<root status_code=\"200\"/>".to_owned(),
            format!("{DECL}<root status_code=\"200\"><a></b></root>"),
            format!("{DECL}<root status_code=\"200\"><a>"),
            format!("{DECL}<root><a/></root>"),
            format!("{DECL}<other status_code=\"200\"/>"),
            format!("{DECL}<root status_code=\"200\"/><root status_code=\"200\"/>"),
            format!("{DECL}<root status_code=\"200\">&bogus;</root>"),
            format!("{DECL}<root status_code=\"200\" status_message=\"a\"b\"/>"),
            String::new(),
        ] {
            assert!(parse(&body).is_err(), "accepted {body:?}");
        }
    }
}
