//! Hostile clients of a real node's control socket: malformed requests of every kind,
//! oversize and never-terminated lines, slow-loris clients trickling bytes, 100 concurrent
//! status clients while an upgrade runs, and clients that disconnect in the middle of an
//! upgrade. Each gets a one-line error (or its answer); the node keeps serving the others and
//! finishes the upgrade. (A client of another uid: `tests/cli.rs`,
//! `a_client_of_another_user_is_refused`.)

mod reliability;

use reliability::{Root, install_windows, ok};
use relup_runtime::control::{Client, Event, Request};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Sends `bytes`, closes the writing half, and returns every line the node answered.
fn raw(root: &Root, bytes: &[u8]) -> Vec<String> {
    let mut stream = UnixStream::connect(root.socket()).unwrap();
    // The node may answer and close before reading everything (an oversize request).
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.lines().map(str::to_string).collect()
}

/// The one error line the node answers `bytes` with.
fn error_for(root: &Root, bytes: &[u8]) -> String {
    let lines = raw(root, bytes);
    assert_eq!(
        lines.len(),
        1,
        "one line for {:?}: {lines:?}",
        preview(bytes)
    );
    let event: Event = serde_json::from_str(&lines[0]).unwrap();
    match event {
        Event::Error { message } => message,
        other => panic!("{:?} answered {other:?}", preview(bytes)),
    }
}

fn preview(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned()
}

/// A status request through the library client; true when answered with `done`.
fn status(root: &Root) -> bool {
    Client::connect(&root.socket())
        .and_then(|c| c.request(&Request::Status, &mut |_| {}))
        .is_ok_and(|e| matches!(e, Event::Done { .. }))
}

#[test]
fn malformed_requests_get_one_clear_error_and_the_node_serves_on() {
    let root = Root::new("malformed", false);
    root.start(&[]);
    // Nested 20 000 deep inside the object (buffered whole before its tag is looked at).
    let deep = format!(
        "{{\"x\":{}{},\"cmd\":\"status\"}}\n",
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"status please\n".to_vec(), "malformed request"),
        (b"{\"cmd\":\"format_disk\"}\n".to_vec(), "unknown variant"),
        (
            b"{\"cmd\":\"plan\",\"version\":\"0.2.0\",\"x\":1}\n".to_vec(),
            "unknown field",
        ),
        (b"{\"cmd\":\"plan\"}\n".to_vec(), "missing field `version`"),
        (
            b"{\"cmd\":\"plan\",\"version\":\"x.y\"}\n".to_vec(),
            "is not a version",
        ),
        (
            b"{\"cmd\":\"status\"\xff\xfe}\n".to_vec(),
            "malformed request",
        ),
        (b"\0\0\0\0\n".to_vec(), "malformed request"),
        (b"42\n".to_vec(), "malformed request"),
        (b"\n".to_vec(), "malformed request"),
        (deep.into_bytes(), "recursion limit"),
        (
            b"{\"cmd\":\"status\"}".to_vec(),
            "not terminated by a newline",
        ),
        (vec![b' '; 70 * 1024], "longer than 65536 bytes"),
        (Vec::new(), "empty request"),
        (
            b"{\"cmd\":\"unpack\",\"tarball\":\"/nonexistent.tar.gz\"}\n".to_vec(),
            "/nonexistent.tar.gz",
        ),
        (
            b"{\"cmd\":\"config_set\",\"line\":\"../../etc:passwd:x:1\"}\n".to_vec(),
            "rejected",
        ),
    ];
    for (bytes, needle) in &cases {
        let message = error_for(&root, bytes);
        assert!(message.contains(needle), "{:?}: {message}", preview(bytes));
    }
    // Two requests on one line's worth of stream: only the first is served.
    let lines = raw(&root, b"{\"cmd\":\"releases\"}\n{\"cmd\":\"stop\"}\n");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("\"done\""), "{lines:?}");
    assert!(status(&root), "the node still answers");
    root.stop();
}

