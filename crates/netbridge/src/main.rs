//! `chum-netbridge --listen 127.0.0.1:3128 --connect /path/egress.sock -- PROGRAM ARGS...`
//!
//! Runs inside an agent's sandbox, which has a network namespace of its own with nothing but
//! loopback. It listens on the sandbox's loopback, carries every connection made to it byte for
//! byte to the worker's egress proxy through a Unix socket mounted into the sandbox, and runs
//! PROGRAM (whose HTTPS_PROXY/HTTP_PROXY point at the listener). It exits with PROGRAM's status.
//!
//! It decides nothing: the proxy on the worker's side of the socket checks every connection
//! against the allow-list. An agent that kills the bridge or listens on the port itself gains
//! nothing, because the socket leads only to that proxy. Only std, so it starts in a millisecond.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

#[derive(Debug)]
struct Args {
    listen: String,
    connect: PathBuf,
    program: Vec<String>,
}

const USAGE: &str = "usage: chum-netbridge --listen 127.0.0.1:PORT --connect SOCKET -- PROGRAM [ARGS...]";

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut listen = None;
    let mut connect = None;
    let mut program = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next(),
            "--connect" => connect = args.next().map(PathBuf::from),
            "--" => {
                program.extend(args.by_ref());
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    match (listen, connect, program.is_empty()) {
        (Some(listen), Some(connect), false) => Ok(Args {
            listen,
            connect,
            program,
        }),
        _ => Err(USAGE.to_string()),
    }
}

/// Copies one direction until it ends, then half-closes the other side so the peer sees EOF.
fn pump(mut from: impl Read, mut to: impl Write, done: impl FnOnce()) {
    let mut buf = [0u8; 32 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    done();
}

fn carry(client: TcpStream, socket: &PathBuf) {
    let Ok(upstream) = UnixStream::connect(socket) else {
        // The proxy is gone (the run is ending): the client sees the connection close.
        return;
    };
    let (Ok(client_w), Ok(upstream_w)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        pump(&client, &upstream_w, || {
            let _ = upstream_w.shutdown(Shutdown::Write);
        })
    });
    pump(&upstream, &client_w, || {
        let _ = client_w.shutdown(Shutdown::Write);
    });
    let _ = up.join();
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("chum-netbridge: {msg}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(&args.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("chum-netbridge: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(125);
        }
    };
    let socket = args.connect.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let socket = socket.clone();
            std::thread::spawn(move || carry(client, &socket));
        }
    });
    let status = match Command::new(&args.program[0]).args(&args.program[1..]).status() {
        Ok(status) => status,
        Err(e) => {
            eprintln!("chum-netbridge: cannot run {}: {e}", args.program[0]);
            // What a shell says for a program it cannot find or run.
            return ExitCode::from(if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code.clamp(0, 255) as u8),
        (None, Some(signal)) => ExitCode::from((128 + signal).clamp(0, 255) as u8),
        (None, None) => ExitCode::from(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn the_program_follows_the_double_dash_and_is_required() {
        let a = args(&[
            "--listen",
            "127.0.0.1:3128",
            "--connect",
            "/s.sock",
            "--",
            "sh",
            "-c",
            "--listen",
        ])
        .unwrap();
        assert_eq!(a.program, vec!["sh", "-c", "--listen"]);
        assert_eq!(a.connect, PathBuf::from("/s.sock"));
        assert!(args(&["--listen", "127.0.0.1:3128", "--connect", "/s.sock"]).is_err());
        assert!(args(&["--bogus"]).unwrap_err().contains("unknown argument"));
    }

    #[test]
    fn bytes_cross_the_bridge_both_ways() {
        let dir = std::env::temp_dir().join(format!("netbridge-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("s.sock");
        let _ = std::fs::remove_file(&socket);
        let proxy = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let echo = std::thread::spawn(move || {
            let (mut conn, _) = proxy.accept().unwrap();
            let mut got = Vec::new();
            conn.read_to_end(&mut got).unwrap();
            conn.write_all(&got.iter().rev().copied().collect::<Vec<u8>>()).unwrap();
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let s = socket.clone();
        std::thread::spawn(move || {
            let (client, _) = listener.accept().unwrap();
            carry(client, &s);
        });
        let mut client = TcpStream::connect(addr).unwrap();
        client.write_all(b"CONNECT").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut back = String::new();
        client.read_to_string(&mut back).unwrap();
        assert_eq!(back, "TCENNOC");
        echo.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
