//! Ports on real sockets with a real cdylib (`echo`): accepted connections and bytes arrive
//! as messages, back-pressure bounds what the node buffers for a suspended owner, sockets
//! survive an upgrade and a downgrade, an owner's death closes its ports, hand-over, the
//! output limit, and outbound connections (`tcp_connect`) to a real upstream.

mod common;

use common::{eventually, fixtures};
use relup_runtime::{
    CodeChange, Direction, Expect, LogLine, Node, NodeConfig, Pid, PortError, PortId, PortInfo,
    PortKind, PortLimits, SpawnOptions,
};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[derive(Serialize, Default)]
struct Args {
    listen: Option<String>,
    register_as: Option<String>,
    hand_to: Option<String>,
}

#[derive(Serialize)]
enum Call {
    Status,
    Close(u64),
    Take(u64),
    Blast(u64, usize),
    Connect(String),
    Upstream(Vec<u8>),
}

#[derive(Deserialize, Debug)]
enum Reply {
    Status(Status),
    Done(Result<(), String>),
}

#[derive(Deserialize, Debug, Default, Clone)]
struct Status {
    version: String,
    addr: Option<String>,
    accepted: u64,
    echoed: u64,
    closed: Vec<(u64, String)>,
    upstream: Option<u64>,
    connected: Vec<(u64, String)>,
    from_upstream: Vec<u8>,
}

