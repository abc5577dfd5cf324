//! The progress bar `ext pull`, `ext load` and `ext publish` draw while the
//! daemon works: on stderr, and only when stderr is a terminal (nothing is
//! drawn into a pipe or a log, and never anything on stdout, which is the
//! plugin protocol). Built on `indicatif`.

use extreg_shared::protocol::{Phase, ProgressEvent};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

pub struct Bar {
    bar: Option<ProgressBar>,
    phase: Option<Phase>,
    /// Whether the current style shows a total.
    sized: bool,
    label: String,
}

impl Bar {
    /// A bar for `label` (e.g. `pull kubernetes`), drawn only when stderr
    /// is a terminal.
    pub fn new(label: impl Into<String>) -> Bar {
        Bar {
            bar: None,
            phase: None,
            sized: false,
            label: label.into(),
        }
    }

    /// Whether anything will be drawn.
    pub fn enabled() -> bool {
        std::io::stderr().is_terminal()
    }

    pub fn update(&mut self, ev: &ProgressEvent) {
        if !Self::enabled() {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        // Restyled on a phase change, and when the total becomes known.
        if self.phase != Some(ev.phase) || (ev.total.is_some() && !self.sized) {
            self.phase = Some(ev.phase);
            self.sized = ev.total.is_some();
            let bytes = matches!(ev.phase, Phase::Download | Phase::Verify | Phase::Push);
            let tmpl = match (bytes, ev.total) {
                (true, Some(_)) => "{spinner} {prefix} {msg:8} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                (true, None) => "{spinner} {prefix} {msg:8} {bytes} {binary_bytes_per_sec}",
                (false, _) => "{spinner} {prefix} {msg:8} {elapsed}",
            };
            if let Ok(style) = ProgressStyle::with_template(tmpl) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(self.label.clone());
            bar.set_message(ev.phase.as_str());
            bar.set_length(ev.total.unwrap_or(0));
        }
        if let Some(t) = ev.total {
            bar.set_length(t);
        }
        bar.set_position(ev.done);
    }
}

/// Dropping the bar clears it (the command's result follows on stdout).
impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
