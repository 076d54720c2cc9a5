//! The run as it goes: the bars and the per-licence lines, from the
//! events the library sends (the bars only listen).

use super::*;

/// Listens to a run and shows it as `view` says.
pub struct Show {
    pub(super) view: View,
    pub(super) bars: Option<Bars>,
}

pub(super) struct Bars {
    pub(super) all: MultiProgress,
    pub(super) resolving: ProgressBar,
    pub(super) resetting: Mutex<Option<(ProgressBar, usize)>>,
}

pub(super) fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("static template")
        .progress_chars("=> ")
}

/// A rate the portal may take better than `rate`, as `--rate` is written:
/// half of it, and below what it let through (`achieved`, over the run,
/// its pauses included) when that is known.
pub fn gentler_rate(rate: f64, achieved: Option<f64>) -> String {
    let gentler = match achieved {
        Some(a) if a > 0.0 => (rate / 2.0).min(a * 0.8),
        _ => rate / 2.0,
    };
    if gentler >= 1.0 {
        format!("{}", gentler.floor())
    } else {
        let text = format!("{:.2}", gentler.max(0.01));
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

impl Show {
    /// `rate`: the run's `--rate`, for the advice the warnings give.
    pub fn new(view: View, rate: f64) -> Show {
        logging::advise_on_slow_down(format!("try --rate {} or lower", gentler_rate(rate, None)));
        let bars = view.progress.then(|| {
            let all = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            // Labelled from the first moment: the login comes first.
            let resolving = all.add(ProgressBar::new(0));
            resolving.set_style(style("{spinner} logging in to the portal ({elapsed})"));
            resolving.enable_steady_tick(Duration::from_millis(200));
            logging::show_bars(&all);
            Bars {
                all,
                resolving,
                resetting: Mutex::new(None),
            }
        });
        Show { view, bars }
    }

    /// Logged in: the first bar shows the resolution from now on. Every
    /// line fits the terminal (`wide_msg` takes what is left, cut short).
    pub(super) fn logged_in(&self) {
        let Some(bars) = &self.bars else { return };
        bars.resolving.set_style(style(
            "{spinner} resolving [{bar:20}] ({elapsed}) {wide_msg}",
        ));
    }

    pub(super) fn resolving(&self, p: ResolveProgress) {
        let Some(bars) = &self.bars else { return };
        let bar = &bars.resolving;
        if bar.length() == Some(0) {
            // A command that says nothing of its login: its first read.
            self.logged_in();
        }
        bar.set_length((p.clients + p.services) as u64);
        bar.set_position((p.clients_read + p.services_read) as u64);
        bar.set_message(format!(
            "{}/{} clients, {}/{} services, {} pages",
            p.clients_read, p.clients, p.services_read, p.services, p.pages
        ));
        if p.clients_read == p.clients && p.services_read == p.services {
            bar.finish_and_clear();
        }
    }

    pub(super) fn planned(&self, n: usize) {
        let Some(bars) = &self.bars else { return };
        let mut resetting = bars.resetting.lock().unwrap_or_else(|e| e.into_inner());
        let (bar, _) = resetting.get_or_insert_with(|| {
            let bar = bars.all.add(ProgressBar::new(0));
            bar.set_style(style(
                "{spinner} resetting [{bar:20}] {pos}/{len} ({elapsed}, eta {eta}) {wide_msg}",
            ));
            bar.enable_steady_tick(Duration::from_millis(200));
            (bar, 0)
        });
        bar.set_length(n as u64);
    }

    pub(super) fn done(&self, row: &ReportRow) {
        if let Some(bars) = &self.bars
            && let Some((bar, failed)) = bars
                .resetting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
        {
            if row.status == Status::Failed {
                *failed += 1;
                bar.set_message(format!("{failed} failed"));
            }
            bar.inc(1);
        }
        if self.view.format == LogFormat::Json && !self.view.quiet {
            json_line(licence_json(row));
        }
    }

    /// Takes the bars off the screen, for good.
    pub fn finish(&self) {
        if let Some(bars) = &self.bars {
            bars.resolving.finish_and_clear();
            if let Some((bar, _)) = bars
                .resetting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
            {
                bar.finish_and_clear();
            }
        }
        logging::hide_bars();
    }
}

impl Observer for Show {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::LoggedIn => self.logged_in(),
            Event::Resolving(p) => self.resolving(p),
            Event::Planned(n) => self.planned(n),
            Event::Done(row) => self.done(row),
        }
    }

    fn confirm(&self, question: &Question) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        let n = question.resets;
        let s = if n > 1 { "s" } else { "" };
        // The question on a line of its own, the answer typed after it.
        let text = format!(
            "{}\nContinue? [y/N] ",
            logging::shown(
                &format!(
                    "About to reset {n} SIP password{s}: {} will be cut off until reconfigured.",
                    phones_in_use(question.in_use, question.state_unknown)
                ),
                logging::Stream::Stderr
            )
        );
        if let Some(bars) = &self.bars {
            bars.resolving.finish_and_clear();
        }
        // A thread of its own: a run interrupted at the question does not
        // wait for the answer.
        std::thread::spawn(move || {
            let _ = write!(std::io::stderr(), "{text}");
            let _ = std::io::stderr().flush();
            logging::asked();
            let mut answer = String::new();
            let read = std::io::stdin().lock().read_line(&mut answer);
            logging::answered(answer.ends_with('\n'));
            let yes = read.is_ok()
                && matches!(
                    answer.trim().to_lowercase().as_str(),
                    "y" | "yes" | "o" | "oui"
                );
            let _ = tx.send(yes);
        });
        rx
    }
}
