//! Lexer: a port of Go's `text/template/parse/lex.go` (delimiters `{{ }}`, trim markers,
//! comments, Go literal syntax).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tok {
    Error,
    Bool,
    Char,
    CharConstant,
    Complex,
    Comment,
    Assign,
    Declare,
    Eof,
    Field,
    Identifier,
    LeftDelim,
    LeftParen,
    Number,
    Pipe,
    RawString,
    RightDelim,
    RightParen,
    Space,
    String,
    Text,
    Variable,
    // keywords
    Block,
    Break,
    Continue,
    Dot,
    Define,
    Else,
    End,
    If,
    Nil,
    Range,
    Template,
    With,
}

#[derive(Clone, Debug)]
pub struct Item {
    pub typ: Tok,
    pub pos: usize,
    pub val: String,
    pub line: usize,
}

impl Item {
    /// Go's `item.String()` used in error messages.
    pub fn describe(&self) -> String {
        match self.typ {
            Tok::Eof => "EOF".into(),
            Tok::Error => self.val.clone(),
            _ if is_keyword(self.typ) => format!("<{}>", self.val),
            _ if self.val.chars().count() > 10 => format!("{:.10}...", GoQuote(&self.val)),
            _ => format!("{}", GoQuote(&self.val)),
        }
    }
}

pub struct GoQuote<'a>(pub &'a str);
impl std::fmt::Display for GoQuote<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let q = crate::template::fmt::go_quote(self.0);
        if let Some(p) = f.precision() {
            let s: String = q.chars().take(p).collect();
            f.write_str(&s)
        } else {
            f.write_str(&q)
        }
    }
}

fn is_keyword(t: Tok) -> bool {
    matches!(
        t,
        Tok::Block | Tok::Break | Tok::Continue | Tok::Dot | Tok::Define | Tok::Else | Tok::End | Tok::If | Tok::Nil | Tok::Range | Tok::Template | Tok::With
    )
}

fn keyword(s: &str) -> Option<Tok> {
    Some(match s {
        "." => Tok::Dot,
        "block" => Tok::Block,
        "break" => Tok::Break,
        "continue" => Tok::Continue,
        "define" => Tok::Define,
        "else" => Tok::Else,
        "end" => Tok::End,
        "if" => Tok::If,
        "range" => Tok::Range,
        "nil" => Tok::Nil,
        "template" => Tok::Template,
        "with" => Tok::With,
        _ => return None,
    })
}

const LEFT: &str = "{{";
const RIGHT: &str = "}}";
const LEFT_COMMENT: &str = "/*";
const RIGHT_COMMENT: &str = "*/";

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
    start: usize,
    items: Vec<Item>,
    paren_depth: i32,
    line: usize,
    start_line: usize,
    inside_action: bool,
}

/// Lexes the whole input into items; the last item is EOF or an error.
pub fn lex(input: &str) -> Vec<Item> {
    let mut l = Lexer { input, pos: 0, start: 0, items: Vec::new(), paren_depth: 0, line: 1, start_line: 1, inside_action: false };
    l.run();
    l.items
}

enum State {
    Text,
    LeftDelim,
    InsideAction,
    Done,
}

impl<'a> Lexer<'a> {
    fn run(&mut self) {
        let mut st = State::Text;
        loop {
            st = match st {
                State::Text => self.lex_text(),
                State::LeftDelim => self.lex_left_delim(),
                State::InsideAction => self.lex_inside_action(),
                State::Done => return,
            };
        }
    }