#[test]
fn slow_loris_clients_are_cut_off_while_others_are_served() {
    let root = Arc::new(Root::new("loris", false));
    root.start(&[]);
    // Twenty clients that send a request one byte every 300 ms and never finish it.
    let cut_off = Arc::new(AtomicUsize::new(0));
    let lorises: Vec<_> = (0..20)
        .map(|_| {
            let (root, cut_off) = (root.clone(), cut_off.clone());
            std::thread::spawn(move || {
                let mut stream = UnixStream::connect(root.socket()).unwrap();
                let started = Instant::now();
                // Give up after 60 s: a node without a whole-request deadline never answers.
                while started.elapsed() < Duration::from_secs(60) {
                    if stream.write_all(b" ").is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                    stream.set_nonblocking(true).unwrap();
                    let mut buf = [0u8; 512];
                    let answered = matches!(stream.read(&mut buf), Ok(n) if n > 0);
                    stream.set_nonblocking(false).unwrap();
                    if answered {
                        let line = String::from_utf8_lossy(&buf);
                        assert!(line.contains("no complete request within 10 s"), "{line}");
                        cut_off.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                }
            })
        })
        .collect();
    // Meanwhile the node answers everybody else.
    let mut answered = 0;
    while lorises.iter().any(|l| !l.is_finished()) {
        assert!(
            status(&root),
            "a status request failed while lorises were connected"
        );
        answered += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    for l in lorises {
        l.join().unwrap();
    }
    assert_eq!(
        cut_off.load(Ordering::SeqCst),
        20,
        "every slow client was cut off"
    );
    assert!(answered > 0);
    root.stop();
}

#[test]
fn a_hundred_status_clients_while_an_upgrade_runs() {
    let root = Arc::new(Root::slow("hundred"));
    root.start(&[]);
    let upgrading = Arc::new(AtomicBool::new(true));
    // When each status request was sent and when its answer came.
    let answers = Arc::new(Mutex::new(Vec::<(SystemTime, SystemTime)>::new()));
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let (root, upgrading, answers) = (root.clone(), upgrading.clone(), answers.clone());
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                loop {
                    let in_progress = upgrading.load(Ordering::SeqCst);
                    let sent = SystemTime::now();
                    let event = Client::connect(&root.socket())
                        .and_then(|c| c.request(&Request::Status, &mut |_| {}));
                    match event {
                        Ok(Event::Done { .. }) => {}
                        other => panic!("a status client got {other:?}"),
                    }
                    mine.push((sent, SystemTime::now()));
                    if !in_progress || mine.len() >= 5_000 {
                        let n = mine.len();
                        answers.lock().unwrap().extend(mine);
                        return n;
                    }
                }
            })
        })
        .collect();
    let upgrade = root.run(&["upgrade", "0.2.0"]);
    upgrading.store(false, Ordering::SeqCst);
    for c in clients {
        assert!(c.join().unwrap() >= 1);
    }
    let out = ok(upgrade);
    assert!(out.contains("demo 0.2.0 is running (permanent)"), "{out}");
    // Only answers whose request went out after the install began and came back before it
    // was done, as the journal shows them, count as given during the install.
    let journal = std::fs::read_to_string(root.path.join("log/upgrade.log")).unwrap();
    let windows = install_windows(&journal);
    assert_eq!(windows.len(), 1, "one install in the journal:\n{journal}");
    let install = &windows[0];
    let answers = answers.lock().unwrap();
    let during = answers
        .iter()
        .filter(|(sent, answered)| install.contains(*sent, *answered))
        .count();
    eprintln!(
        "{} status answers, {during} of them entirely inside the install ({} ms in the journal)",
        answers.len(),
        install
            .end
            .duration_since(install.start)
            .unwrap_or_default()
            .as_millis()
    );
    assert!(
        during >= 100,
        "statuses were answered during the install: {during}"
    );
    let status = ok(root.run(&["status"]));
    assert!(status.contains("counter 2.0.0"), "{status}");
    root.stop();
}

#[test]
fn clients_that_disconnect_mid_upgrade_do_not_stop_it() {
    // One client leaves after the first progress line, another right after its request.
    for (name, read_first) in [("leave-late", true), ("leave-early", false)] {
        let root = Root::slow(name);
        root.start(&[]);
        let mut stream = UnixStream::connect(root.socket()).unwrap();
        stream
            .write_all(b"{\"cmd\":\"install\",\"version\":\"0.2.0\"}\n")
            .unwrap();
        if read_first {
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).unwrap();
            // The first event: the snapshot note, before the install's progress lines.
            assert!(line.contains("\"event\":\"note\""), "{line}");
        }
        drop(stream);
        // The upgrade goes on without its client; the journal says when it is done (made
        // permanent, the last step).
        let journal = root.path.join("log/upgrade.log");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(&journal)
            .unwrap_or_default()
            .contains("permanent 0.2.0")
        {
            assert!(
                Instant::now() < deadline,
                "{name}: the upgrade never finished"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let releases = ok(root.run(&["releases"]));
        assert!(releases.contains("0.2.0 permanent"), "{name}: {releases}");
        let status = ok(root.run(&["status"]));
        assert!(
            status.contains("release demo 0.2.0") && status.contains("counter 2.0.0"),
            "{name}: {status}"
        );
        root.stop();
    }
}
