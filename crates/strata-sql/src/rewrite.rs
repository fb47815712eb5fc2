//! A token-level pass over the SQL text before parsing: splits statements and turns the
//! lakehouse syntax the parser does not know into forms it does.
//!
//! - `CREATE TABLE … PARTITIONED BY (day(ts), bucket(16, id))`: the clause is cut out and
//!   handed over separately (the parser only knows Hive's typed column lists there);
//! - MERGE's `UPDATE SET *` becomes a marker assignment, `INSERT *` becomes `INSERT ROW`;
//! - `CREATE NAMESPACE` / `DROP NAMESPACE` become `… SCHEMA`.
//!
//! Working on tokens, not text, keeps string literals and comments untouched.

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Whitespace, Word};

use strata_table::dialect::TimeTravelDialect;
use strata_table::error::{Error, Result};

/// Column name of the marker assignment standing for `UPDATE SET *`.
pub const SET_STAR: &str = "__strata_set_star__";

/// One statement ready for the parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub sql: String,
    /// The inside of a `PARTITIONED BY ( … )` clause of a CREATE TABLE.
    pub partitioned_by: Option<String>,
}

pub fn prepare(sql: &str) -> Result<Vec<Prepared>> {
    let tokens = Tokenizer::new(&TimeTravelDialect, sql)
        .tokenize()
        .map_err(|e| Error::Sql(format!("cannot read the SQL: {e}")))?;
    let mut statements = Vec::new();
    let mut current: Vec<Token> = Vec::new();
    let mut depth = 0i32;
    for token in tokens {
        match token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::SemiColon if depth <= 0 => {
                statements.push(std::mem::take(&mut current));
                depth = 0;
                continue;
            }
            _ => {}
        }
        current.push(token);
    }
    statements.push(current);
    statements
        .into_iter()
        .filter(|s| s.iter().any(significant))
        .map(rewrite)
        .collect()
}

fn significant(t: &Token) -> bool {
    !matches!(t, Token::Whitespace(_) | Token::EOF)
}

fn is_keyword(t: &Token, k: Keyword) -> bool {
    matches!(t, Token::Word(w) if w.keyword == k && w.quote_style.is_none())
}

fn is_word(t: &Token, text: &str) -> bool {
    matches!(t, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(text))
}

fn word(text: &str) -> Token {
    Token::Word(Word {
        value: text.to_string(),
        quote_style: None,
        keyword: Keyword::NoKeyword,
    })
}

