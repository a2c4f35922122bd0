//! The documents of a `mongoexport` file, one bounded piece of text at a time: a document over
//! [`MAX_DOCUMENT_BYTES`] is skipped with a fixed buffer, never held whole, and one nested deeper
//! than [`MAX_DOCUMENT_DEPTH`] is refused before it is parsed (serde_json's recursion limit would
//! otherwise end a `--jsonArray` stream at the first such document). Both are reported with their
//! position and the reading goes on with the next document.
//!
//! Where a document ends is found by a scan of the JSON's structure (strings, escapes, brackets),
//! which needs no parse: one document per line, or the elements of one top-level array in any
//! layout. The scan's only state is a few counters, whatever the document holds.

use std::io::BufRead;

use super::Position;
use crate::api::body::MAX_BODY_BYTES;
use crate::domain::entry::MAX_NESTING;

/// Largest document read: the largest request body `POST /container_registry` accepts, so a
/// document the API would answer with 413 is refused here too.
pub const MAX_DOCUMENT_BYTES: usize = MAX_BODY_BYTES;
/// Deepest nesting of brackets a document may have: the deepest an entry can be (the document,
/// `container_registry_metadata` or `_config`, and [`MAX_NESTING`] levels inside them). Deeper
/// documents would fail the entry's validation; refused here before they are parsed.
pub const MAX_DOCUMENT_DEPTH: usize = MAX_NESTING + 2;

/// One document as read: its text, or why it was not read.
#[derive(Debug)]
pub struct Piece {
    pub at: Position,
    pub text: Result<Vec<u8>, String>,
}

/// Strings, escapes and bracket depth of the JSON text fed to it, byte by byte.
#[derive(Debug, Default)]
struct Shape {
    depth: usize,
    deepest: usize,
    in_string: bool,
    escaped: bool,
}

impl Shape {
    fn feed(&mut self, b: u8) {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
            }
            return;
        }
        match b {
            b'"' => self.in_string = true,
            b'{' | b'[' => {
                self.depth += 1;
                self.deepest = self.deepest.max(self.depth);
            }
            b'}' | b']' => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
    }
}

/// The text of one document being collected: at most `MAX_DOCUMENT_BYTES + 1` bytes are kept;
/// past that only its length is counted.
#[derive(Default)]
struct Collect {
    text: Vec<u8>,
    len: usize,
    shape: Shape,
    /// The last byte kept or counted (a line's `\r` is not part of its document).
    last: Option<u8>,
}

impl Collect {
    /// Keeps `bytes` (already fed to the shape) while the document is within the bound.
    fn keep(&mut self, bytes: &[u8]) {
        self.len += bytes.len();
        if let Some(&b) = bytes.last() {
            self.last = Some(b);
        }
        if self.len <= MAX_DOCUMENT_BYTES + 1 {
            self.text.extend_from_slice(bytes);
        } else if !self.text.is_empty() {
            self.text = Vec::new();
        }
    }

    /// The document, or why it is refused unread.
    fn finish(mut self) -> Result<Vec<u8>, String> {
        if self.last == Some(b'\r') {
            self.text.pop();
            self.len -= 1;
        }
        if self.len > MAX_DOCUMENT_BYTES {
            Err(format!(
                "is {} bytes long, over the {MAX_DOCUMENT_BYTES} bytes a request body may hold (skipped unread)",
                self.len
            ))
        } else if self.shape.deepest > MAX_DOCUMENT_DEPTH {
            Err(format!(
                "nests deeper than {MAX_DOCUMENT_DEPTH} levels (an entry's metadata and config nest at most {MAX_NESTING} levels; not parsed)"
            ))
        } else {
            Ok(self.text)
        }
    }
}

/// Reads the documents of an export and hands each to `emit`, which answers false to stop.
/// `[` first means `--jsonArray` (any layout); anything else means one document per line. A
/// document too large, too deep or not JSON is handed on as an error and the next one read; an
/// array whose structure breaks (cut off, or something other than `,` or `]` after an element)
/// ends the reading with an error, since where the next element begins is not knowable.
pub fn read_documents<R: BufRead>(
    mut reader: R,
    mut emit: impl FnMut(Piece) -> bool,
) -> Result<(), String> {
    let first =
        skip_blank(&mut reader, &mut 1).map_err(|e| format!("cannot read the file: {e}"))?;
    match first {
        None => Ok(()),
        Some(b'[') => read_array(reader, &mut emit),
        Some(_) => read_lines(reader, &mut emit),
    }
}

