//! The browser's process: started in its own process group with a fresh
//! 0700 profile, ended with the run (every signal the run handles), and
//! its profile removed; none outlives the run.

use super::*;

/// Every browser this process started, by process group, with its profile:
/// whatever path the process leaves by (the end of a command, a signal that
/// exits at once), `end_all` ends them and removes their profiles.
pub(super) static STARTED: Mutex<Vec<(i32, PathBuf)>> = Mutex::new(Vec::new());

/// Ends the browser of process group `group` (all its processes), waits
/// until none is left running, and removes its profile.
pub(super) fn end(group: i32, profile: &Path) {
    // SAFETY: signals to a group this process made for the browser.
    unsafe { libc::kill(-group, libc::SIGKILL) };
    end_and_remove(Some(group), profile);
}

/// Waits (3 s at most) until no process of the browser runs, killing those
/// that name `profile`, then removes the profile. Removed only once they
/// are gone: a process still writing there (the network service flushes
/// its cookies) would leave the folder half removed.
fn end_and_remove(group: Option<i32>, profile: &Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(group) = group {
            // Reap the group's leader if it is ours; the others are the init's.
            // SAFETY: a non-blocking wait on a child of this process.
            unsafe { libc::waitpid(group, std::ptr::null_mut(), libc::WNOHANG) };
        }
        let past = std::time::Instant::now() >= deadline;
        if !browser_running(group, profile) || past {
            // A process that started as the last one was looked for (a
            // renderer forked meanwhile) may still write there: looked
            // for again, and removed again, while there is time.
            if std::fs::remove_dir_all(profile).is_ok() || !profile.exists() || past {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The fields of a `/proc/PID/stat` after the name: state, ppid, pgrp...
/// ("pid (name) state ...": the name may hold anything, a `)` too).
fn stat_fields(stat: &str) -> std::str::SplitWhitespace<'_> {
    stat.rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
}

/// Whether the process of a `/proc/PID/stat` runs: a zombie does not (its
/// files are closed; its reaping is up to whoever inherited it).
fn alive(stat: &str) -> bool {
    stat_fields(stat)
        .next()
        .is_some_and(|state| !matches!(state, "Z" | "X"))
}

/// Whether a process of the browser still runs: one of `group`, or one
/// that left it but names the profile (Chromium's crash handler makes a
/// session of its own; it is ended here too). A zombie does not count:
/// its files are closed, and its reaping is up to whoever inherited it (an
/// init that reaps slowly once held every run a second and more at its end).
pub(super) fn browser_running(group: Option<i32>, profile: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        // SAFETY: signal 0 only asks whether the group still has a process.
        return group.is_some_and(|group| unsafe { libc::kill(-group, 0) } == 0);
    };
    let profile = profile.as_os_str().as_encoded_bytes();
    let mut running = false;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if !alive(&stat) {
            continue;
        }
        if group.is_some()
            && stat_fields(&stat)
                .nth(2)
                .and_then(|g| g.parse::<i32>().ok())
                == group
        {
            running = true;
            continue;
        }
        // The profile's path as a whole argument or a folder in one (the
        // crash handler's database), not a longer name it begins.
        let names_profile = std::fs::read(entry.path().join("cmdline")).is_ok_and(|cmd| {
            cmd.windows(profile.len() + 1)
                .any(|w| w.starts_with(profile) && matches!(w.last(), Some(0 | b'/')))
        });
        if names_profile && !profile.is_empty() {
            // SAFETY: a process of the browser this run started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            running = true;
        }
    }
    running
}

/// Ends every browser this process started and removes their profiles:
/// called on every way out of the process.
pub fn end_all() {
    // Ended under the lock: a way out taken meanwhile (a third signal while
    // a command ends) waits until the profiles are gone, not just listed.
    let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
    for (group, profile) in started.iter() {
        end(*group, profile);
    }
    started.clear();
}