fn quiet_node(limits: PortLimits) -> Node {
    let node = Node::start(NodeConfig {
        schedulers: 2,
        logger: Some(Arc::new(|_: &LogLine<'_>| {})),
        ports: limits,
        ..NodeConfig::default()
    })
    .expect("node starts");
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    unsafe {
        node.code()
            .load_current(&fixtures().echo_v1, &Expect::default())
    }
    .expect("echo v1 loads");
    node
}

fn spawn_echo(node: &Node, args: Args) -> Pid {
    node.spawn("echo", &args, SpawnOptions::default())
        .expect("echo starts")
}

fn status(node: &Node, pid: Pid) -> Status {
    match node.call::<_, Reply>(pid, &Call::Status, T).unwrap() {
        Reply::Status(s) => s,
        other => panic!("{other:?}"),
    }
}

fn done(node: &Node, pid: Pid, call: Call) -> Result<(), String> {
    match node.call::<_, Reply>(pid, &call, T).unwrap() {
        Reply::Done(result) => result,
        other => panic!("{other:?}"),
    }
}

/// A listening echo process and its address.
fn listening(node: &Node) -> (Pid, SocketAddr) {
    let pid = spawn_echo(
        node,
        Args {
            listen: Some("127.0.0.1:0".into()),
            ..Args::default()
        },
    );
    let addr = status(node, pid).addr.expect("bound").parse().unwrap();
    (pid, addr)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(T)).unwrap();
    stream
}

fn round_trip(stream: &mut TcpStream, text: &[u8]) {
    stream.write_all(text).unwrap();
    let mut back = vec![0; text.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, text);
}

fn conns(node: &Node) -> Vec<PortInfo> {
    node.ports()
        .into_iter()
        .filter(|p| p.kind == PortKind::Connection)
        .collect()
}

/// Reads until end of stream or a reset; false if the peer kept the connection open.
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn echo_round_trip_then_peer_close() {
    let node = quiet_node(PortLimits::default());
    let (pid, addr) = listening(&node);
    let mut client = connect(addr);
    round_trip(&mut client, b"hello ports");
    round_trip(&mut client, b"and again");
    let ports = node.ports();
    assert_eq!(ports.len(), 2, "{ports:?}");
    assert_eq!(ports[0].kind, PortKind::Listener);
    assert_eq!(ports[0].local, addr);
    assert_eq!(ports[1].owner, pid);
    assert_eq!(ports[1].peer, Some(client.local_addr().unwrap()));
    let conn = ports[1].id;
    assert_eq!(status(&node, pid).accepted, 1);

    client.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(
        closed_by_peer(&mut client),
        "the node closes after the peer's end"
    );
    assert!(eventually(|| conns(&node).is_empty()));
    let s = status(&node, pid);
    assert_eq!(s.closed, vec![(conn.0, "closed".to_string())]);
    assert_eq!(s.echoed, 20);
    node.shutdown(T);
}

#[test]
fn a_suspended_owner_pauses_reading_at_the_in_flight_limit_and_loses_nothing() {
    let limits = PortLimits {
        max_in_flight: 8 * 1024,
        read_chunk: 2 * 1024,
        output_soft: 64 * 1024,
        ..PortLimits::default()
    };
    let node = quiet_node(limits);
    let (pid, addr) = listening(&node);
    let mut client = connect(addr);
    round_trip(&mut client, b"warm");
    node.suspend(&[pid], T).unwrap();

    const TOTAL: usize = 4 * 1024 * 1024;
    let data: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
    let mut writer = client.try_clone().unwrap();
    let sent = data.clone();
    let writing = std::thread::spawn(move || writer.write_all(&sent).unwrap());

    // The node reads up to its limit, then stops: the rest waits in the kernel and the peer.
    assert!(
        eventually(|| conns(&node)
            .first()
            .is_some_and(|c| c.reading_paused && c.in_flight >= limits.max_in_flight)),
        "reading pauses at the limit: {:?}",
        node.ports()
    );
    let conn = conns(&node)[0].clone();
    assert!(
        conn.in_flight <= limits.max_in_flight + limits.read_chunk,
        "{conn:?}"
    );
    assert!(node.is_alive(pid));

    node.resume(&[pid]);
    let mut back = vec![0; TOTAL];
    client.read_exact(&mut back).unwrap();
    writing.join().unwrap();
    assert!(back == data, "every byte came back, in order");
    assert_eq!(status(&node, pid).echoed, (TOTAL + 4) as u64);
    assert!(eventually(|| conns(&node)[0].in_flight == 0));
    node.shutdown(T);
}

#[test]
fn connections_and_the_listener_survive_an_upgrade_and_a_downgrade() {
    let node = quiet_node(PortLimits::default());
    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let v2 = unsafe { node.code().load(&fixtures().echo_v2, &Expect::default()) }.unwrap();
    let (pid, addr) = listening(&node);
    let mut a = connect(addr);
    round_trip(&mut a, b"on 1.0.0");
    // Sent before the upgrade, read after it.
    a.write_all(b"in flight across the upgrade").unwrap();

    let up = CodeChange::new(
        v2.clone(),
        Direction::Up,
        relup_module::codec::encode(&()).unwrap(),
    );
    node.upgrade_module(&up, T).unwrap();
    assert_eq!(status(&node, pid).version, "2.0.0");
    let mut back = vec![0; 28];
    a.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"in flight across the upgrade");
    round_trip(&mut a, b"on 2.0.0");
    let mut b = connect(addr);
    round_trip(&mut b, b"new connection on 2.0.0");

    // SAFETY: a fixture library of this workspace's tests (or a damaged copy, to be refused).
    let v1 = unsafe { node.code().load(&fixtures().echo_v1, &Expect::default()) }.unwrap();
    let down = CodeChange::new(
        v1,
        Direction::Down,
        relup_module::codec::encode(&()).unwrap(),
    );
    node.upgrade_module(&down, T).unwrap();
    let s = status(&node, pid);
    assert_eq!(s.version, "1.0.0");
    round_trip(&mut a, b"back on 1.0.0");
    round_trip(&mut b, b"b too");
    assert_eq!(s.accepted, 2);
    assert!(s.closed.is_empty(), "{:?}", s.closed);
    node.shutdown(T);
}

