//! Errors of the attribute: gathered across keys and reported together, and the
//! "unknown key" error that names the valid ones and the closest match.

use syn::ext::IdentExt;
use syn::{Error, Ident, Result};

/// Errors gathered across keys, reported together.
#[derive(Default)]
pub(crate) struct Errors(Option<Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// The value, or `None` after keeping its error.
    pub(crate) fn ok<T>(&mut self, result: Result<T>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub(crate) fn finish(self) -> Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// "unknown key `x` (did you mean `y`?); the keys are: a, b, c".
pub(crate) fn unknown_key<'a>(
    key: &Ident,
    what: &str,
    valid: impl IntoIterator<Item = &'a str> + Clone,
) -> Error {
    let name = key.unraw().to_string();
    let close = valid
        .clone()
        .into_iter()
        .map(|v| (edit_distance(&name, v), v))
        .filter(|&(d, v)| d <= (v.len() / 3).max(1))
        .min();
    let hint = close.map_or(String::new(), |(_, v)| format!(" (did you mean `{v}`?)"));
    let valid: Vec<_> = valid.into_iter().collect();
    Error::new(
        key.span(),
        format!(
            "unknown {what} `{name}`{hint}; expected one of: {}",
            valid.join(", ")
        ),
    )
}

/// Edits (insertion, deletion, substitution, swap of neighbours) from `a` to `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("latncy", "latency"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("peres", "peers"), 1);
    }
}