/// The browser of a run: one process (and its children), one profile.
pub struct Chromium {
    pub(super) cdp: Arc<chromiumoxide::Browser>,
    pub(super) handler: tokio::task::JoinHandle<()>,
    /// Watches whether the browser's process ended (see `launch`).
    pub(super) watcher: tokio::task::JoinHandle<()>,
    /// The browser ended under the run (its process exited).
    pub(super) ended: Arc<std::sync::atomic::AtomicBool>,
    /// Closes every window a page opens (see `launch`).
    pub(super) popups: tokio::task::JoinHandle<()>,
    /// Refuses every request of a frame no session drives (see `launch`).
    pub(super) strays: tokio::task::JoinHandle<()>,
    /// The frames whose requests a session's gate has admitted: the only
    /// ones whose requests may leave the browser.
    pub(super) driven_frames: Arc<Mutex<std::collections::HashSet<String>>>,
    pub(super) child: std::process::Child,
    pub(super) profile: Option<tempfile::TempDir>,
    /// Held locked while the browser lives: a profile whose lock nobody
    /// holds was left by a run killed without warning (see `sweep_left_profiles`).
    pub(super) _profile_lock: std::fs::File,
}

/// The prefix of a browser profile's folder in the temporary folder.
const PROFILE_PREFIX: &str = "sip-rotate-browser-";
/// The file of a profile that its run holds locked.
const PROFILE_LOCK: &str = "sip-rotate.lock";

/// Removes the profiles runs killed without warning (`kill -9`, a power
/// cut) left in `tmp`: a run's own handlers remove its profile on every
/// signal it can see, and no other process would ever remove these (they
/// may hold the portal's cookies). Only a folder that is surely such a
/// profile goes: named so, a real folder (not a link), ours and 0700,
/// holding a lock file that no process holds and that is older than a
/// starting run takes to lock it.
fn sweep_left_profiles(tmp: &Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    let me = unsafe { libc::geteuid() };
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .as_encoded_bytes()
            .starts_with(PROFILE_PREFIX.as_bytes())
        {
            continue;
        }
        let folder = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&folder) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != me || meta.permissions().mode() & 0o777 != 0o700 {
            continue;
        }
        let lock = folder.join(PROFILE_LOCK);
        let Ok(lock_meta) = std::fs::symlink_metadata(&lock) else {
            continue;
        };
        let settled = lock_meta
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= Duration::from_secs(10));
        if !lock_meta.is_file() || !settled {
            continue;
        }
        let Ok(file) = std::fs::File::open(&lock) else {
            continue;
        };
        if file.try_lock().is_ok() {
            tracing::debug!(
                "removing a browser profile a killed run left: {}",
                folder.display()
            );
            // Its browser died with the run, but the browser's other
            // processes may outlive it a moment, writing there.
            end_and_remove(None, &folder);
        }
    }
}

/// The browser to use: `--browser`, else `SIP_ROTATE_BROWSER`, else the
/// distribution's.
pub fn executable(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("SIP_ROTATE_BROWSER").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("chromium"))
}

/// Whether `program` can be run: a path to an executable, or a name on PATH.
pub fn installed(program: &Path) -> bool {
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.is_file() && m.permissions().mode() & 0o111 != 0
        })
    };
    if program.components().count() > 1 {
        return runnable(program);
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| runnable(&dir.join(program))))
}

/// What Chromium adds to its TMPDIR for its singleton socket.
const SOCKET_PATH_TAIL: &str = "/org.chromium.Chromium.XXXXXX/SingletonSocket";

