//! Prometheus-style selectors: `profile_type{name="v", other!="x", re=~"us-.*", n!~"a|b"}`.
//!
//! Regexes are fully anchored (`=~"us-.*"` matches `us-east`, not `xus-east`). A label that a
//! series lacks has the value "" for matching, as in Prometheus: `{region=""}` selects
//! series without `region`, `{region!="x"}` includes them.

use regex::Regex;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error("selector: {0} at byte {1}")]
    Syntax(&'static str, usize),
    #[error("selector: invalid regex for {label:?}: {message}")]
    Regex { label: String, message: String },
    #[error("selector: too long ({0} bytes; at most 16384)")]
    TooLong(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Ne,
    Re,
    NotRe,
}

#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && self.op == o.op && self.value == o.value
    }
}

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Self, SelectorError> {
        let regex = match op {
            MatchOp::Re | MatchOp::NotRe => Some(
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| SelectorError::Regex {
                        label: name.to_owned(),
                        message: e.to_string(),
                    })?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_owned(),
            op,
            value: value.to_owned(),
            regex,
        })
    }

    pub fn eq(name: &str, value: &str) -> Self {
        Matcher::new(name, MatchOp::Eq, value).expect("no regex")
    }

    /// Whether a series whose label `name` has `value` (None: absent) matches.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let v = value.unwrap_or("");
        match self.op {
            MatchOp::Eq => v == self.value,
            MatchOp::Ne => v != self.value,
            MatchOp::Re => self.regex.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRe => !self.regex.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

/// A parsed query: an optional name before the braces and the matchers inside them.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ParsedQuery {
    /// What stood before `{`, trimmed: a profile type id, a legacy app name like
    /// `myapp.cpu`, or empty.
    pub name: String,
    pub matchers: Vec<Matcher>,
}

/// Parses `name{matchers}`, `name`, or `{matchers}`.
pub fn parse_query(input: &str) -> Result<ParsedQuery, SelectorError> {
    if input.len() > 16384 {
        return Err(SelectorError::TooLong(input.len()));
    }
    let (name, rest) = match input.find('{') {
        Some(i) => (&input[..i], &input[i..]),
        None => (input, ""),
    };
    let mut q = ParsedQuery {
        name: name.trim().to_owned(),
        matchers: Vec::new(),
    };
    if rest.is_empty() {
        return Ok(q);
    }
    let base = input.len() - rest.len();
    let mut p = Parser {
        s: rest.as_bytes(),
        pos: 1,
        base,
    };
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let name = p.ident()?;
        p.ws();
        let op = if p.eat(b'=') {
            if p.eat(b'~') {
                MatchOp::Re
            } else {
                MatchOp::Eq
            }
        } else if p.eat(b'!') {
            if p.eat(b'=') {
                MatchOp::Ne
            } else if p.eat(b'~') {
                MatchOp::NotRe
            } else {
                return Err(p.err("expected != or !~"));
            }
        } else {
            return Err(p.err("expected =, !=, =~ or !~"));
        };
        p.ws();
        let value = p.string()?;
        q.matchers.push(Matcher::new(&name, op, &value)?);
        p.ws();
        if p.eat(b',') {
            continue;
        }
        if p.eat(b'}') {
            break;
        }
        return Err(p.err("expected , or }"));
    }
    p.ws();
    if p.pos != p.s.len() {
        return Err(p.err("unexpected text after }"));
    }
    Ok(q)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    base: usize,
}

impl Parser<'_> {
    fn err(&self, what: &'static str) -> SelectorError {
        SelectorError::Syntax(what, self.base + self.pos)
    }
    fn ws(&mut self) {
        while self.s.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.s.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn ident(&mut self) -> Result<String, SelectorError> {
        let start = self.pos;
        while self
            .s
            .get(self.pos)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
        {
            self.pos += 1;
        }
        if start == self.pos || self.s[start].is_ascii_digit() {
            return Err(self.err("expected a label name"));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }
    fn string(&mut self) -> Result<String, SelectorError> {
        let quote = match self.s.get(self.pos) {
            Some(&q @ (b'"' | b'\'' | b'`')) => q,
            _ => return Err(self.err("expected a quoted string")),
        };
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let c = *self
                .s
                .get(self.pos)
                .ok_or_else(|| self.err("unterminated string"))?;
            self.pos += 1;
            if c == quote {
                break;
            }
            if c == b'\\' && quote != b'`' {
                let e = *self
                    .s
                    .get(self.pos)
                    .ok_or_else(|| self.err("unterminated string"))?;
                self.pos += 1;
                match e {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'\\' | b'"' | b'\'' => out.push(e),
                    // Any other escape is kept as written, for regexes like `\d`.
                    other => out.extend_from_slice(&[b'\\', other]),
                }
            } else {
                out.push(c);
            }
        }
        String::from_utf8(out).map_err(|_| self.err("string is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_all_forms() {
        let q = parse_query(
            r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="a", region=~"us-.*",x!="y\"z",  n!~'a|b',}"#,
        )
        .unwrap();
        assert_eq!(q.name, "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
        assert_eq!(q.matchers.len(), 4);
        assert_eq!(q.matchers[2].value, "y\"z");
        assert!(q.matchers[1].matches(Some("us-west")));
        assert!(!q.matchers[1].matches(Some("xus-west")), "anchored");
        assert!(!q.matchers[1].matches(None));
        assert!(q.matchers[2].matches(None));
        assert!(q.matchers[3].matches(Some("ab")));
        assert!(!q.matchers[3].matches(Some("a")));
        assert_eq!(parse_query("myapp.cpu").unwrap().name, "myapp.cpu");
        assert_eq!(parse_query("{}").unwrap(), ParsedQuery::default());
        assert_eq!(
            parse_query(r#"{a=~"\\d+"}"#).unwrap().matchers[0].value,
            r"\d+"
        );
        assert_eq!(
            parse_query(r#"{a=~"\d+"}"#).unwrap().matchers[0].value,
            r"\d+"
        );
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in [
            "x{a}",
            "x{a=b}",
            "x{a=\"b\"",
            "x{1a=\"b\"}",
            "x{a==\"b\"}",
            "x{a=\"b\"} y",
            "x{a=~\"(\"}",
        ] {
            assert!(parse_query(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,64}") {
            let _ = parse_query(&s);
        }

        #[test]
        fn never_panics_near_valid(s in "[a-z{}=!~\"', ]{0,40}") {
            let _ = parse_query(&s);
        }
    }
}