/// Skips whitespace (counting lines) and a UTF-8 byte order mark at the start; returns the next
/// byte without consuming it.
fn skip_blank<R: BufRead>(reader: &mut R, line: &mut usize) -> std::io::Result<Option<u8>> {
    let mut at_start = true;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(None);
        }
        if at_start && buf.starts_with(b"\xEF\xBB\xBF") {
            reader.consume(3);
            at_start = false;
            continue;
        }
        at_start = false;
        let end = buf.iter().position(|b| !b.is_ascii_whitespace());
        let blank = &buf[..end.unwrap_or(buf.len())];
        *line += blank.iter().filter(|b| **b == b'\n').count();
        match end {
            Some(i) => {
                let byte = buf[i];
                reader.consume(i);
                return Ok(Some(byte));
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

fn read_lines<R: BufRead>(
    mut reader: R,
    emit: &mut impl FnMut(Piece) -> bool,
) -> Result<(), String> {
    let mut line = 0;
    let mut index = 0;
    loop {
        let mut doc = Collect::default();
        let mut ended = false;
        loop {
            let buf = reader
                .fill_buf()
                .map_err(|e| format!("cannot read the file after line {line}: {e}"))?;
            if buf.is_empty() {
                break;
            }
            let (chunk, used) = match buf.iter().position(|b| *b == b'\n') {
                Some(i) => (&buf[..i], i + 1),
                None => (buf, buf.len()),
            };
            for &b in chunk {
                doc.shape.feed(b);
            }
            doc.keep(chunk);
            ended = used > chunk.len();
            reader.consume(used);
            if ended {
                break;
            }
        }
        if doc.len == 0 && !ended {
            return Ok(());
        }
        line += 1;
        if doc.len <= MAX_DOCUMENT_BYTES && doc.text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        index += 1;
        let at = Position {
            index,
            line: Some(line),
        };
        if !emit(Piece {
            at,
            text: doc.finish(),
        }) {
            return Ok(());
        }
    }
}

/// What ends an array element that is not an object, an array or a string.
fn ends_scalar(b: u8) -> bool {
    b == b',' || b == b']' || b.is_ascii_whitespace()
}

fn read_array<R: BufRead>(
    mut reader: R,
    emit: &mut impl FnMut(Piece) -> bool,
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("cannot read the file: {e}");
    reader.consume(1); // the `[`
    let mut line = 1;
    let mut count = 0;
    loop {
        let Some(first) = skip_blank(&mut reader, &mut line).map_err(io)? else {
            return Err(format!(
                "the file ends inside the array (line {line}, after {count} documents): it is cut off; nothing after that point was read"
            ));
        };
        if first == b']' && count == 0 {
            reader.consume(1);
            break;
        }
        count += 1;
        let begins = line;
        let mut doc = Collect::default();
        let container = first == b'{' || first == b'[';
        let string = first == b'"';
        // Bytes of this element, through its last one.
        let mut done = false;
        while !done {
            let buf = reader.fill_buf().map_err(io)?;
            if buf.is_empty() {
                if container || string || doc.len == 0 {
                    return Err(format!(
                        "the file ends inside entry {count} (which begins at line {begins}, after {} documents): it is cut off; nothing after that point was read",
                        count - 1
                    ));
                }
                break;
            }
            let mut used = buf.len();
            for (i, &b) in buf.iter().enumerate() {
                if !container && !string && ends_scalar(b) {
                    used = i;
                    done = true;
                    break;
                }
                doc.shape.feed(b);
                if b == b'\n' {
                    line += 1;
                }
                // The first byte opened the container or the string; this one closed it.
                if (container && doc.shape.depth == 0) || (string && !doc.shape.in_string) {
                    used = i + 1;
                    done = true;
                    break;
                }
            }
            doc.keep(&buf[..used]);
            reader.consume(used);
        }
        let at = Position {
            index: count,
            line: None,
        };
        if !emit(Piece {
            at,
            text: doc.finish(),
        }) {
            return Ok(());
        }
        match skip_blank(&mut reader, &mut line).map_err(io)? {
            Some(b',') => reader.consume(1),
            Some(b']') => {
                reader.consume(1);
                break;
            }
            Some(other) => {
                return Err(format!(
                    "the file is not valid JSON at line {line}, after entry {count}: {:?} where a comma or the array's end belongs (after {count} documents); nothing after that point was read",
                    other as char
                ));
            }
            None => {
                return Err(format!(
                    "the file ends inside the array (line {line}, after {count} documents): it is cut off; nothing after that point was read"
                ));
            }
        }
    }
    match skip_blank(&mut reader, &mut line).map_err(io)? {
        None => Ok(()),
        Some(_) => Err(format!(
            "the file is not valid JSON at line {line}: trailing characters after the array (after {count} documents); nothing after that point was read"
        )),
    }
}