fn rewrite(tokens: Vec<Token>) -> Result<Prepared> {
    // Indices of significant tokens, for looking at neighbours.
    let sig: Vec<usize> = (0..tokens.len())
        .filter(|&i| significant(&tokens[i]))
        .collect();
    let is_create_table = sig.len() >= 2
        && is_keyword(&tokens[sig[0]], Keyword::CREATE)
        && sig
            .iter()
            .take(6)
            .any(|&i| is_keyword(&tokens[i], Keyword::TABLE));
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut partitioned_by = None;
    let mut skip_until = 0usize;
    for (n, &i) in sig.iter().enumerate() {
        // Copy the whitespace before this significant token.
        let start = if n == 0 { 0 } else { sig[n - 1] + 1 };
        if i < skip_until {
            continue;
        }
        for t in &tokens[start.max(skip_until)..i] {
            out.push(t.clone());
        }
        let t = &tokens[i];
        let prev = n.checked_sub(1).map(|p| &tokens[sig[p]]);
        let next = sig.get(n + 1).map(|&j| &tokens[j]);
        if is_create_table
            && is_keyword(t, Keyword::PARTITIONED)
            && next.is_some_and(|t| is_keyword(t, Keyword::BY))
        {
            let Some(&open) = sig.get(n + 2).filter(|&&j| tokens[j] == Token::LParen) else {
                return Err(Error::Sql(
                    "PARTITIONED BY needs a parenthesized list, e.g. PARTITIONED BY (day(ts))"
                        .to_string(),
                ));
            };
            let mut depth = 0;
            let mut close = None;
            for (j, tok) in tokens.iter().enumerate().skip(open) {
                match tok {
                    Token::LParen => depth += 1,
                    Token::RParen => {
                        depth -= 1;
                        if depth == 0 {
                            close = Some(j);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let close = close
                .ok_or_else(|| Error::Sql("PARTITIONED BY ( … ) is not closed".to_string()))?;
            partitioned_by = Some(
                tokens[open + 1..close]
                    .iter()
                    .map(render)
                    .collect::<String>(),
            );
            skip_until = close + 1;
            continue;
        }
        if t == &Token::Mul && prev.is_some_and(|p| is_keyword(p, Keyword::INSERT)) {
            out.push(word("ROW"));
            continue;
        }
        if t == &Token::Mul
            && prev.is_some_and(|p| is_keyword(p, Keyword::SET))
            && n >= 2
            && is_keyword(&tokens[sig[n - 2]], Keyword::UPDATE)
        {
            out.push(word(SET_STAR));
            out.push(Token::Whitespace(Whitespace::Space));
            out.push(Token::Eq);
            out.push(Token::Whitespace(Whitespace::Space));
            out.push(word(SET_STAR));
            continue;
        }
        if is_word(t, "NAMESPACE")
            && prev.is_some_and(|p| is_keyword(p, Keyword::CREATE) || is_keyword(p, Keyword::DROP))
        {
            out.push(word("SCHEMA"));
            continue;
        }
        out.push(t.clone());
    }
    Ok(Prepared {
        sql: out.iter().map(render).collect(),
        partitioned_by,
    })
}

/// A token as SQL text. The tokenizer's own rendering writes a literal or quoted identifier's
/// value between quotes as it is, so `'it''s'` would come back as `'it's'`: quotes inside are
/// doubled again here.
fn render(token: &Token) -> String {
    match token {
        Token::SingleQuotedString(s) => format!("'{}'", s.replace('\'', "''")),
        Token::DoubleQuotedString(s) => format!("\"{}\"", s.replace('"', "\"\"")),
        Token::Word(w) => match w.quote_style {
            Some(q @ ('"' | '`')) => format!("{q}{}{q}", w.value.replace(q, &format!("{q}{q}"))),
            _ => token.to_string(),
        },
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_rewrites() {
        let p = prepare(
            "CREATE TABLE a.t (id BIGINT, ts TIMESTAMP) PARTITIONED BY (day(ts), bucket(4, id)); \
             SELECT ';' AS x; MERGE INTO t USING s ON t.id = s.id \
             WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *;;",
        )
        .unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(
            p[0].sql.trim(),
            "CREATE TABLE a.t (id BIGINT, ts TIMESTAMP)"
        );
        assert_eq!(
            p[0].partitioned_by.as_deref(),
            Some("day(ts), bucket(4, id)")
        );
        assert_eq!(p[1].sql.trim(), "SELECT ';' AS x");
        assert!(p[2]
            .sql
            .contains("UPDATE SET __strata_set_star__ = __strata_set_star__"));
        assert!(p[2].sql.contains("INSERT ROW"));
        assert_eq!(
            prepare("create namespace dwd").unwrap()[0].sql,
            "create SCHEMA dwd"
        );
        // Not touched inside literals or outside CREATE TABLE.
        let q = prepare("SELECT 'PARTITIONED BY (x)', 'INSERT *'").unwrap();
        assert_eq!(q[0].sql, "SELECT 'PARTITIONED BY (x)', 'INSERT *'");
        // Quotes inside literals and quoted names survive.
        let q = prepare(r#"SELECT 'it''s' AS "a""b" FROM t"#).unwrap();
        assert_eq!(q[0].sql, r#"SELECT 'it''s' AS "a""b" FROM t"#);
    }
}