#[test]
fn a_connection_open_across_a_rolled_back_upgrade_stays_and_loses_nothing() {
    let node = quiet_node(PortLimits::default());
    // SAFETY: a fixture library of this workspace's tests.
    let v2 = unsafe { node.code().load(&fixtures().echo_v2, &Expect::default()) }.unwrap();
    let (pid, addr) = listening(&node);
    let mut a = connect(addr);
    round_trip(&mut a, b"on 1.0.0");
    // Sent before the failing upgrade, read after its rollback.
    a.write_all(b"in flight across the rollback").unwrap();
    let failing = CodeChange::new(
        v2,
        Direction::Up,
        relup_module::codec::encode(&"fail".to_string()).unwrap(),
    );
    let err = node.upgrade_module(&failing, T).unwrap_err().to_string();
    assert!(err.contains("told to fail"), "{err}");
    let s = status(&node, pid);
    assert_eq!(s.version, "1.0.0");
    let mut back = vec![0; 29];
    a.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"in flight across the rollback");
    round_trip(&mut a, b"still on 1.0.0");
    let mut b = connect(addr);
    round_trip(&mut b, b"a new connection after the rollback");
    let s = status(&node, pid);
    assert_eq!((s.accepted, s.closed.len()), (2, 0), "{s:?}");
    assert_eq!(conns(&node).len(), 2);
    node.shutdown(T);
}

#[test]
fn a_crashed_owner_closes_its_listener_and_connections() {
    let node = quiet_node(PortLimits::default());
    let (pid, addr) = listening(&node);
    let mut client = connect(addr);
    round_trip(&mut client, b"alive");
    client.write_all(b"crash").unwrap();
    assert!(closed_by_peer(&mut client), "the connection closes");
    assert!(eventually(|| !node.is_alive(pid)));
    assert!(eventually(|| node.ports().is_empty()), "{:?}", node.ports());
    // Its listener closed with its exit: a successor binds the same address at once (what a
    // supervisor's restart does).
    let successor = spawn_echo(
        &node,
        Args {
            listen: Some(addr.to_string()),
            ..Args::default()
        },
    );
    let mut again = connect(addr);
    round_trip(&mut again, b"the successor answers");
    assert!(node.is_alive(successor));
    node.shutdown(T);
}

#[test]
fn an_accepted_connection_is_handed_over_and_only_its_owner_may_move_it() {
    let node = quiet_node(PortLimits::default());
    let worker = spawn_echo(
        &node,
        Args {
            register_as: Some("worker".into()),
            ..Args::default()
        },
    );
    let acceptor = spawn_echo(
        &node,
        Args {
            listen: Some("127.0.0.1:0".into()),
            hand_to: Some("worker".into()),
            ..Args::default()
        },
    );
    let addr: SocketAddr = status(&node, acceptor).addr.unwrap().parse().unwrap();
    let mut client = connect(addr);
    round_trip(&mut client, b"to the worker");
    assert_eq!(status(&node, worker).echoed, 13);
    assert_eq!(status(&node, acceptor).echoed, 0);
    let conn = conns(&node)[0].clone();
    assert_eq!(conn.owner, worker);

    let refused = done(&node, acceptor, Call::Take(conn.id.0)).unwrap_err();
    assert!(refused.contains("not the owner"), "{refused}");
    assert_eq!(conns(&node)[0].owner, worker);

    // The worker dies: its connection closes, the acceptor's listener stays.
    client.write_all(b"crash").unwrap();
    assert!(closed_by_peer(&mut client));
    assert!(eventually(|| conns(&node).is_empty()));
    assert!(node.is_alive(acceptor));
    let mut again = connect(addr);
    round_trip(&mut again, b"the acceptor keeps it now");
    assert_eq!(status(&node, acceptor).accepted, 2);
    node.shutdown(T);
}

