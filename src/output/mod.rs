//! All terminal output goes through one [`Printer`]: results on stdout (human
//! text or one JSON document), messages on stderr, progress bars through
//! indicatif, colour through anstream (which drops it for pipes and
//! `NO_COLOR`). Commands never print directly, so `--output json`, `-q` and
//! `--no-progress` hold everywhere.

use std::io::{IsTerminal, Write};
use std::time::Duration;

pub mod plan_view;
pub mod progress;

use anstyle::{AnsiColor, Style};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    #[default]
    Human,
    Json,
}

/// Styles used in human output.
pub mod style {
    use super::*;
    pub const BOLD: Style = Style::new().bold();
    pub const DIM: Style = Style::new().dimmed();
    pub const GREEN: Style = AnsiColor::Green.on_default();
    pub const YELLOW: Style = AnsiColor::Yellow.on_default();
    pub const RED: Style = AnsiColor::Red.on_default();
    pub const CYAN: Style = AnsiColor::Cyan.on_default();
}

/// Wraps `text` in `style` (stripped later when colour is off).
pub fn paint(style: Style, text: impl std::fmt::Display) -> String {
    format!("{style}{text}{style:#}")
}

/// The process's output.
pub struct Printer {
    format: OutputFormat,
    verbosity: i8,
    progress: bool,
    multi: MultiProgress,
}

impl Printer {
    /// `verbosity`: -1 quiet, 0 normal, >0 verbose. `progress` is turned off
    /// when stderr is not a terminal.
    pub fn new(format: OutputFormat, verbosity: i8, color: bool, progress: bool) -> Printer {
        let choice = if color {
            anstream::ColorChoice::Auto
        } else {
            anstream::ColorChoice::Never
        };
        choice.write_global();
        let progress = progress && std::io::stderr().is_terminal() && format == OutputFormat::Human;
        let multi = MultiProgress::with_draw_target(if progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Printer {
            format,
            verbosity,
            progress,
            multi,
        }
    }

    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// Spinners are drawn (stderr is a terminal and progress is on).
    pub fn shows_progress(&self) -> bool {
        self.progress
    }

    pub fn is_json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    pub fn is_quiet(&self) -> bool {
        self.verbosity < 0
    }

    pub fn is_verbose(&self) -> bool {
        self.verbosity > 0
    }

    /// A result line on stdout (human mode only).
    pub fn out(&self, line: impl std::fmt::Display) {
        if self.is_json() {
            return;
        }
        self.suspend(|| {
            let mut o = anstream::stdout().lock();
            let _ = writeln!(o, "{line}");
        });
    }

    /// The single JSON document of a command on stdout (JSON mode only).
    pub fn json(&self, value: &impl Serialize) {
        if !self.is_json() {
            return;
        }
        let text = serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{text}");
    }

    /// Information on stderr, hidden by `-q`.
    pub fn info(&self, line: impl std::fmt::Display) {
        if !self.is_quiet() {
            self.err_line(line.to_string());
        }
    }

    /// Detail on stderr, shown with `-v`.
    pub fn debug(&self, line: impl std::fmt::Display) {
        if self.is_verbose() {
            self.err_line(paint(style::DIM, line));
        }
    }

    pub fn warn(&self, line: impl std::fmt::Display) {
        self.err_line(format!("{} {line}", paint(style::YELLOW.bold(), "warning:")));
    }

    pub fn error(&self, line: impl std::fmt::Display) {
        self.err_line(format!("{} {line}", paint(style::RED.bold(), "error:")));
    }

    fn err_line(&self, line: String) {
        self.suspend(|| {
            let mut e = anstream::stderr().lock();
            let _ = writeln!(e, "{line}");
        });
    }

    fn suspend(&self, f: impl FnOnce()) {
        if self.progress { self.multi.suspend(f) } else { f() }
    }

    /// A spinner for a wait; hidden when progress is off.
    pub fn spinner(&self, message: impl Into<String>) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let pb = self.multi.add(ProgressBar::new_spinner());
        pb.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed:.dim}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        pb.set_message(message.into());
        pb.enable_steady_tick(Duration::from_millis(120));
        pb
    }

    /// A counted bar (nodes replaced, pods moved); hidden when progress is off.
    pub fn bar(&self, len: u64, message: impl Into<String>) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let pb = self.multi.add(ProgressBar::new(len));
        pb.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed:.dim}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.set_message(message.into());
        pb
    }

    /// Whether a human can answer a prompt.
    pub fn can_prompt(&self) -> bool {
        std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
    }

    /// Asks on stderr; only the literal answer `yes` confirms.
    pub fn confirm(&self, question: &str) -> bool {
        let mut answer = String::new();
        self.suspend(|| {
            let mut e = anstream::stderr().lock();
            let _ = write!(e, "{question}\n  Only 'yes' will be accepted: ");
            let _ = e.flush();
            let _ = std::io::stdin().read_line(&mut answer);
        });
        answer.trim() == "yes"
    }
}

/// Lays out rows under headers with two spaces between columns. Numeric
/// columns (every cell parses as a number) are right-aligned.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let n = headers.len();
    let mut width: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            width[i] = width[i].max(visible_len(c));
        }
    }
    let numeric: Vec<bool> = (0..n)
        .map(|i| {
            !rows.is_empty()
                && rows
                    .iter()
                    .all(|r| r.get(i).is_some_and(|c| c.trim().parse::<f64>().is_ok()))
        })
        .collect();
    let fmt_row = |cells: Vec<String>| -> String {
        let mut line = String::new();
        for (i, c) in cells.iter().enumerate().take(n) {
            let pad = width[i].saturating_sub(visible_len(c));
            let last = i + 1 == n;
            if numeric[i] {
                line.push_str(&" ".repeat(pad));
                line.push_str(c);
            } else {
                line.push_str(c);
                if !last {
                    line.push_str(&" ".repeat(pad));
                }
            }
            if !last {
                line.push_str("  ");
            }
        }
        line.trim_end().to_string()
    };
    let mut out = vec![fmt_row(headers.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.iter().map(|r| fmt_row(r.clone())));
    out
}

/// Length without ANSI escapes.
fn visible_len(s: &str) -> usize {
    let mut n = 0;
    let mut in_esc = false;
    for c in s.chars() {
        if in_esc {
            if c.is_ascii_alphabetic() {
                in_esc = false;
            }
        } else if c == '\u{1b}' {
            in_esc = true;
        } else {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(
            &["TYPE", "PODS"],
            &[
                vec!["t3.medium".into(), "12".into()],
                vec!["m5.large".into(), "110".into()],
            ],
        );
        assert_eq!(t, vec!["TYPE       PODS", "t3.medium    12", "m5.large    110"]);
        let coloured = paint(style::GREEN, "ok");
        assert_eq!(visible_len(&coloured), 2);
    }
}
