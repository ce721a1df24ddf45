//! Watching `<root>/config/` for `config.toml.new`.
//!
//! The watch is on the directory, not the file (an editor's save-by-rename replaces the inode
//! and a watch on the file goes silent, notify #531/#247/#394), filtered by name. Events are
//! debounced: processing starts once no event came for [`WatchOptions::debounce`] (or after
//! [`WatchOptions::max_delay`] of continuous events); every line written before processing
//! starts is handled in that batch, later lines in the next (only lines that end with a
//! newline count, and how far the file was processed is recorded, so nothing is lost or
//! applied twice; see `ConfigStore::process_pending`). A slow rescan also runs in case an
//! event was missed, and removes a fully processed file once it has been idle.
//! If the platform watcher cannot be started, the directory is polled and the node log says so.

use super::store::ConfigStore;
use crossbeam_channel::{Receiver, Sender};
use notify::{RecursiveMode, Watcher};
use relup_appup::Release;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How changes are noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchMode {
    /// Platform events (inotify), plus a slow rescan.
    Events,
    /// Polling at [`WatchOptions::poll_interval`].
    Polling,
}

/// Watcher settings.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Poll instead of using platform events (also chosen when events cannot be had).
    pub force_polling: bool,
    /// Polling period.
    pub poll_interval: Duration,
    /// Rescan period when events work.
    pub rescan_interval: Duration,
    /// Quiet time after the last event before processing.
    pub debounce: Duration,
    /// Longest wait for quiet.
    pub max_delay: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            force_polling: std::env::var_os("RELUP_CONFIG_POLL").is_some_and(|v| v == "1"),
            poll_interval: Duration::from_millis(100),
            rescan_interval: Duration::from_secs(1),
            debounce: Duration::from_millis(10),
            max_delay: Duration::from_millis(200),
        }
    }
}

/// A running watcher; stops when dropped.
pub struct ConfigWatcher {
    mode: WatchMode,
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
    _events: Option<notify::RecommendedWatcher>,
}

/// Where the watcher reads the running release from.
pub type CurrentRelease = Arc<dyn Fn() -> Release + Send + Sync>;

impl ConfigWatcher {
    /// Starts watching `store`'s config directory; changes are validated against `release()`.
    pub fn start(
        store: Arc<ConfigStore>,
        release: CurrentRelease,
        options: WatchOptions,
    ) -> std::io::Result<ConfigWatcher> {
        let dir = store.root().config_dir();
        std::fs::create_dir_all(&dir)?;
        let (tx, rx) = crossbeam_channel::unbounded::<()>();
        let mut events = None;
        let mut mode = WatchMode::Polling;
        if options.force_polling {
            store.log(
                2,
                &format!(
                    "config: polling {} every {} ms (RELUP_CONFIG_POLL=1)",
                    dir.display(),
                    options.poll_interval.as_millis()
                ),
            );
        } else {
            let sender = tx.clone();
            let started = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                let relevant = match res {
                    Ok(event) => event.paths.iter().any(|p| {
                        // Not the work file: its events are the watcher's own renames.
                        p.file_name().is_some_and(|n| n == "config.toml.new")
                    }),
                    // An error (e.g. queue overflow): rescan.
                    Err(_) => true,
                };
                if relevant {
                    let _ = sender.send(());
                }
            })
            .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|()| w));
            match started {
                Ok(w) => {
                    events = Some(w);
                    mode = WatchMode::Events;
                }
                Err(e) => store.log(
                    1,
                    &format!(
                        "config: cannot watch {} for events ({e}); polling every {} ms instead",
                        dir.display(),
                        options.poll_interval.as_millis()
                    ),
                ),
            }
        }
        let (stop, stop_rx) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("relup-config".into())
            .spawn(move || run(store, release, options, mode, rx, stop_rx))?;
        Ok(ConfigWatcher {
            mode,
            stop,
            thread: Some(thread),
            _events: events,
        })
    }

    /// How changes are noticed.
    pub fn mode(&self) -> WatchMode {
        self.mode
    }

    /// Stops the watcher (a batch being processed completes first).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.stop.try_send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(
    store: Arc<ConfigStore>,
    release: CurrentRelease,
    options: WatchOptions,
    mode: WatchMode,
    events: Receiver<()>,
    stop: Receiver<()>,
) {
    let tick = match mode {
        WatchMode::Events => options.rescan_interval,
        WatchMode::Polling => options.poll_interval,
    };
    let new = store.root().config_new();
    let work = store.work_file();
    let mut last_error: Option<String> = None;
    loop {
        crossbeam_channel::select! {
            recv(stop) -> _ => return,
            recv(events) -> msg => {
                if msg.is_err() {
                    // The event source is gone; keep rescanning.
                    std::thread::sleep(tick);
                }
                // Debounce: wait for a quiet moment, bounded.
                let start = Instant::now();
                while start.elapsed() < options.max_delay {
                    match events.recv_timeout(options.debounce) {
                        Ok(()) => continue,
                        Err(_) => break,
                    }
                }
            },
            default(tick) => {},
        }
        let pending = work.exists() || std::fs::metadata(&new).is_ok_and(|m| m.len() > 0);
        if !pending {
            continue;
        }
        match store.process_pending(&release()) {
            Ok(_) => last_error = None,
            Err(e) => {
                let text = e.to_string();
                // Log a persisting failure once, not on every rescan.
                if last_error.as_deref() != Some(&text) {
                    store.log(
                        0,
                        &format!("config: cannot process {}: {text}", new.display()),
                    );
                }
                last_error = Some(text);
            }
        }
    }
}
