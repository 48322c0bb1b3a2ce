//! The table `llmzip l` prints: aligned for people, tab-separated with `--robot` for scripts.

use std::fmt::Write as _;

/// One archive's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveLine {
    pub name: String,
    pub model: String,
    pub chunks: u64,
    pub archive_bytes: u64,
    pub original_bytes: u64,
    /// "ok" or what failed.
    pub check: String,
    /// The coding settings the archive records (`pipeline::Listing::settings`), for `-v`.
    pub settings: String,
}

/// Compressed size over original size (xz's convention: smaller is better), if defined.
pub fn ratio(compressed: u64, original: u64) -> Option<f64> {
    (original > 0).then(|| compressed as f64 / original as f64)
}

fn fixed(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

/// What the check column covers, printed under the human table: `l` walks every chunk and verifies
/// every checksum of the container, but decodes nothing, so it cannot vouch for what a chunk decodes to
/// (the model, the engine's arithmetic).
pub const CHECK_NOTE: &str =
    "(check: every container checksum; `llmzip t` also decodes every chunk and checks what it gives)";

/// The human table: a header, one line per archive, a total line when there are several, and
/// [`CHECK_NOTE`].
pub fn human(rows: &[ArchiveLine]) -> String {
    let mut lines: Vec<[String; 8]> = vec![[
        "compressed".into(),
        "uncompressed".into(),
        "ratio".into(),
        "bits/byte".into(),
        "chunks".into(),
        "check".into(),
        "model".into(),
        "name".into(),
    ]];
    let cells = |name: &str, model: &str, chunks: u64, archive: u64, original: u64, check: &str| {
        let r = ratio(archive, original);
        [
            archive.to_string(),
            original.to_string(),
            fixed(r, 3),
            fixed(r.map(|r| 8.0 * r), 3),
            chunks.to_string(),
            check.to_owned(),
            model.to_owned(),
            name.to_owned(),
        ]
    };
    for r in rows {
        lines.push(cells(&r.name, &r.model, r.chunks, r.archive_bytes, r.original_bytes, &r.check));
    }
    if rows.len() > 1 {
        let sum = |f: fn(&ArchiveLine) -> u64| rows.iter().map(f).sum::<u64>();
        let all_ok = rows.iter().all(|r| r.check == "ok");
        lines.push(cells(
            &format!("(total of {})", rows.len()),
            "",
            sum(|r| r.chunks),
            sum(|r| r.archive_bytes),
            sum(|r| r.original_bytes),
            if all_ok { "ok" } else { "FAILED" },
        ));
    }
    use Align::{Left, Right};
    let mut out = aligned(&lines, [Right, Right, Right, Right, Right, Left, Left, Left]);
    out.push_str(CHECK_NOTE);
    out.push('\n');
    out
}

/// `l -v`: under the table, each archive's model and the settings it was coded with (what a level
/// chose; `d` reads them from the archive).
pub fn settings(rows: &[ArchiveLine]) -> String {
    rows.iter().map(|r| format!("{}: model {}, {}\n", r.name, r.model, r.settings)).collect()
}

/// Tab-separated: a header line, then one line per archive; names escaped so a tab or newline in a
/// file name cannot break a column.
pub fn robot(rows: &[ArchiveLine]) -> String {
    let header = ["name", "model", "chunks", "compressed", "uncompressed", "ratio", "bits_per_byte", "check"];
    let lines = rows.iter().map(|r| {
        let ratio = ratio(r.archive_bytes, r.original_bytes);
        [
            r.name.clone(),
            r.model.clone(),
            r.chunks.to_string(),
            r.archive_bytes.to_string(),
            r.original_bytes.to_string(),
            fixed(ratio, 6),
            fixed(ratio.map(|r| 8.0 * r), 6),
            r.check.clone(),
        ]
    });
    tab_separated(header, lines)
}

/// How [`aligned`] pads a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Align {
    /// Numbers.
    Right,
    /// Words.
    Left,
}

/// The lines of a table, each column as wide as its widest cell (in characters) and two spaces apart.
/// The last column is never padded (it holds a file name of any length) and no line ends in spaces.
pub(crate) fn aligned<const N: usize>(lines: &[[String; N]], align: [Align; N]) -> String {
    let mut width = [0usize; N];
    for line in lines {
        for (w, cell) in width.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for line in lines {
        let mut text = String::new();
        for (i, cell) in line.iter().enumerate() {
            match align[i] {
                _ if i + 1 == N => text.push_str(cell),
                Align::Right => write!(text, "{cell:>w$}  ", w = width[i]).unwrap(),
                Align::Left => write!(text, "{cell:<w$}  ", w = width[i]).unwrap(),
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// Tab-separated for scripts: the header line, then one line per row, every cell [`escape`]d so a tab
/// or newline in a file name cannot break a column.
pub(crate) fn tab_separated<const N: usize>(
    header: [&str; N],
    rows: impl Iterator<Item = [String; N]>,
) -> String {
    let mut out = header.join("\t") + "\n";
    for row in rows {
        out.push_str(&row.map(|cell| escape(&cell)).join("\t"));
        out.push('\n');
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n").replace('\r', "\\r")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, archive: u64, original: u64) -> ArchiveLine {
        ArchiveLine {
            name: name.into(),
            model: "m1".into(),
            chunks: 2,
            archive_bytes: archive,
            original_bytes: original,
            check: "ok".into(),
            settings: "context 256, slide 64, mixer off".into(),
        }
    }

    #[test]
    fn verbose_lines_name_model_and_settings() {
        assert_eq!(settings(&[row("a.lz", 1, 2)]), "a.lz: model m1, context 256, slide 64, mixer off\n");
    }

    #[test]
    fn human_table_aligns_columns_and_totals_several_rows() {
        let out = human(&[row("a.lz", 250, 1000), row("bb.lz", 5, 0)]);
        let want = "\
compressed  uncompressed  ratio  bits/byte  chunks  check  model  name
       250          1000  0.250      2.000       2  ok     m1     a.lz
         5             0      -          -       2  ok     m1     bb.lz
       255          1000  0.255      2.040       4  ok            (total of 2)
(check: every container checksum; `llmzip t` also decodes every chunk and checks what it gives)
";
        assert_eq!(out, want);
    }

    #[test]
    fn single_row_has_no_total_and_failures_show_in_the_total() {
        assert_eq!(human(&[row("a", 1, 2)]).lines().count(), 3);
        let mut bad = row("b", 1, 2);
        bad.check = "chunk 3: checksum mismatch".into();
        let out = human(&[row("a", 1, 2), bad]);
        assert!(out.lines().rev().nth(1).unwrap().contains("FAILED"), "{out}");
    }

    #[test]
    fn robot_is_tab_separated_with_escaped_names() {
        let out = robot(&[row("we\tird\nname", 250, 1000)]);
        let want = "name\tmodel\tchunks\tcompressed\tuncompressed\tratio\tbits_per_byte\tcheck\n\
                    we\\tird\\nname\tm1\t2\t250\t1000\t0.250000\t2.000000\tok\n";
        assert_eq!(out, want);
        for line in out.lines() {
            assert_eq!(line.split('\t').count(), 8);
        }
    }
}