#[test]
fn output_past_the_hard_limit_closes_the_connection() {
    let limits = PortLimits {
        output_soft: 64 * 1024,
        output_hard: 1024 * 1024,
        ..PortLimits::default()
    };
    let node = quiet_node(limits);
    let (pid, addr) = listening(&node);
    let mut client = connect(addr);
    round_trip(&mut client, b"then I stop reading");
    let conn = conns(&node)[0].id;
    // 256 MiB: far more than loopback socket buffers and the limit together.
    let err = done(&node, pid, Call::Blast(conn.0, 256 * 1024 * 1024)).unwrap_err();
    assert!(err.contains("output limit"), "{err}");
    assert!(eventually(|| conns(&node).is_empty()));
    assert!(eventually(|| status(&node, pid)
        .closed
        .contains(&(conn.0, "output_full".to_string()))));
    node.shutdown(T);
}

#[test]
fn node_side_port_calls_check_their_arguments() {
    let node = quiet_node(PortLimits::default());
    let (pid, addr) = listening(&node);
    let listener = node.ports()[0].id;
    assert!(matches!(
        node.tcp_send(PortId(999_999), b"x"),
        Err(PortError::NoPort(_))
    ));
    assert!(matches!(
        node.tcp_send(listener, b"x"),
        Err(PortError::NotAConnection(_))
    ));
    assert!(matches!(
        node.tcp_listen(Pid(999_999), "127.0.0.1:0"),
        Err(PortError::NoProc(_))
    ));
    let taken = node.tcp_listen(pid, &addr.to_string()).unwrap_err();
    assert!(taken.to_string().contains("cannot listen on"), "{taken}");
    let mut client = connect(addr);
    round_trip(&mut client, b"x");
    let conn = conns(&node)[0].id;
    assert!(matches!(
        node.tcp_set_owner(conn, Pid(999_999)),
        Err(PortError::NoProc(_))
    ));
    // The node side may write and close too.
    node.tcp_send(conn, b"from the node").unwrap();
    let mut back = [0u8; 13];
    client.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"from the node");
    node.tcp_close(conn).unwrap();
    assert!(closed_by_peer(&mut client));
    assert!(matches!(node.tcp_close(conn), Err(PortError::NoPort(_))));
    assert!(done(&node, pid, Call::Close(listener.0)).is_ok());
    assert!(eventually(|| node.ports().is_empty()));
    node.shutdown(T);
}

/// A real upstream server on loopback: echoes every connection's bytes; counts the
/// connections it accepted and says (on `closed`) when one ends.
struct Upstream {
    addr: SocketAddr,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    closed: std::sync::mpsc::Receiver<()>,
}

fn upstream() -> Upstream {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (tell, closed) = std::sync::mpsc::channel();
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let tell = tell.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = tell.send(());
            });
        }
    });
    Upstream {
        addr,
        accepted,
        closed,
    }
}

/// Sends `bytes` upstream through `pid` and waits until the upstream's echo of everything
/// sent so far (`expected`) has come back to the process.
fn upstream_round_trip(node: &Node, pid: Pid, bytes: &[u8], expected: &[u8]) {
    assert_eq!(done(node, pid, Call::Upstream(bytes.to_vec())), Ok(()));
    assert!(
        eventually(|| status(node, pid).from_upstream == expected),
        "the upstream's echo of {:?} came back: {:?}",
        String::from_utf8_lossy(expected),
        String::from_utf8_lossy(&status(node, pid).from_upstream)
    );
}