    fn next(&mut self) -> Option<char> {
        let c = self.input[self.pos..].chars().next()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }
    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }
    fn backup(&mut self, c: Option<char>) {
        if let Some(c) = c {
            self.pos -= c.len_utf8();
            if c == '\n' {
                self.line -= 1;
            }
        }
    }
    fn emit(&mut self, t: Tok) {
        let val = self.input[self.start..self.pos].to_string();
        self.items.push(Item { typ: t, pos: self.start, val, line: self.start_line });
        self.start = self.pos;
        self.start_line = self.line;
    }
    fn ignore(&mut self) {
        self.line += self.input[self.start..self.pos].matches('\n').count();
        self.start = self.pos;
        self.start_line = self.line;
    }
    fn errorf(&mut self, msg: String) -> State {
        self.items.push(Item { typ: Tok::Error, pos: self.start, val: msg, line: self.start_line });
        self.start = self.input.len();
        self.pos = self.input.len();
        State::Done
    }
    fn accept(&mut self, valid: &str) -> bool {
        if let Some(c) = self.peek()
            && valid.contains(c)
        {
            self.next();
            return true;
        }
        false
    }
    fn accept_run(&mut self, valid: &str) {
        while let Some(c) = self.peek() {
            if valid.contains(c) {
                self.next();
            } else {
                break;
            }
        }
    }

    fn at_left_trim(&self, at: usize) -> (bool, usize) {
        let rest = &self.input[at + LEFT.len()..];
        let trim = has_left_trim_marker(rest);
        let after = if trim { 2 } else { 0 };
        if rest[after..].starts_with(LEFT_COMMENT) {
            return (trim, after);
        }
        (trim, after)
    }

    fn lex_text(&mut self) -> State {
        if let Some(x) = self.input[self.pos..].find(LEFT) {
            if x > 0 {
                self.pos += x;
                let mut trim_len = 0;
                let delim_end = self.pos + LEFT.len();
                if has_left_trim_marker(&self.input[delim_end..]) {
                    trim_len = right_trim_length(&self.input[self.start..self.pos]);
                }
                self.pos -= trim_len;
                self.line += self.input[self.start..self.pos].matches('\n').count();
                let val = self.input[self.start..self.pos].to_string();
                let start = self.start;
                if !val.is_empty() {
                    self.items.push(Item { typ: Tok::Text, pos: start, val, line: self.start_line });
                }
                self.start = self.pos;
                self.start_line = self.line;
                self.pos += trim_len;
                self.ignore();
            }
            return State::LeftDelim;
        }
        self.pos = self.input.len();
        if self.pos > self.start {
            self.line += self.input[self.start..self.pos].matches('\n').count();
            let val = self.input[self.start..self.pos].to_string();
            self.items.push(Item { typ: Tok::Text, pos: self.start, val, line: self.start_line });
        }
        self.start = self.pos;
        self.start_line = self.line;
        self.items.push(Item { typ: Tok::Eof, pos: self.pos, val: String::new(), line: self.line });
        State::Done
    }

    fn lex_left_delim(&mut self) -> State {
        // Lines in the trimmed whitespace were not counted; count them now.
        self.pos += LEFT.len();
        let (trim, after_marker) = self.at_left_trim(self.pos - LEFT.len());
        if self.input[self.pos + after_marker..].starts_with(LEFT_COMMENT) {
            self.pos += after_marker;
            self.ignore();
            return self.lex_comment();
        }
        let _ = trim;
        self.emit(Tok::LeftDelim);
        self.pos += after_marker;
        self.ignore();
        self.paren_depth = 0;
        self.inside_action = true;
        State::InsideAction
    }

    fn lex_comment(&mut self) -> State {
        self.pos += LEFT_COMMENT.len();
        let Some(x) = self.input[self.pos..].find(RIGHT_COMMENT) else {
            return self.errorf("unclosed comment".into());
        };
        self.pos += x + RIGHT_COMMENT.len();
        let (delim, trim) = self.at_right_delim();
        if !delim {
            return self.errorf("comment ends before closing delimiter".into());
        }
        // comments are not emitted (emitComment false in Helm's parse mode)
        if trim {
            self.pos += TRIM_MARKER_LEN;
        }
        self.pos += RIGHT.len();
        if trim {
            self.pos += left_trim_length(&self.input[self.pos..]);
        }
        self.ignore();
        State::Text
    }

    fn at_right_delim(&self) -> (bool, bool) {
        let rest = &self.input[self.pos..];
        if has_right_trim_marker(rest) && rest[TRIM_MARKER_LEN..].starts_with(RIGHT) {
            return (true, true);
        }
        if rest.starts_with(RIGHT) {
            return (true, false);
        }
        (false, false)
    }

    fn lex_right_delim(&mut self, trim: bool) -> State {
        if trim {
            self.pos += TRIM_MARKER_LEN;
            self.ignore();
        }
        self.pos += RIGHT.len();
        self.emit(Tok::RightDelim);
        if trim {
            self.pos += left_trim_length(&self.input[self.pos..]);
            self.ignore();
        }
        self.inside_action = false;
        State::Text
    }

    fn lex_inside_action(&mut self) -> State {
        let (delim, trim) = self.at_right_delim();
        if delim {
            if self.paren_depth == 0 {
                return self.lex_right_delim(trim);
            }
            return self.errorf("unclosed left paren".into());
        }
        let c = match self.next() {
            None => return self.errorf("unclosed action".into()),
            Some(c) => c,
        };
        match c {
            c if is_space(c) => {
                self.backup(Some(c));
                return self.lex_space();
            }
            '\n' | '\r' => {
                // Go 1.16+: newlines are allowed inside actions.
                self.backup(Some(c));
                return self.lex_space();
            }
            '=' => self.emit(Tok::Assign),
            ':' => {
                if self.next() != Some('=') {
                    return self.errorf("expected :=".into());
                }
                self.emit(Tok::Declare);
            }
            '|' => self.emit(Tok::Pipe),
            '"' => return self.lex_quote(),
            '`' => return self.lex_raw_quote(),
            '$' => return self.lex_variable(),
            '\'' => return self.lex_char(),
            '.' => {
                if let Some(d) = self.peek()
                    && d.is_ascii_digit()
                {
                    self.backup(Some('.'));
                    return self.lex_number();
                }
                return self.lex_field();
            }
            '+' | '-' | '0'..='9' => {
                self.backup(Some(c));
                return self.lex_number();
            }
            c if is_alnum(c) => {
                self.backup(Some(c));
                return self.lex_identifier();
            }
            '(' => {
                self.emit(Tok::LeftParen);
                self.paren_depth += 1;
            }
            ')' => {
                self.emit(Tok::RightParen);
                self.paren_depth -= 1;
                if self.paren_depth < 0 {
                    return self.errorf("unexpected right paren".into());
                }
            }
            c if (c as u32) <= 0x7f && c.is_ascii_punctuation() => {
                self.emit(Tok::Char);
            }
            c => return self.errorf(format!("unrecognized character in action: {}", sharp_u(c))),
        }
        State::InsideAction
    }

    fn lex_space(&mut self) -> State {
        let mut num_spaces = 0;
        while let Some(c) = self.peek() {
            if !is_space(c) && c != '\n' && c != '\r' {
                break;
            }
            self.next();
            num_spaces += 1;
        }
        // Be careful about a trim-marked closing delimiter, which has a minus
        // after a space.
        if has_right_trim_marker(&self.input[self.pos - 1..]) && self.input[self.pos - 1 + TRIM_MARKER_LEN..].starts_with(RIGHT) {
            self.backup(Some(' '));
            if num_spaces == 1 {
                return self.lex_inside_action_after_space();
            }
        }
        self.emit(Tok::Space);
        State::InsideAction
    }

    fn lex_inside_action_after_space(&mut self) -> State {
        // Only the trim-marker space: go straight to the right delimiter.
        State::InsideAction
    }

    fn lex_identifier(&mut self) -> State {
        loop {
            match self.next() {
                Some(c) if is_alnum(c) => {}
                r => {
                    self.backup(r);
                    let word = &self.input[self.start..self.pos];
                    if !self.at_terminator() {
                        let c = self.peek().unwrap_or(' ');
                        return self.errorf(format!("bad character {}", sharp_u(c)));
                    }
                    if let Some(k) = keyword(word)
                        && k != Tok::Dot
                    {
                        self.emit(k);
                        return State::InsideAction;
                    }
                    if word == "true" || word == "false" {
                        self.emit(Tok::Bool);
                    } else if word.starts_with('.') {
                        self.emit(Tok::Field);
                    } else {
                        self.emit(Tok::Identifier);
                    }
                    return State::InsideAction;
                }
            }
        }
    }

    fn lex_field(&mut self) -> State {
        self.lex_field_or_variable(Tok::Field)
    }
    fn lex_variable(&mut self) -> State {
        self.lex_field_or_variable(Tok::Variable)
    }
    fn lex_field_or_variable(&mut self, typ: Tok) -> State {
        if self.at_terminator() {
            if typ == Tok::Variable {
                self.emit(Tok::Variable);
            } else {
                self.emit(Tok::Dot);
            }
            return State::InsideAction;
        }
        loop {
            match self.next() {
                Some(c) if is_alnum(c) => {}
                r => {
                    self.backup(r);
                    break;
                }
            }
        }
        if !self.at_terminator() {
            let c = self.peek().unwrap_or(' ');
            return self.errorf(format!("bad character {}", sharp_u(c)));
        }
        self.emit(typ);
        State::InsideAction
    }

    fn at_terminator(&self) -> bool {
        let Some(c) = self.peek() else { return true };
        if is_space(c) || c == '\n' || c == '\r' {
            return true;
        }
        match c {
            '.' | ',' | '|' | ':' | ')' | '(' => return true,
            _ => {}
        }
        self.input[self.pos..].starts_with(RIGHT)
    }

    fn lex_char(&mut self) -> State {
        loop {
            match self.next() {
                Some('\\') => {
                    if let Some(c) = self.next()
                        && c != '\n'
                    {
                        continue;
                    }
                    return self.errorf("unterminated character constant".into());
                }
                None | Some('\n') => return self.errorf("unterminated character constant".into()),
                Some('\'') => break,
                _ => {}
            }
        }
        self.emit(Tok::CharConstant);
        State::InsideAction
    }

    fn lex_number(&mut self) -> State {
        if !self.scan_number() {
            let v = self.input[self.start..self.pos].to_string();
            return self.errorf(format!("bad number syntax: {}", GoQuote(&v)));
        }
        if let Some('+' | '-') = self.peek() {
            // Complex: 1+2i. No spaces, must end in 'i'.
            if !self.scan_number() || !self.input[..self.pos].ends_with('i') {
                let v = self.input[self.start..self.pos].to_string();
                return self.errorf(format!("bad number syntax: {}", GoQuote(&v)));
            }
            self.emit(Tok::Complex);
            return State::InsideAction;
        }
        self.emit(Tok::Number);
        State::InsideAction
    }

    fn scan_number(&mut self) -> bool {
        self.accept("+-");
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if digits.len() == 10 + 1 && self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if digits.len() == 16 + 6 + 1 && self.accept("pP") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        self.accept("i");
        if let Some(c) = self.peek()
            && is_alnum(c)
        {
            self.next();
            return false;
        }
        true
    }

    fn lex_quote(&mut self) -> State {
        loop {
            match self.next() {
                Some('\\') => {
                    if let Some(c) = self.next()
                        && c != '\n'
                    {
                        continue;
                    }
                    return self.errorf("unterminated quoted string".into());
                }
                None | Some('\n') => return self.errorf("unterminated quoted string".into()),
                Some('"') => break,
                _ => {}
            }
        }
        self.emit(Tok::String);
        State::InsideAction
    }

    fn lex_raw_quote(&mut self) -> State {
        loop {
            match self.next() {
                None => return self.errorf("unterminated raw quoted string".into()),
                Some('`') => break,
                _ => {}
            }
        }
        self.emit(Tok::RawString);
        State::InsideAction
    }
}

const TRIM_MARKER_LEN: usize = 2;

fn has_left_trim_marker(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'-' && is_space(b[1] as char)
}
fn has_right_trim_marker(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && is_space(b[0] as char) && b[1] == b'-'
}
fn is_space(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\r' || c == '\n'
}
fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphabetic() || c.is_numeric()
}
fn right_trim_length(s: &str) -> usize {
    s.len() - s.trim_end_matches([' ', '\t', '\r', '\n']).len()
}
fn left_trim_length(s: &str) -> usize {
    s.len() - s.trim_start_matches([' ', '\t', '\r', '\n']).len()
}

pub fn go_quote_rune(c: char) -> String {
    match c {
        '\'' => "'\\''".into(),
        '\\' => "'\\\\'".into(),
        '\n' => "'\\n'".into(),
        '\t' => "'\\t'".into(),
        '\r' => "'\\r'".into(),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => format!("'\\x{:02x}'", c as u32),
        c => format!("'{c}'"),
    }
}

/// Go's `%#U`.
pub fn sharp_u(c: char) -> String {
    if c.is_control() { format!("U+{:04X}", c as u32) } else { format!("U+{:04X} '{}'", c as u32, c) }
}
