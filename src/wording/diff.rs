//! A line diff as unified-diff text (`--- before`, `+++ after`, `@@` hunks with two lines of
//! context), for the history of a published document. Templates are small (tens of lines):
//! a longest common subsequence over lines is plenty.

/// The changes from `before` to `after`; empty when they are the same.
pub fn unified(before: &str, after: &str) -> String {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    let ops = line_ops(&a, &b);
    if ops.iter().all(|op| matches!(op, Op::Same(..))) {
        return String::new();
    }
    const CONTEXT: usize = 2;
    let mut out = String::from("--- before\n+++ after\n");
    // Hunks: runs of changes with up to CONTEXT unchanged lines around them (merged when
    // two runs are closer than twice that).
    let changed: Vec<usize> = ops.iter().enumerate().filter(|(_, op)| !matches!(op, Op::Same(..))).map(|(i, _)| i).collect();
    let mut i = 0;
    while i < changed.len() {
        let start = changed[i].saturating_sub(CONTEXT);
        let mut end = changed[i];
        while i + 1 < changed.len() && changed[i + 1] <= end + 2 * CONTEXT + 1 {
            i += 1;
            end = changed[i];
        }
        let end = (end + CONTEXT + 1).min(ops.len());
        let (mut a_start, mut b_start) = (None, None);
        let (mut a_len, mut b_len) = (0, 0);
        let mut body = String::new();
        for op in &ops[start..end] {
            match op {
                Op::Same(x, y) => {
                    a_start.get_or_insert(*x);
                    b_start.get_or_insert(*y);
                    a_len += 1;
                    b_len += 1;
                    body.push_str(&format!(" {}\n", a[*x]));
                }
                Op::Removed(x, y) => {
                    a_start.get_or_insert(*x);
                    b_start.get_or_insert(*y);
                    a_len += 1;
                    body.push_str(&format!("-{}\n", a[*x]));
                }
                Op::Added(x, y) => {
                    a_start.get_or_insert(*x);
                    b_start.get_or_insert(*y);
                    b_len += 1;
                    body.push_str(&format!("+{}\n", b[*y]));
                }
            }
        }
        let at = |s: Option<usize>, len: usize| if len == 0 { s.unwrap_or(0) } else { s.unwrap_or(0) + 1 };
        out.push_str(&format!("@@ -{},{a_len} +{},{b_len} @@\n", at(a_start, a_len), at(b_start, b_len)));
        out.push_str(&body);
        i += 1;
    }
    out
}

/// One step of the edit: each carries the positions in `a` and `b` where it stands.
enum Op {
    Same(usize, usize),
    Removed(usize, usize),
    Added(usize, usize),
}

fn line_ops(a: &[&str], b: &[&str]) -> Vec<Op> {
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::with_capacity(a.len() + b.len());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push(Op::Same(i, j));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Removed lines before added ones, as diff(1) writes a change.
            ops.push(Op::Removed(i, j));
            i += 1;
        } else {
            ops.push(Op::Added(i, j));
            j += 1;
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::unified;

    #[test]
    fn a_changed_line_shows_as_removed_and_added_with_its_context() {
        let before = "a\nb\nc\nd\ne\nf\n";
        let after = "a\nb\nc\nD\ne\nf\n";
        assert_eq!(unified(before, after), "--- before\n+++ after\n@@ -2,5 +2,5 @@\n b\n c\n-d\n+D\n e\n f\n");
        assert_eq!(unified(before, before), "");
        assert_eq!(unified("", "x\n"), "--- before\n+++ after\n@@ -0,0 +1,1 @@\n+x\n");
    }
}