/// Issue 15, item 5: a module opens an outbound connection, sends on it before it is even
/// established, and keeps using the same connection across an upgrade, a downgrade and a
/// rolled-back upgrade of its module: the upstream accepts exactly one connection and gets
/// every byte in order; the process gets every echo.
#[test]
fn an_upstream_connection_stays_open_and_in_use_across_upgrade_downgrade_and_rollback() {
    let node = quiet_node(PortLimits::default());
    // SAFETY: fixture libraries of this workspace's tests.
    let v2 = unsafe { node.code().load(&fixtures().echo_v2, &Expect::default()) }.unwrap();
    let up = upstream();
    let pid = spawn_echo(&node, Args::default());
    assert_eq!(done(&node, pid, Call::Connect(up.addr.to_string())), Ok(()));
    // Output sent while connecting waits for the connection.
    assert_eq!(done(&node, pid, Call::Upstream(b"early ".to_vec())), Ok(()));
    assert!(eventually(|| status(&node, pid).connected.len() == 1));
    let s = status(&node, pid);
    assert_eq!(s.connected[0], (s.upstream.unwrap(), up.addr.to_string()));
    let mut sent = b"early ".to_vec();
    let mut step = |node: &Node, text: &[u8]| {
        sent.extend_from_slice(text);
        upstream_round_trip(node, pid, text, &sent);
    };
    step(&node, b"on 1.0.0 ");

    let change = |module, direction, extra: &str| {
        CodeChange::new(
            module,
            direction,
            relup_module::codec::encode(&extra.to_string()).unwrap(),
        )
    };
    node.upgrade_module(&change(v2.clone(), Direction::Up, ""), T)
        .unwrap();
    assert_eq!(status(&node, pid).version, "2.0.0");
    step(&node, b"on 2.0.0 ");
    // SAFETY: as above.
    let v1 = unsafe { node.code().load(&fixtures().echo_v1, &Expect::default()) }.unwrap();
    node.upgrade_module(&change(v1, Direction::Down, ""), T)
        .unwrap();
    assert_eq!(status(&node, pid).version, "1.0.0");
    step(&node, b"back on 1.0.0 ");
    let err = node
        .upgrade_module(&change(v2, Direction::Up, "fail"), T)
        .unwrap_err()
        .to_string();
    assert!(err.contains("told to fail"), "{err}");
    assert_eq!(status(&node, pid).version, "1.0.0");
    step(&node, b"after the rollback");

    let s = status(&node, pid);
    assert_eq!(up.accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(s.closed.is_empty(), "{:?}", s.closed);
    assert_eq!(conns(&node).len(), 1, "{:?}", node.ports());
    node.shutdown(T);
}

/// A connect the peer refuses ends in `TcpClosed` naming the address; the port is gone.
#[test]
fn a_refused_connect_ends_in_tcp_closed_with_the_reason() {
    let node = quiet_node(PortLimits::default());
    // A port nobody listens on: bound, then closed.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let pid = spawn_echo(&node, Args::default());
    assert_eq!(done(&node, pid, Call::Connect(addr.to_string())), Ok(()));
    let port = status(&node, pid).upstream.expect("a port id at once");
    assert!(eventually(|| !status(&node, pid).closed.is_empty()));
    let s = status(&node, pid);
    assert_eq!(s.closed.len(), 1, "{:?}", s.closed);
    assert_eq!(s.closed[0].0, port);
    assert!(
        s.closed[0].1.contains(&format!("connect to {addr} failed")),
        "{:?}",
        s.closed
    );
    assert!(s.connected.is_empty());
    assert!(node.ports().is_empty(), "{:?}", node.ports());
    node.shutdown(T);
}

/// A bad address is refused at once with the reason; a connection closes with its owner
/// (the upstream sees its end); the node's API refuses an owner that does not exist.
#[test]
fn bad_addresses_are_refused_and_an_upstream_connection_closes_with_its_owner() {
    let node = quiet_node(PortLimits::default());
    let pid = spawn_echo(&node, Args::default());
    let refused = done(&node, pid, Call::Connect("no port here".into())).unwrap_err();
    assert!(refused.contains("cannot connect"), "{refused}");
    assert!(matches!(
        node.tcp_connect(Pid(999_999), "127.0.0.1:1"),
        Err(PortError::NoProc(_))
    ));

    let up = upstream();
    assert_eq!(done(&node, pid, Call::Connect(up.addr.to_string())), Ok(()));
    upstream_round_trip(&node, pid, b"hello", b"hello");
    assert!(node.exit(pid, relup_runtime::ExitReason::Killed));
    assert!(
        up.closed.recv_timeout(T).is_ok(),
        "the upstream sees the connection end"
    );
    assert!(eventually(|| node.ports().is_empty()), "{:?}", node.ports());
    node.shutdown(T);
}