impl Chromium {
    /// Starts `executable` headless with a fresh profile, and connects.
    pub async fn launch(
        executable: &Path,
        timeout: Duration,
        hosts: &[String],
        trusted_keys: &[String],
    ) -> Result<Chromium, EngineError> {
        if !installed(executable) {
            return Err(EngineError::NotInstalled(executable.to_path_buf()));
        }
        let start = |why: String| EngineError::Start {
            path: executable.to_path_buf(),
            why,
        };
        sweep_left_profiles(&std::env::temp_dir());
        // 0700 (set here: the builder follows the umask), removed at the end.
        let profile = tempfile::Builder::new()
            .prefix(PROFILE_PREFIX)
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .map_err(|e| start(format!("cannot make its profile folder: {e}")))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(profile.path(), std::fs::Permissions::from_mode(0o700))
                .map_err(|e| start(format!("cannot make its profile folder private: {e}")))?;
        }
        // Chromium makes its singleton socket in a folder of its TMPDIR
        // (the profile): a Unix socket's path holds at most 107 bytes, and
        // past that the browser aborts at its start (helper-19: a TMPDIR
        // of 37 characters, said as "is it a Chromium?").
        let socket = profile.path().as_os_str().len() + SOCKET_PATH_TAIL.len();
        if socket > 107 {
            return Err(start(format!(
                "its profile's path under TMPDIR ({}) is too long for the socket Chromium makes there ({socket} bytes, at most 107): set TMPDIR to a folder with a path of at most {} bytes, e.g. TMPDIR=/tmp",
                std::env::temp_dir().display(),
                std::env::temp_dir().as_os_str().len() - (socket - 107)
            )));
        }
        let profile_lock = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(profile.path().join(PROFILE_LOCK))
            .map_err(|e| start(format!("cannot make its profile's lock: {e}")))?;
        profile_lock
            .try_lock()
            .map_err(|e| start(format!("cannot lock its profile: {e}")))?;
        let mut command = std::process::Command::new(executable);
        command
            .args([
                "--headless=new",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-default-apps",
                "--disable-quic",
                // HTTP/1.1 only, each request on a connection of its own
                // (`Connection: close`, set as it is let through): Chromium
                // sends a request again by itself, below the Fetch domain
                // and so beside the throttle, when a connection it reused
                // closes before the answer. It did so with a Confirmer the
                // portal had taken (a second reset, counted nowhere). An
                // HTTP/2 session reused is sent again the same way, and
                // takes no `Connection` header.
                "--disable-http2",
                "--disable-breakpad",
                "--disable-crash-reporter",
                // Site isolation is off: the browser shows documents of
                // one origin, the portal's, and a renderer process for each
                // session only took the two cores from the portal's rate.
                "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication,site-per-process,IsolateOrigins",
                "--disable-site-isolation-trials",
                // No GPU process of its own (nothing is looked at), and
                // the sessions' pages, all hidden, not slowed down as such.
                "--in-process-gpu",
                "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows",
                "--disk-cache-size=1",
                "--media-cache-size=1",
                "--password-store=basic",
                "--use-mock-keychain",
                "--mute-audio",
                "--hide-scrollbars",
                // Asked not to open popups, nor to send WebRTC's UDP: in
                // headless mode neither stopped a popup's WebRTC from
                // sending to an address the page gave; the removal of
                // `window.open` did (UNSEEN_SENDERS_REMOVED). Kept as a
                // second line.
                "--block-new-web-contents",
                "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
                // No code made at run time: the portal's scripts are
                // interpreted. A page's script gets no JIT to attack, and
                // the browser runs where writable memory may never become
                // executable (systemd's MemoryDenyWriteExecute=yes, which
                // the shipped unit sets): with the JIT, every renderer died
                // there at its start, and the run waited for a page that
                // would never come.
                "--js-flags=--jitless",
            ])
            // Every other name fails to resolve: the browser's own
            // background lookups, and any request that would not pass the
            // origin check, never leave the machine as a DNS query.
            .arg(format!(
                "--host-resolver-rules=MAP * ~NOTFOUND{}",
                hosts
                    .iter()
                    .map(|h| format!(", EXCLUDE {h}"))
                    .collect::<String>()
            ))
            .arg("--dns-prefetch-disable")
            // The private authority of `--ca-file`: Chromium keeps its own
            // roots (SSL_CERT_FILE is nothing to it), and accepts a chain
            // that holds one of these keys (with --user-data-dir only): the
            // authority's, and the portal certificate's as verified.
            .args(
                (!trusted_keys.is_empty()).then(|| {
                    format!("--ignore-certificate-errors-spki-list={}", trusted_keys.join(","))
                }),
            )
            // Renderers shared by the sessions: one a core (more only
            // took memory and time switching between them).
            .arg(format!(
                "--renderer-process-limit={}",
                std::thread::available_parallelism().map_or(1, |n| n.get())
            ))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--disk-cache-dir={}", profile.path().join("cache").display()))
            .arg("about:blank")
            // Nothing of sip-rotate's environment but what starts a
            // program: the portal password may be in it (MYOPENIP_PASSWORD),
            // and the browser's processes (its crash handler too) would
            // hold it.
            .env_clear()
            .envs(
                ["PATH", "LANG", "LC_ALL", "TZ"]
                    .iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (k, v))),
            )
            // Whatever the browser writes outside its profile (its singleton
            // socket, a crash handler's database, config) goes inside it too.
            .env("TMPDIR", profile.path())
            .env("HOME", profile.path())
            .env("XDG_CONFIG_HOME", profile.path().join("config"))
            .env("XDG_CACHE_HOME", profile.path().join("cache"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            // A group of its own: killed whole, children included.
            .process_group(0);
        // As root there is no sandbox to drop into: Chromium refuses to
        // start without this flag then.
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            command.arg("--no-sandbox");
        }
        // SAFETY: prctl with constant arguments, in the child before exec;
        // the browser dies with sip-rotate, whatever kills it.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                Ok(())
            });
        }
        let pipes = pipe::Pipes::new().map_err(|e| start(format!("cannot open its pipes: {e}")))?;
        pipes.give_to(&mut command);
        let mut child = command.spawn().map_err(|e| start(e.to_string()))?;
        STARTED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((child.id() as i32, profile.path().to_path_buf()));
        let stderr = child.stderr.take().expect("piped");
        // What it says is drained unread: never in our output or logs.
        std::thread::spawn(move || std::io::copy(&mut { stderr }, &mut std::io::sink()));
        let kill = |child: std::process::Child| forget(child.id() as i32);
        let ws = match pipes.bridge().await {
            Ok(ws) => ws,
            Err(e) => {
                kill(child);
                return Err(start(format!("cannot reach its DevTools pipe: {e}")));
            }
        };
        let config = HandlerConfig {
            // The portal's certificate is checked as the HTTP engine checks it.
            ignore_https_errors: false,
            request_intercept: true,
            cache_enabled: false,
            request_timeout: timeout,
            ..HandlerConfig::default()
        };
        let (cdp, mut handler) = match chromiumoxide::Browser::connect_with_config(ws, config).await
        {
            Ok(connected) => connected,
            Err(e) => {
                kill(child);
                return Err(start(e.to_string()));
            }
        };
        let handler = tokio::spawn(async move { while handler.next().await.is_some() {} });
        // The browser's process, looked at (not reaped) a few times a
        // second: once it has ended (killed, crashed), every step says so
        // at once, rather than each waiting its time for a page that will
        // never answer, and each new session 20 s for a page.
        let browser_ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let ended = browser_ended.clone();
            let stat = format!("/proc/{}/stat", child.id());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let running = std::fs::read_to_string(&stat).is_ok_and(|s| alive(&s));
                    if !running {
                        ended.store(true, Ordering::SeqCst);
                        return;
                    }
                }
            })
        };
        // Its first answer says it started (a browser that cannot start
        // closes the pipe, and this fails).
        // A program that ends at once (not a browser, or one that cannot
        // start) is said at once, not after the timeout.
        let ready = tokio::time::timeout(timeout.max(Duration::from_secs(20)), cdp.version());
        let ended = async {
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let why = tokio::select! {
            answer = ready => (!matches!(answer, Ok(Ok(_)))).then(|| "it gave no answer over DevTools".to_string()),
            status = ended => Some(format!("it ended at once ({status}): is it a Chromium?")),
        };
        if let Some(why) = why {
            handler.abort();
            kill(child);
            return Err(start(why));
        }
        // A window a page opens (a link or a form with a target) is a page
        // this engine does not drive: its requests would pass beside the
        // throttle and the counts, and its scripts keep what the removal
        // takes. Every request of the browser is paused a second time at
        // the browser's own level, after a session's gate: one from a frame
        // that gate never admitted (a popup, a worker of its own) fails
        // there, before it is sent. Such a window is closed as soon as it
        // is known (a run whose page opened one at each press took 23 s
        // instead of 4, every window left open with its renderer).
        let cdp = Arc::new(cdp);
        let driven_frames = Arc::new(Mutex::new(std::collections::HashSet::new()));
        let watched = async {
            let created = cdp.event_listener::<EventTargetCreated>().await?;
            let paused = cdp.event_listener::<EventRequestPaused>().await?;
            cdp.execute(EnableParams::default()).await?;
            Ok::<_, chromiumoxide::error::CdpError>((created, paused))
        };
        let (mut created, mut paused) = match watched.await {
            Ok(listeners) => listeners,
            Err(e) => {
                handler.abort();
                kill(child);
                return Err(start(e.to_string()));
            }
        };
        let strays = {
            let (cdp, driven_frames) = (cdp.clone(), driven_frames.clone());
            tokio::spawn(async move {
                while let Some(e) = paused.next().await {
                    let driven = driven_frames
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .contains(e.frame_id.inner());
                    let cdp = cdp.clone();
                    tokio::spawn(async move {
                        let id = e.request_id.clone();
                        let _ = if driven {
                            cdp.execute(ContinueRequestParams::new(id))
                                .await
                                .map(|_| ())
                        } else {
                            tracing::debug!("refused a request of a window the run does not drive");
                            cdp.execute(FailRequestParams::new(id, ErrorReason::BlockedByClient))
                                .await
                                .map(|_| ())
                        };
                    });
                }
            })
        };
        let popups = {
            let cdp = cdp.clone();
            tokio::spawn(async move {
                while let Some(e) = created.next().await {
                    if e.target_info.r#type == "page" && e.target_info.opener_id.is_some() {
                        let _ = cdp
                            .execute(CloseTargetParams::new(e.target_info.target_id.clone()))
                            .await;
                    }
                }
            })
        };
        Ok(Chromium {
            cdp,
            handler,
            watcher,
            ended: browser_ended,
            popups,
            strays,
            driven_frames,
            child,
            profile: Some(profile),
            _profile_lock: profile_lock,
        })
    }

    /// A new session: a browser context of its own (its own cookies, or
    /// those `handed` by the HTTP session it carries on) with one page,
    /// every request of which goes through `throttle`.
    pub async fn session(
        &self,
        throttle: Arc<Throttle>,
        origin: url::Origin,
        allowed: Arc<Vec<url::Origin>>,
        tally: Arc<crate::portal::transport::Tally>,
        interruptions: crate::portal::Interruptions,
        handed: Option<crate::portal::transport::HandedCookies>,
    ) -> Result<Tab, EngineError> {
        let protocol = |e: chromiumoxide::error::CdpError| EngineError::Protocol(e.to_string());
        if self.ended.load(Ordering::SeqCst) {
            return Err(EngineError::Ended);
        }
        let context = self
            .cdp
            .create_browser_context(CreateBrowserContextParams::default())
            .await
            .map_err(protocol)?;
        let page = self
            .cdp
            .new_page(
                CreateTargetParams::builder()
                    .url("about:blank")
                    .browser_context_id(context)
                    .build()
                    .map_err(EngineError::Protocol)?,
            )
            .await
            .map_err(protocol)?;
        // WebSockets are not paused in the Fetch domain: none is opened.
        page.execute(
            chromiumoxide::cdp::browser_protocol::network::SetBlockedUrLsParams::builder()
                .url_pattern(BlockPattern::new("ws://*:*/*", true))
                .url_pattern(BlockPattern::new("wss://*:*/*", true))
                .build(),
        )
        .await
        .map_err(protocol)?;
        // Nor does a page's script get anything that sends outside the
        // Fetch domain's sight: sockets, WebRTC, workers (whose own
        // sockets nothing would see), service workers. Removed from every
        // frame before its scripts run.
        page.execute(
            chromiumoxide::cdp::browser_protocol::page::AddScriptToEvaluateOnNewDocumentParams::builder()
                .source(UNSEEN_SENDERS_REMOVED)
                .run_immediately(true)
                .build()
                .map_err(EngineError::Protocol)?,
        )
        .await
        .map_err(protocol)?;
        if let Some(handed) = handed {
            // Host-only, for the whole portal, readable by its scripts as
            // they were (the jar does not say otherwise): a portal whose
            // cookies were narrower still gets its own back on its pages.
            let secure = handed.url.scheme() == "https";
            let cookies = handed
                .pairs
                .iter()
                .map(|(name, value)| {
                    CookieParam::builder()
                        .name(name.as_str())
                        .value(value.as_str())
                        .url(handed.url.as_str())
                        .path("/")
                        .secure(secure)
                        .build()
                        .map_err(EngineError::Protocol)
                })
                .collect::<Result<Vec<_>, _>>()?;
            page.execute(SetCookiesParams::new(cookies))
                .await
                .map_err(protocol)?;
        }
        let page = Arc::new(page);
        let watch = Arc::new(Watch {
            browser_ended: self.ended.clone(),
            ..Watch::default()
        });
        let mut tasks = Vec::new();
        // Every request waits for its turn at the run's throttle.
        let driven_frames = self.driven_frames.clone();
        let mut paused = page
            .event_listener::<EventRequestPaused>()
            .await
            .map_err(protocol)?;
        {
            let (page, watch) = (page.clone(), watch.clone());
            tasks.push(tokio::spawn(async move {
                while let Some(event) = paused.next().await {
                    // A step that may commit is cut short by the second
                    // interruption only: its result page must come back.
                    let waiting = if watch.committing.load(Ordering::SeqCst) {
                        interruptions.confirmations.clone()
                    } else {
                        interruptions.reads.clone()
                    };
                    let (page, watch, throttle, origin, allowed, tally, driven_frames) = (
                        page.clone(),
                        watch.clone(),
                        throttle.clone(),
                        origin.clone(),
                        allowed.clone(),
                        tally.clone(),
                        driven_frames.clone(),
                    );
                    tokio::spawn(async move {
                        let verdict = admit(
                            &event,
                            &throttle,
                            &origin,
                            &allowed,
                            &watch,
                            tally.standing(),
                            &waiting,
                        )
                        .await;
                        if verdict.is_ok() {
                            // Known before the browser's own pause (after
                            // this one) asks.
                            driven_frames
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(event.frame_id.inner().clone());
                        }
                        match verdict {
                            Ok(()) => {
                                let phase = watch.phase.load(Ordering::Relaxed);
                                let mut go_on =
                                    ContinueRequestParams::new(event.request_id.clone());
                                go_on.headers = Some(unreused(&event));
                                let went = page.execute(go_on).await;
                                // Counted once the browser took it: a tab
                                // closed meanwhile sent nothing.
                                if went.is_ok() {
                                    throttle.sent(Purpose::from_index(phase));
                                    tally.sent[usize::from(phase).min(2)]
                                        .fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Err(reason) => {
                                let _ = page
                                    .execute(FailRequestParams::new(
                                        event.request_id.clone(),
                                        reason,
                                    ))
                                    .await;
                            }
                        }
                    });
                }
            }));
        }
        // A dialog of the page's own (alert, confirm, prompt, the question
        // before leaving a page) stops the page until it is answered: a
        // step would wait for it forever. After a press that may commit
        // (it went through the gate), it is accepted, as the person who
        // pressed Confirmer would; so is an alert, or leaving the page.
        // A `confirm()` of the script of a press of ours ("are you sure?"
        // on Réinitialiser) is accepted too, but from then on nothing the
        // page sends in that step may change anything at the portal: if
        // that question was itself the portal's confirmation, its reset is
        // refused, and only the gate lets a reset be confirmed. Anything
        // else (a prompt, a question the page asks by itself) is
        // dismissed, and the step fails saying so.
        let mut dialogs = page
            .event_listener::<EventJavascriptDialogOpening>()
            .await
            .map_err(protocol)?;
        {
            let (page, watch) = (page.clone(), watch.clone());
            tasks.push(tokio::spawn(async move {
                while let Some(e) = dialogs.next().await {
                    watch.stirred();
                    let words: String = e.message.chars().take(80).collect();
                    let committing = watch.committing.load(Ordering::SeqCst);
                    let of_our_press = e.r#type == DialogType::Confirm
                        && watch.acting.load(Ordering::SeqCst) == Acting::Pressing as u8;
                    if of_our_press && !committing {
                        tracing::debug!(
                            "the page asked '{words}' as it was pressed: answered yes, and nothing it sends now may change anything"
                        );
                        watch.said_yes.lock().unwrap().get_or_insert(words.clone());
                    }
                    let accept = committing
                        || of_our_press
                        || matches!(e.r#type, DialogType::Alert | DialogType::Beforeunload);
                    if !accept {
                        watch.dismissed.lock().unwrap().get_or_insert_with(|| {
                            format!(
                                "the page asked '{words}' in a dialog of its own ({}), which sip-rotate does not answer there: dismissed; a portal that asks there cannot be driven yet: send a capture (sip-rotate check --capture DIR) to whoever maintains sip-rotate",
                                e.r#type.as_ref()
                            )
                        });
                    }
                    let _ = page
                        .execute(HandleJavaScriptDialogParams::new(accept))
                        .await;
                }
            }));
        }
        // A renderer that died (out of memory, killed, made to crash when
        // it hung): every step of this tab fails at once, and the session
        // goes on in a new one.
        page.execute(chromiumoxide::cdp::browser_protocol::inspector::EnableParams::default())
            .await
            .map_err(protocol)?;
        tasks.push(
            follow(
                &page,
                &watch,
                |watch, _: &chromiumoxide::cdp::browser_protocol::inspector::EventTargetCrashed| {
                    watch.crashed.store(true, Ordering::SeqCst);
                },
            )
            .await
            .map_err(protocol)?,
        );
        // Requests in flight, and the answers to the page's own requests.
        tasks.push(
            follow(&page, &watch, |watch, e: &EventRequestWillBeSent| {
                let document = e.r#type == Some(ResourceType::Document);
                let mut pending = watch.pending.lock().unwrap();
                // A redirect reuses the request: it is still one in flight.
                if e.redirect_response.is_some() {
                    if document {
                        watch.redirects.fetch_add(1, Ordering::SeqCst);
                        watch
                            .first_redirect
                            .lock()
                            .unwrap()
                            .get_or_insert_with(|| e.request.url.clone());
                    }
                    return;
                }
                let path = Url::parse(&e.request.url)
                    .map(|u| u.path().to_string())
                    .unwrap_or_default();
                pending.started(e.request_id.inner(), e.loader_id.inner(), document, path);
            })
            .await
            .map_err(protocol)?,
        );
        tasks.push(
            follow(&page, &watch, |watch, e: &EventLoadingFinished| {
                watch.pending.lock().unwrap().ended(e.request_id.inner());
            })
            .await
            .map_err(protocol)?,
        );
        tasks.push(
            follow(&page, &watch, |watch, e: &EventLoadingFailed| {
                watch.pending.lock().unwrap().ended(e.request_id.inner());
                // A request of the page's script that got no answer (not
                // one refused here, nor one the page itself cancelled).
                let script = matches!(e.r#type, ResourceType::Xhr | ResourceType::Fetch);
                let ours = e.blocked_reason.is_some()
                    || e.error_text.contains("BLOCKED_BY_CLIENT")
                    || e.error_text.contains("ERR_ABORTED");
                if script && !ours && e.canceled != Some(true) {
                    watch.answers.lock().unwrap().push(Answer {
                        kind: Answered::Script,
                        status: NO_ANSWER,
                        retry_after: None,
                    });
                }
            })
            .await
            .map_err(protocol)?,
        );
        tasks.push(
            follow(&page, &watch, |watch, e: &EventResponseReceived| {
                let kind = match e.r#type {
                    ResourceType::Document => Answered::Document,
                    ResourceType::Xhr | ResourceType::Fetch => Answered::Script,
                    _ => return,
                };
                let retry_after = e.response.headers.inner().as_object().and_then(|h| {
                    h.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                        .and_then(|(_, v)| v.as_str()?.trim().parse::<u64>().ok())
                });
                watch.answers.lock().unwrap().push(Answer {
                    kind,
                    status: e.response.status as u16,
                    retry_after,
                });
            })
            .await
            .map_err(protocol)?,
        );
        Ok(Tab {
            page,
            watch,
            tasks,
            screenshots: false,
        })
    }
}

/// The script every frame runs first: what a page could send with, unseen
/// by the Fetch domain, is gone and cannot be put back. `window.open` goes
/// too: a popup is a window this script never ran in (Chromium's
/// `--block-new-web-contents` did not stop one in headless mode), whose
/// WebRTC sent a page's password to a UDP address.
const UNSEEN_SENDERS_REMOVED: &str = "(() => {
  for (const name of ['WebSocket', 'WebSocketStream', 'WebTransport', 'SharedWorker', 'Worker',
                      'RTCPeerConnection', 'webkitRTCPeerConnection', 'RTCDataChannel', 'open']) {
    try { Object.defineProperty(window, name, { value: undefined, writable: false, configurable: false }); } catch (e) {}
  }
  try { Object.defineProperty(Navigator.prototype, 'serviceWorker', { get: () => undefined, configurable: false }); } catch (e) {}
})();";

/// Ends the browser of `group` and takes it off the list.
pub(super) fn forget(group: i32) {
    let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = started.iter().position(|(g, _)| *g == group) {
        // Off the list only once its profile is gone (see `end_all`).
        end(group, &started[i].1);
        started.swap_remove(i);
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        self.popups.abort();
        self.strays.abort();
        self.handler.abort();
        self.watcher.abort();
        forget(self.child.id() as i32);
        let _ = self.child.try_wait();
        // The profile went with the browser; the folder's guard is spent.
        if let Some(profile) = self.profile.take() {
            let _ = profile.keep();
        }
    }
}

/// The request's own headers, and `Connection: close`: no connection is
/// used twice, so none the portal closed meanwhile makes the browser send a
/// request again by itself, unseen by the throttle (see `--disable-http2`).
/// Each request costs a connection (a TLS handshake on https).
fn unreused(event: &EventRequestPaused) -> Vec<HeaderEntry> {
    let mut headers: Vec<_> = event
        .request
        .headers
        .inner()
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("connection"))
        .filter_map(|(name, value)| value.as_str().map(|v| HeaderEntry::new(name.clone(), v)))
        .collect();
    headers.push(HeaderEntry::new("Connection", "close"));
    headers
}
