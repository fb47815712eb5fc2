//! Value conversions every connector shares: each source spells decimals its own way, and
//! the snapshot and the change stream of one source may too; all end in the same text.

/// Normalises decimal text to exactly `scale` digits after the point (no exponent), so the
/// snapshot's and the binlog's spellings agree.
pub fn normalize_decimal(text: &str, scale: u32) -> Option<String> {
    let t = text.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if !int.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let mut frac = frac.to_string();
    if frac.len() > scale as usize {
        // Only zeros may be cut.
        if frac[scale as usize..].chars().any(|c| c != '0') {
            return None;
        }
        frac.truncate(scale as usize);
    }
    while frac.len() < scale as usize {
        frac.push('0');
    }
    let zero = int == "0" && frac.chars().all(|c| c == '0');
    let sign = if neg && !zero { "-" } else { "" };
    Some(if scale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_normalise_to_their_scale() {
        assert_eq!(normalize_decimal("12.5", 2).unwrap(), "12.50");
        assert_eq!(normalize_decimal("-0.00", 2).unwrap(), "0.00");
        assert_eq!(normalize_decimal("007", 0).unwrap(), "7");
        assert_eq!(normalize_decimal("-1.2300", 2).unwrap(), "-1.23");
        assert!(normalize_decimal("1.234", 2).is_none());
    }
}
